-- Retention (SPEC §7): `serve` and `worker` prune finished jobs, one process at a time
-- across the fleet (conveyor/worker/retention.py).

-- Who leads a fleet-wide chore (role 'retention'), and until when: `until` is on the lease
-- clock, like lease deadlines (see conveyor/stores/sqlite/clock.py), so a process whose wall
-- clock is off, or a step of the machine's clock, never hands the role to a second process
-- while the first still holds it. Taken over by anyone once `until` has passed (try_lead).
CREATE TABLE leaders (
    role   TEXT    PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
) WITHOUT ROWID;

-- Pruning walks finished jobs one status at a time, oldest first (each status has its own
-- retention): (status, finished_at) instead of (finished_at), so that pruning failed jobs
-- after 7 days does not step over every done job kept for ever on each batch.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (status, finished_at)
    WHERE status IN ('done', 'failed', 'cancelled');
