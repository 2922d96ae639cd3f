-- Locks that end with their holder: a permit taken for a job's attempt names it, and is free
-- again as soon as that attempt no longer holds its lease (finished, rescued, released, or the
-- lease simply run out because its worker died), not only when the permit's own expiry passes.
-- Forward-only: never edit an applied migration; add a new file.
ALTER TABLE jobq_permits ADD COLUMN job_id BIGINT;
ALTER TABLE jobq_permits ADD COLUMN job_attempt INTEGER;
