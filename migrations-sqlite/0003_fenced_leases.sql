-- Fenced leases, follow deadlines and retired accounts.
--
-- lease_epoch: the fencing token of the job's lease. Every claim and every takeover of an
-- expired lease increments it; every later write of the job must present the epoch it was
-- given, so a task that outlived its lease cannot write over the task that replaced it.
--
-- submitted_at: when fal accepted the job's current submission; the deadline that bounds
-- queueing and running at fal counts from it, across restarts.
--
-- accounts.retired_at: set at start for accounts no longer configured. A retired account
-- gets no new work; its jobs already at fal are still followed to their end.
ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN submitted_at INTEGER;
ALTER TABLE accounts ADD COLUMN retired_at INTEGER;
