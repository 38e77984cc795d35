-- Retention (SPEC §7): `serve` and `worker` prune finished jobs, one process at a time
-- across the fleet (conveyor/worker/retention.py).

-- Who leads a fleet-wide chore (role 'retention'), and until when, on the database's clock
-- (now()), so no process's own clock decides. Taken over by anyone once `until` has passed
-- (try_lead). A row, not an advisory lock: a session lock belongs to one connection, and
-- the store's connections are pooled (and may go through a transaction-mode pooler).
CREATE TABLE leaders (
    role   text        PRIMARY KEY,
    holder text        NOT NULL,
    until  timestamptz NOT NULL
);

-- Pruning walks finished jobs one status at a time, oldest first (each status has its own
-- retention): (status, finished_at) instead of (finished_at), so that pruning failed jobs
-- after 7 days does not step over every done job kept for ever on each batch.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (status, finished_at)
    WHERE status IN ('done', 'failed', 'cancelled');
