-- The same tables as on PostgreSQL (see there). Times are INTEGER microseconds since the Unix
-- epoch, UTC. Forward-only: never edit an applied migration; add a new file.

CREATE TABLE jobq_rate_limits (
    name TEXT    PRIMARY KEY,
    tat  INTEGER NOT NULL
);

CREATE TABLE jobq_permits (
    name       TEXT    NOT NULL,
    slot       INTEGER NOT NULL CHECK (slot >= 0),
    holder     TEXT,
    expires_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, slot)
);

CREATE TABLE jobq_sent_messages (
    key        TEXT    PRIMARY KEY,
    platform   TEXT    NOT NULL CHECK (platform IN ('telegram', 'discord')),
    user_id    INTEGER NOT NULL,
    message_id TEXT,
    job_id     INTEGER,
    sent_at    INTEGER NOT NULL
);

CREATE TABLE jobq_cursors (
    name       TEXT    PRIMARY KEY,
    value      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE jobq_renewals (
    origin_key      TEXT    PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES jobq_subscriptions (id),
    plan            TEXT    NOT NULL,
    volume_bytes    INTEGER NOT NULL CHECK (volume_bytes >= 0),
    expiry          INTEGER NOT NULL,
    applied_at      INTEGER,
    created_at      INTEGER NOT NULL
);

ALTER TABLE jobq_subscriptions
    ADD COLUMN usage_warned_percent INTEGER NOT NULL DEFAULT 0
        CHECK (usage_warned_percent IN (0, 80, 100));
