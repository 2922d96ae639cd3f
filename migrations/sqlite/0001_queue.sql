-- The durable queue on SQLite: the same tables as on PostgreSQL.
-- Times are INTEGER microseconds since the Unix epoch, UTC; JSON is TEXT.
-- Forward-only: never edit an applied migration; add a new file.

CREATE TABLE jobq_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    queue           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('available', 'scheduled', 'running', 'retrying',
                                                      'completed', 'failed', 'cancelled', 'discarded')),
    priority        INTEGER NOT NULL DEFAULT 0,
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts > 0),
    idempotency_key TEXT,
    run_at          INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    attempted_at    INTEGER,
    attempted_by    TEXT,
    locked_until    INTEGER,
    finalized_at    INTEGER,
    errors          TEXT    NOT NULL DEFAULT '[]'
);

CREATE INDEX jobq_jobs_fetch ON jobq_jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('available', 'scheduled', 'retrying');
CREATE UNIQUE INDEX jobq_jobs_idempotency_key ON jobq_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND state NOT IN ('cancelled', 'discarded');
CREATE INDEX jobq_jobs_lease ON jobq_jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobq_jobs_scheduled ON jobq_jobs (run_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX jobq_jobs_finalized ON jobq_jobs (finalized_at)
    WHERE state IN ('completed', 'cancelled', 'discarded');
CREATE INDEX jobq_jobs_failed ON jobq_jobs (queue, kind, id) WHERE state = 'failed';

CREATE TABLE jobq_queues (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

CREATE TABLE jobq_workers (
    id           TEXT PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT    NOT NULL,
    concurrency  INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

CREATE TABLE jobq_stats (
    minute      INTEGER NOT NULL,
    queue       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, kind, outcome)
);

CREATE TABLE jobq_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    surface TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    count   INTEGER NOT NULL
);
CREATE INDEX jobq_audit_at ON jobq_audit (at DESC);
