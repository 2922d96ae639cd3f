-- Subscriptions on SQLite: the same table as on PostgreSQL.
-- Times are INTEGER microseconds since the Unix epoch, UTC; JSON is TEXT; booleans 0/1.
-- Forward-only: never edit an applied migration; add a new file.

CREATE TABLE jobq_subscriptions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    platform          TEXT    NOT NULL CHECK (platform IN ('telegram', 'discord')),
    user_id           INTEGER NOT NULL CHECK (user_id > 0),
    panel             TEXT    NOT NULL,
    plan              TEXT    NOT NULL,
    client_name       TEXT    NOT NULL UNIQUE,
    origin_key        TEXT    UNIQUE,
    volume_bytes      INTEGER NOT NULL DEFAULT 0 CHECK (volume_bytes >= 0),
    expiry            INTEGER,
    status            TEXT    NOT NULL DEFAULT 'provisioning'
                      CHECK (status IN ('provisioning', 'active', 'expired', 'disabled', 'failed')),
    subscription_link TEXT,
    usage_up          INTEGER NOT NULL DEFAULT 0 CHECK (usage_up >= 0),
    usage_down        INTEGER NOT NULL DEFAULT 0 CHECK (usage_down >= 0),
    panel_enabled     INTEGER CHECK (panel_enabled IN (0, 1)),
    last_synced_at    INTEGER,
    flags             TEXT    NOT NULL DEFAULT '[]',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE INDEX jobq_subscriptions_user ON jobq_subscriptions (platform, user_id, id);
CREATE INDEX jobq_subscriptions_panel ON jobq_subscriptions (panel, id);
