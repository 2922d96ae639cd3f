-- The same tables as on PostgreSQL (see there). Times are INTEGER microseconds since the Unix
-- epoch, UTC. Forward-only: never edit an applied migration; add a new file.

CREATE TABLE jobq_orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    platform        TEXT    NOT NULL CHECK (platform IN ('telegram', 'discord')),
    user_id         INTEGER NOT NULL CHECK (user_id > 0),
    chat_id         INTEGER NOT NULL,
    plan            TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('new', 'renew', 'upgrade')),
    subscription_id INTEGER REFERENCES jobq_subscriptions (id),
    status          TEXT    NOT NULL DEFAULT 'pending_approval'
                    CHECK (status IN ('pending_approval', 'approved', 'rejected', 'provisioning',
                                      'active', 'failed')),
    origin_key      TEXT    NOT NULL UNIQUE,
    decided_by      INTEGER,
    job_id          INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX jobq_orders_user ON jobq_orders (platform, user_id, id);
CREATE INDEX jobq_orders_status ON jobq_orders (status, id);

CREATE TABLE jobq_order_receipts (
    order_id    INTEGER NOT NULL REFERENCES jobq_orders (id),
    message_id  INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (order_id, message_id)
);

CREATE TABLE jobq_bot_dialogues (
    platform   TEXT    NOT NULL CHECK (platform IN ('telegram', 'discord')),
    chat_id    INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (platform, chat_id)
);

CREATE TABLE jobq_bot_admins (
    platform TEXT    NOT NULL CHECK (platform IN ('telegram', 'discord')),
    user_id  INTEGER NOT NULL CHECK (user_id > 0),
    added_by INTEGER NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (platform, user_id)
);
