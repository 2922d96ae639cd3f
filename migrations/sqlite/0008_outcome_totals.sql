-- Attempts that ended each way (completed, retried, failed, cancelled) per queue and kind since
-- the database was created, all workers: the dashboard's cumulative counters. jobq_stats keeps
-- the same counts per minute but is pruned; this table never is. Written with jobq_stats, in
-- the same transaction.
-- Forward-only: never edit an applied migration; add a new file.

CREATE TABLE jobq_outcome_totals (
    queue   TEXT   NOT NULL,
    kind    TEXT   NOT NULL,
    outcome TEXT   NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (queue, kind, outcome)
);
