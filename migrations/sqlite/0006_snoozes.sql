-- Waiting is not failing: a job whose handler was told "not now" (a 429, a limiter with no
-- room, a lock held by another job) goes back to the schedule without spending an attempt.
-- `snoozes` counts those waits, so a job can wait often but not for ever.
-- Forward-only: never edit an applied migration; add a new file.
ALTER TABLE jobq_jobs ADD COLUMN snoozes INTEGER NOT NULL DEFAULT 0 CHECK (snoozes >= 0);

-- Adaptive rates: a name slowed down below the rate its callers ask for (the other side said
-- 429: the rate halves, at most once per Retry-After, and every turn taken adds a little back)
-- keeps its current spacing in `interval_us`; NULL means the callers' own rate. `held_until`:
-- no turn before it (the Retry-After, honoured by every process). Microseconds.
ALTER TABLE jobq_rate_limits ADD COLUMN interval_us INTEGER CHECK (interval_us > 0);
ALTER TABLE jobq_rate_limits ADD COLUMN held_until INTEGER NOT NULL DEFAULT 0;
