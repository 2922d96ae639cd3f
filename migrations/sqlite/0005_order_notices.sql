-- The same table as on PostgreSQL (see there). Times are INTEGER microseconds since the Unix
-- epoch, UTC. Forward-only: never edit an applied migration; add a new file.

CREATE TABLE jobq_order_notices (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id           INTEGER NOT NULL REFERENCES jobq_orders (id),
    admin_id           INTEGER NOT NULL,
    receipt_message_id INTEGER NOT NULL DEFAULT 0,
    what               TEXT    NOT NULL CHECK (what IN ('message', 'forward')),
    text               TEXT    NOT NULL DEFAULT '',
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    INTEGER NOT NULL,
    sent_at            INTEGER,
    gave_up_at         INTEGER,
    last_error         TEXT,
    created_at         INTEGER NOT NULL,
    UNIQUE (order_id, receipt_message_id, what, admin_id)
);

CREATE INDEX jobq_order_notices_due ON jobq_order_notices (next_attempt_at, id)
    WHERE sent_at IS NULL AND gave_up_at IS NULL;
