-- jobs_count_updated fires on every UPDATE statement of jobs, claims and lease renewals
-- included, and most of those change no count: a claim moves pending → processing, a
-- renewal processing → processing. Such a statement leaves at once, after two scans of
-- its transition tables, instead of building the join and running two empty upserts
-- (docs/performance.md, "Before and after").
-- Every counted change has a new status other than processing (done, failed, cancelled,
-- or pending after an ended attempt) or an old one among the finished statuses (a retry).
CREATE OR REPLACE FUNCTION conveyor_count_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM new_jobs WHERE status <> 'processing')
       AND NOT EXISTS (SELECT FROM old_jobs WHERE status IN ('done', 'failed', 'cancelled'))
    THEN
        RETURN NULL;
    END IF;
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
