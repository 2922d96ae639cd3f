-- What the handlers share across worker processes: rate limits, concurrency permits, the ledger
-- of sent messages, cursors of periodic scans, and usage warnings given per subscription.
-- Forward-only: never edit an applied migration; add a new file.

-- Rate limits (GCRA): one row per limited thing ("panel:main", "telegram:bot",
-- "telegram:chat:42"); `tat` is the theoretical arrival time of the next request, microseconds
-- since the Unix epoch. One UPDATE takes a turn or says how long to wait.
CREATE TABLE jobq_rate_limits (
    name TEXT   PRIMARY KEY,
    tat  BIGINT NOT NULL
);

-- Concurrency permits: `slot` 0..N-1 per name. A permit is held until released or until it
-- expires (a worker that died frees its permits when they expire). Microseconds since epoch.
CREATE TABLE jobq_permits (
    name       TEXT    NOT NULL,
    slot       INTEGER NOT NULL CHECK (slot >= 0),
    holder     TEXT,
    expires_at BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (name, slot)
);

-- Messages sent, keyed by the sending job's key (or `job:<id>`): a retried job whose send is
-- recorded here does not send again.
CREATE TABLE jobq_sent_messages (
    key        TEXT        PRIMARY KEY,
    platform   TEXT        NOT NULL CHECK (platform IN ('telegram', 'discord')),
    user_id    BIGINT      NOT NULL,
    message_id TEXT,
    job_id     BIGINT,
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Where a periodic scan got to (e.g. the failure digest: the last failed job alerted).
CREATE TABLE jobq_cursors (
    name       TEXT        PRIMARY KEY,
    value      BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Renewals and upgrades, keyed by the request that asked for one (the job's key, else
-- `job:<id>`): the new terms are fixed at the first attempt, so a retried renewal extends once.
CREATE TABLE jobq_renewals (
    origin_key      TEXT        PRIMARY KEY,
    subscription_id BIGINT      NOT NULL REFERENCES jobq_subscriptions (id),
    plan            TEXT        NOT NULL,
    volume_bytes    BIGINT      NOT NULL CHECK (volume_bytes >= 0),
    expiry          TIMESTAMPTZ NOT NULL,
    applied_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The highest usage warning (80, 100) given for the subscription's current term; a renewal that
-- resets usage resets it.
ALTER TABLE jobq_subscriptions
    ADD COLUMN usage_warned_percent INTEGER NOT NULL DEFAULT 0
        CHECK (usage_warned_percent IN (0, 80, 100));
