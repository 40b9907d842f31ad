-- Reliability markers (issue 9): nothing lost, nothing run twice, across crashes.
--
-- submit_started_at: set just before a job's submit request goes to fal; cleared when its
-- handle is stored or it is requeued. A dispatching job whose lease expired with it set may
-- have been accepted by fal, so the rescue ends it (refunded) instead of resubmitting it.
--
-- delivered_at: when the user was told the job's outcome. A finished job keeps its lease
-- until then, so a crash between finish and delivery is rescued and delivered again.
-- (SQLite cannot add a CHECK constraint to an existing table; the adapter keeps
-- delivered_at NULL until finished_at is set.)
ALTER TABLE jobs ADD COLUMN submit_started_at INTEGER;
ALTER TABLE jobs ADD COLUMN delivered_at INTEGER;
-- Jobs finished before this migration were delivered by the process that finished them.
UPDATE jobs SET delivered_at = finished_at WHERE finished_at IS NOT NULL;
-- Finished jobs still waiting for their delivery, by lease end (the rescue's scan).
CREATE INDEX jobs_undelivered_idx ON jobs (lease_until) WHERE finished_at IS NOT NULL AND delivered_at IS NULL;
