-- Counts of finished jobs and per-minute aggregates (SPEC §9): the overview's cost must not
-- grow with the finished jobs the table holds.
--
-- Many workers finish jobs at once, so no row may be one that every finisher updates in
-- turn (each would wait for the commit of the one before). Both tables are sharded by the
-- writing session (pg_backend_pid()): a session runs one transaction at a time, so its rows
-- are never contended, and a reader sums the shards. The reapers' maintenance
-- (compact_stats) folds the shards of sessions that are gone into shard 0, so the tables
-- stay as small as the live sessions make them.
--
-- job_counts: done, failed and cancelled jobs per queue, exact: kept by statement-level
-- triggers (transition tables) in the transaction of every change (a finish, cancel, retry,
-- recovery, bulk action, a dependency's cascade, a prune), one upsert per statement and
-- (queue, status), not per job. Pending and processing jobs are counted from their partial
-- indexes instead (they are few; counting them here would put a write on every enqueue
-- and claim).
CREATE TABLE job_counts (
    queue  text    NOT NULL,
    status text    NOT NULL,
    shard  integer NOT NULL,
    n      bigint  NOT NULL,
    PRIMARY KEY (queue, status, shard)
);

INSERT INTO job_counts (queue, status, shard, n)
SELECT queue, status, 0, count(*)
FROM jobs
WHERE status IN ('done', 'failed', 'cancelled')
GROUP BY queue, status;

-- job_minutes: attempts that ended, per minute, queue and shard: finished (done), failed
-- (for good), retried (back to pending with the attempt used: a retry, or a recovery with
-- attempts left). Their queue wait (run_at → started_at) and run time (started_at → end)
-- are counted by bucket (width_bucket over conveyor/fleet.py BOUNDS): one row per
-- (minute, queue, shard, wait bucket, run bucket). Rows older than fleet.KEEP_MINUTES are
-- deleted by compact_stats.
CREATE TABLE job_minutes (
    minute      timestamptz NOT NULL,
    queue       text        NOT NULL,
    shard       integer     NOT NULL,
    wait_bucket smallint    NOT NULL,
    run_bucket  smallint    NOT NULL,
    finished    integer     NOT NULL,
    failed      integer     NOT NULL,
    retried     integer     NOT NULL,
    PRIMARY KEY (minute, queue, shard, wait_bucket, run_bucket)
);

-- The bucket of a duration, as conveyor.fleet.bucket computes it.
CREATE FUNCTION conveyor_bucket(seconds double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT width_bucket(seconds, ARRAY[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
                                       1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]::float8[])
$$;

-- Every UPDATE statement of jobs: the rows whose status changed. A release or snooze gives
-- the attempt back (attempts - 1): not an ended attempt. Rows are written in key order, so
-- that the compaction, which also locks shard 0, cannot deadlock with a writer.
CREATE FUNCTION conveyor_count_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.queue, o.status AS was, n.status AS now_status,
               o.status = 'processing'
                 AND (n.status IN ('done', 'failed')
                      OR (n.status = 'pending' AND n.attempts = o.attempts)) AS ended,
               o.run_at, o.started_at, n.updated_at
        FROM new_jobs AS n
        JOIN old_jobs AS o ON o.id = n.id
        WHERE n.status <> o.status
    ),
    counted AS (
        INSERT INTO job_counts AS c (queue, status, shard, n)
        SELECT queue, status, pg_backend_pid(), sum(delta)
        FROM (SELECT queue, now_status AS status, 1 AS delta FROM changed
              WHERE now_status IN ('done', 'failed', 'cancelled')
              UNION ALL
              SELECT queue, was, -1 FROM changed
              WHERE was IN ('done', 'failed', 'cancelled')) AS d
        GROUP BY queue, status
        ORDER BY queue, status
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n
    )
    INSERT INTO job_minutes AS m (minute, queue, shard, wait_bucket, run_bucket,
                                  finished, failed, retried)
    SELECT date_trunc('minute', updated_at), queue, pg_backend_pid(),
           conveyor_bucket(extract(epoch FROM started_at - run_at)),
           conveyor_bucket(extract(epoch FROM updated_at - started_at)),
           count(*) FILTER (WHERE now_status = 'done'),
           count(*) FILTER (WHERE now_status = 'failed'),
           count(*) FILTER (WHERE now_status = 'pending')
    FROM changed
    WHERE ended
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (minute, queue, shard, wait_bucket, run_bucket) DO UPDATE
    SET finished = m.finished + excluded.finished,
        failed   = m.failed + excluded.failed,
        retried  = m.retried + excluded.retried;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_updated
AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
FOR EACH STATEMENT
EXECUTE FUNCTION conveyor_count_updated();

CREATE FUNCTION conveyor_count_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (queue, status, shard, n)
    SELECT queue, status, pg_backend_pid(), -count(*)
    FROM old_jobs
    WHERE status IN ('done', 'failed', 'cancelled')
    GROUP BY queue, status
    ORDER BY queue, status
    ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_deleted
AFTER DELETE ON jobs
REFERENCING OLD TABLE AS old_jobs
FOR EACH STATEMENT
EXECUTE FUNCTION conveyor_count_deleted();

-- Inserts: only jobs inserted already finished count (a job enqueued with a dependency that
-- had ended badly is inserted cancelled). Per statement too: a row-level trigger would add
-- to one row once per job, and a long insert's chain of versions of that row makes each
-- addition slower than the one before.
CREATE FUNCTION conveyor_count_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (queue, status, shard, n)
    SELECT queue, status, pg_backend_pid(), count(*)
    FROM new_jobs
    WHERE status IN ('done', 'failed', 'cancelled')
    GROUP BY queue, status
    ORDER BY queue, status
    ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_inserted
AFTER INSERT ON jobs
REFERENCING NEW TABLE AS new_jobs
FOR EACH STATEMENT
EXECUTE FUNCTION conveyor_count_inserted();

-- TRUNCATE jobs empties the counts with it.
CREATE FUNCTION conveyor_count_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_counts;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_truncated
AFTER TRUNCATE ON jobs
FOR EACH STATEMENT
EXECUTE FUNCTION conveyor_count_truncated();
