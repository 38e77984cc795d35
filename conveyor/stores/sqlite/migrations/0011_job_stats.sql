-- Counts of finished jobs and per-minute aggregates (SPEC §9): the overview's cost must not
-- grow with the finished jobs the table holds.
--
-- job_counts: done, failed and cancelled jobs per queue, exact, kept in the transaction of
-- every change (a finish, cancel, retry, recovery, bulk action, a dependency's cascade, an
-- insert already cancelled, a prune) by the triggers below, and for jobs done by the store. Pending and processing jobs
-- are counted from their partial indexes instead (they are few; counting them here would put
-- a write on every enqueue and claim). Rows at 0 stay, and are left out when read.
CREATE TABLE job_counts (
    queue  TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (queue, status)
) WITHOUT ROWID;

INSERT INTO job_counts (queue, status, n)
SELECT queue, status, count(*)
FROM jobs
WHERE status IN ('done', 'failed', 'cancelled')
GROUP BY queue, status;

-- job_minutes: attempts that ended, per minute (wall-clock minutes since the epoch) and
-- queue: finished (done), failed (for good), retried (back to pending with the attempt
-- used: a retry, or a recovery with attempts left). Their queue wait (run_at → started_at)
-- and run time (started_at → end) are counted by bucket (conveyor/fleet.py BOUNDS, here in
-- microseconds): one row per (minute, queue, wait bucket, run bucket), so a batch of
-- attempts costs an upsert of the few rows most attempts of the minute share. SQLite has one writer at a
-- time: a shared row costs nobody a wait. Rows older than fleet.KEEP_MINUTES are deleted by
-- the reapers' maintenance (compact_stats).
CREATE TABLE job_minutes (
    minute      INTEGER NOT NULL,
    queue       TEXT    NOT NULL,
    wait_bucket INTEGER NOT NULL,
    run_bucket  INTEGER NOT NULL,
    finished    INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    retried     INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, wait_bucket, run_bucket)
) WITHOUT ROWID;

-- Every finish but `done` (a failure, a retry, a cancel, a recovery, a dependency's
-- cascade) and every retry out of a finished status is one of the statements that set
-- run_at (fail, recover_expired, cancel_many, retry_many, the jobs_settle_dependents
-- cascade; release and snooze too, which give the attempt back and count nothing). The
-- triggers fire on UPDATE OF run_at, so that claims, heartbeats and `complete` (which never
-- set run_at) run no trigger program at all: SQLite runs every trigger of an UPDATE's columns
-- once per row, its WHEN inside, and three triggers on UPDATE OF status cost a drained job a
-- fifth of the store's rate. Jobs done (only `complete` makes them so) are counted once per
-- batch instead, by the store, in the transaction that completes them (queries.sql:
-- count_done, done_minutes).
CREATE TRIGGER jobs_count_in AFTER UPDATE OF run_at ON jobs
WHEN NEW.status IN ('done', 'failed', 'cancelled') AND OLD.status <> NEW.status
BEGIN
    INSERT INTO job_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1)
    ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_out AFTER UPDATE OF run_at ON jobs
WHEN OLD.status IN ('done', 'failed', 'cancelled') AND OLD.status <> NEW.status
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
END;

-- An attempt that failed for good, or failed (or was recovered) with attempts left. A release
-- or snooze gives the attempt back (attempts - 1): not an ended attempt.
CREATE TRIGGER jobs_minute_stats AFTER UPDATE OF run_at ON jobs
WHEN OLD.status = 'processing'
 AND (NEW.status = 'failed' OR (NEW.status = 'pending' AND NEW.attempts = OLD.attempts))
BEGIN
    INSERT INTO job_minutes (minute, queue, wait_bucket, run_bucket, finished, failed, retried)
    VALUES (NEW.updated_at / 60000000,
            NEW.queue,
            CASE
                WHEN OLD.started_at - OLD.run_at < 1000 THEN 0
                WHEN OLD.started_at - OLD.run_at < 2000 THEN 1
                WHEN OLD.started_at - OLD.run_at < 5000 THEN 2
                WHEN OLD.started_at - OLD.run_at < 10000 THEN 3
                WHEN OLD.started_at - OLD.run_at < 20000 THEN 4
                WHEN OLD.started_at - OLD.run_at < 50000 THEN 5
                WHEN OLD.started_at - OLD.run_at < 100000 THEN 6
                WHEN OLD.started_at - OLD.run_at < 200000 THEN 7
                WHEN OLD.started_at - OLD.run_at < 500000 THEN 8
                WHEN OLD.started_at - OLD.run_at < 1000000 THEN 9
                WHEN OLD.started_at - OLD.run_at < 2000000 THEN 10
                WHEN OLD.started_at - OLD.run_at < 5000000 THEN 11
                WHEN OLD.started_at - OLD.run_at < 10000000 THEN 12
                WHEN OLD.started_at - OLD.run_at < 30000000 THEN 13
                WHEN OLD.started_at - OLD.run_at < 60000000 THEN 14
                WHEN OLD.started_at - OLD.run_at < 120000000 THEN 15
                WHEN OLD.started_at - OLD.run_at < 300000000 THEN 16
                WHEN OLD.started_at - OLD.run_at < 600000000 THEN 17
                WHEN OLD.started_at - OLD.run_at < 1800000000 THEN 18
                WHEN OLD.started_at - OLD.run_at < 3600000000 THEN 19
                ELSE 20 END,
            CASE
                WHEN NEW.updated_at - OLD.started_at < 1000 THEN 0
                WHEN NEW.updated_at - OLD.started_at < 2000 THEN 1
                WHEN NEW.updated_at - OLD.started_at < 5000 THEN 2
                WHEN NEW.updated_at - OLD.started_at < 10000 THEN 3
                WHEN NEW.updated_at - OLD.started_at < 20000 THEN 4
                WHEN NEW.updated_at - OLD.started_at < 50000 THEN 5
                WHEN NEW.updated_at - OLD.started_at < 100000 THEN 6
                WHEN NEW.updated_at - OLD.started_at < 200000 THEN 7
                WHEN NEW.updated_at - OLD.started_at < 500000 THEN 8
                WHEN NEW.updated_at - OLD.started_at < 1000000 THEN 9
                WHEN NEW.updated_at - OLD.started_at < 2000000 THEN 10
                WHEN NEW.updated_at - OLD.started_at < 5000000 THEN 11
                WHEN NEW.updated_at - OLD.started_at < 10000000 THEN 12
                WHEN NEW.updated_at - OLD.started_at < 30000000 THEN 13
                WHEN NEW.updated_at - OLD.started_at < 60000000 THEN 14
                WHEN NEW.updated_at - OLD.started_at < 120000000 THEN 15
                WHEN NEW.updated_at - OLD.started_at < 300000000 THEN 16
                WHEN NEW.updated_at - OLD.started_at < 600000000 THEN 17
                WHEN NEW.updated_at - OLD.started_at < 1800000000 THEN 18
                WHEN NEW.updated_at - OLD.started_at < 3600000000 THEN 19
                ELSE 20 END,
            0,
            NEW.status = 'failed',
            NEW.status = 'pending')
    ON CONFLICT (minute, queue, wait_bucket, run_bucket) DO UPDATE
    SET failed  = failed + excluded.failed,
        retried = retried + excluded.retried;
END;

CREATE TRIGGER jobs_count_inserted AFTER INSERT ON jobs
WHEN NEW.status IN ('done', 'failed', 'cancelled')
BEGIN
    INSERT INTO job_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1)
    ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs
WHEN OLD.status IN ('done', 'failed', 'cancelled')
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
END;
