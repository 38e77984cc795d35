-- The finishing statements (finish_many, finish_and_claim and their variants: the `outcomes`
-- fragment of queries.sql) add their outcomes to job_counts and job_minutes themselves, in
-- two CTEs over the rows they wrote: the statement-level trigger jobs_count_updated took
-- about a quarter of a finish_and_claim's time on the server, joining its transition tables
-- (docs/performance.md, "Counting in the finishing statement").
--
-- Such a statement sets the transaction-local flag conveyor.counted as it writes a row, and
-- the trigger, fired for that statement at depth 1, clears it and leaves. A statement run by
-- a trigger (depth 2: the cancel or release of a finished job's dependents by
-- jobs_settle_dependents) is counted by the trigger as before, the flag notwithstanding; and
-- the next statement of the transaction finds the flag cleared. A claim in the same
-- statement (finish_and_claim) shares the transition tables but changes no count
-- (pending → processing), so skipping the trigger for the whole statement loses nothing.
CREATE OR REPLACE FUNCTION conveyor_count_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() = 1 AND current_setting('conveyor.counted', true) = 'on' THEN
        PERFORM set_config('conveyor.counted', '', true);
        RETURN NULL;
    END IF;
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

-- The pooled store's functions of finish_and_claim and finish_many (migration 0016), replaced
-- by their new statements (tests/postgres/test_runtime_functions.py checks they match).
CREATE OR REPLACE FUNCTION conveyor_finish_and_claim(_outcomes json, _ids bigint[], _wake text[], _worker text, _now timestamptz, _lease interval, _limit bigint)
RETURNS TABLE (finished text, told bigint, job jobs)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH outcome AS (
    SELECT (o ->> 0)::bigint      AS id,
    o ->> 1                AS worker,
    (o ->> 2)::integer     AS attempt,
    o ->> 3                AS result,
    o ->> 4                AS error,
    (o ->> 5)::timestamptz AS retry_at,
    o ->> 6                AS kind
    FROM json_array_elements(_outcomes::json) AS batch (o)
    ),
    held AS MATERIALIZED (
    SELECT job.id, job.applies, job.run_at, outcome.kind, outcome.result, outcome.error,
    outcome.retry_at
    FROM outcome
    CROSS JOIN LATERAL (
    SELECT jobs.id, outcome.kind <> 'ended' AND jobs.status = 'processing' AS applies,
    jobs.run_at
    FROM jobs
    WHERE jobs.id = outcome.id
    AND jobs.worker = outcome.worker
    AND jobs.attempts = outcome.attempt
    AND jobs.lease_expires_at IS NOT NULL  -- no status literal: see held_refs
    AND (outcome.kind <> 'ended' OR jobs.status <> 'processing')
    FOR UPDATE
    ) AS job
    ),
    finished AS (
    UPDATE jobs
    SET status           = CASE
    WHEN NOT o.applies THEN jobs.status
    WHEN o.kind IN ('done', 'failed') THEN o.kind
    ELSE 'pending'
    END,
    attempts         = jobs.attempts - (o.applies AND o.kind = 'snoozed')::integer,
    result           = CASE WHEN o.applies AND o.kind = 'done' THEN o.result::jsonb
    ELSE jobs.result END,
    run_at           = CASE WHEN o.applies AND o.retry_at IS NOT NULL
    THEN o.retry_at ELSE jobs.run_at END,
    last_error       = CASE WHEN o.applies THEN coalesce(o.error, jobs.last_error)
    ELSE jobs.last_error END,
    finished_at      = CASE WHEN NOT o.applies THEN jobs.finished_at
    WHEN o.retry_at IS NOT NULL THEN NULL
    ELSE coalesce(_now::timestamptz, now()) END,
    updated_at       = CASE WHEN o.applies THEN coalesce(_now::timestamptz, now())
    ELSE jobs.updated_at END,
    lease_expires_at = NULL
    FROM held AS o
    WHERE jobs.id = o.id
    AND jobs.id = ANY (_ids::bigint[])
    RETURNING jobs.id, jobs.status, o.applies,
    CASE WHEN (NOT o.applies AND jobs.status = 'pending')
    OR jobs.queue = ANY (_wake::text[])
    THEN pg_notify('conveyor_jobs', jobs.queue) END AS woke,
    jobs.queue, o.kind, o.run_at AS was_run_at, jobs.started_at, jobs.updated_at,
    set_config('conveyor.counted', 'on', true) AS counted_here
    ),
    counted AS (
    INSERT INTO job_counts AS c (queue, status, shard, n)
    SELECT queue, status, pg_backend_pid(), count(*)
    FROM finished
    WHERE applies AND status IN ('done', 'failed')
    GROUP BY queue, status
    ORDER BY queue, status  -- key order, as the trigger: no deadlock with fold_counts
    ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n
    ),
    timed AS (
    INSERT INTO job_minutes AS m (minute, queue, shard, wait_bucket, run_bucket,
    finished, failed, retried)
    SELECT date_trunc('minute', updated_at), queue, pg_backend_pid(),
    conveyor_bucket(extract(epoch FROM started_at - was_run_at)),
    conveyor_bucket(extract(epoch FROM updated_at - started_at)),
    count(*) FILTER (WHERE status = 'done'),
    count(*) FILTER (WHERE status = 'failed'),
    count(*) FILTER (WHERE status = 'pending')
    FROM finished
    WHERE applies AND kind <> 'snoozed'
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (minute, queue, shard, wait_bucket, run_bucket) DO UPDATE
    SET finished = m.finished + excluded.finished,
    failed   = m.failed + excluded.failed,
    retried  = m.retried + excluded.retried
    ),
    next AS MATERIALIZED (WITH RECURSIVE level (priority) AS (
    (SELECT priority FROM jobs WHERE status = 'pending' ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT jobs.priority
    FROM jobs
    WHERE jobs.status = 'pending'
    AND jobs.priority < level.priority
    ORDER BY jobs.priority DESC
    LIMIT 1)
    FROM level
    WHERE level.priority IS NOT NULL
    )
    SELECT due.id
    FROM level
    CROSS JOIN LATERAL (
    SELECT id
    FROM jobs
    WHERE status = 'pending'
    AND priority = level.priority
    AND run_at <= coalesce(_now::timestamptz, now())
    AND (lease_expires_at IS NULL OR lease_expires_at < coalesce(_now::timestamptz, now()))
    AND (SELECT q.name FROM queues AS q WHERE q.name = jobs.queue AND (q.paused OR q.paused_until > coalesce(_now::timestamptz, now()) OR q.fair OR q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL OR q.key_concurrency IS NOT NULL)) IS NULL
    ORDER BY run_at, id
    LIMIT _limit
    FOR UPDATE SKIP LOCKED
    ) AS due
    LIMIT _limit),
    claimed AS (UPDATE jobs
    SET status           = 'processing',
    attempts         = jobs.attempts + 1,
    worker           = _worker,
    started_at       = coalesce(_now::timestamptz, now()),
    earlier_starts   = CASE WHEN jobs.started_at IS NULL THEN jobs.earlier_starts
    ELSE (jobs.earlier_starts || jobs.started_at)
    [greatest(1, cardinality(jobs.earlier_starts) - 98):]
    END,
    updated_at       = coalesce(_now::timestamptz, now()),
    lease_expires_at = coalesce(_now::timestamptz, now()) + _lease::interval,
    progress         = NULL,
    progress_message = NULL
    WHERE jobs.id = ANY (ARRAY(SELECT id FROM next))
    RETURNING jobs.*)
    SELECT (SELECT coalesce(json_agg(json_build_array(id, status)) FILTER (WHERE applies), '[]')
    FROM finished)::text
    AS finished,
    (SELECT count(pg_notify('conveyor_finished', ids))
    FROM (SELECT string_agg(id::text, ',') AS ids
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk
    FROM finished
    WHERE applies AND status IN ('done', 'failed')
    AND EXISTS (SELECT 1 FROM finish_listeners)) AS ended
    GROUP BY chunk) AS notices) AS told,
    claimed::jobs
    FROM (VALUES (1)) AS one
    LEFT JOIN claimed ON true;
END
$$;

CREATE OR REPLACE FUNCTION conveyor_finish_many(_outcomes json, _ids bigint[], _wake text[], _now timestamptz)
RETURNS TABLE (id bigint, status text, applies boolean, told bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH outcome AS (
    SELECT (o ->> 0)::bigint      AS id,
    o ->> 1                AS worker,
    (o ->> 2)::integer     AS attempt,
    o ->> 3                AS result,
    o ->> 4                AS error,
    (o ->> 5)::timestamptz AS retry_at,
    o ->> 6                AS kind
    FROM json_array_elements(_outcomes::json) AS batch (o)
    ),
    held AS MATERIALIZED (
    SELECT job.id, job.applies, job.run_at, outcome.kind, outcome.result, outcome.error,
    outcome.retry_at
    FROM outcome
    CROSS JOIN LATERAL (
    SELECT jobs.id, outcome.kind <> 'ended' AND jobs.status = 'processing' AS applies,
    jobs.run_at
    FROM jobs
    WHERE jobs.id = outcome.id
    AND jobs.worker = outcome.worker
    AND jobs.attempts = outcome.attempt
    AND jobs.lease_expires_at IS NOT NULL  -- no status literal: see held_refs
    AND (outcome.kind <> 'ended' OR jobs.status <> 'processing')
    FOR UPDATE
    ) AS job
    ),
    finished AS (
    UPDATE jobs
    SET status           = CASE
    WHEN NOT o.applies THEN jobs.status
    WHEN o.kind IN ('done', 'failed') THEN o.kind
    ELSE 'pending'
    END,
    attempts         = jobs.attempts - (o.applies AND o.kind = 'snoozed')::integer,
    result           = CASE WHEN o.applies AND o.kind = 'done' THEN o.result::jsonb
    ELSE jobs.result END,
    run_at           = CASE WHEN o.applies AND o.retry_at IS NOT NULL
    THEN o.retry_at ELSE jobs.run_at END,
    last_error       = CASE WHEN o.applies THEN coalesce(o.error, jobs.last_error)
    ELSE jobs.last_error END,
    finished_at      = CASE WHEN NOT o.applies THEN jobs.finished_at
    WHEN o.retry_at IS NOT NULL THEN NULL
    ELSE coalesce(_now::timestamptz, now()) END,
    updated_at       = CASE WHEN o.applies THEN coalesce(_now::timestamptz, now())
    ELSE jobs.updated_at END,
    lease_expires_at = NULL
    FROM held AS o
    WHERE jobs.id = o.id
    AND jobs.id = ANY (_ids::bigint[])
    RETURNING jobs.id, jobs.status, o.applies,
    CASE WHEN (NOT o.applies AND jobs.status = 'pending')
    OR jobs.queue = ANY (_wake::text[])
    THEN pg_notify('conveyor_jobs', jobs.queue) END AS woke,
    jobs.queue, o.kind, o.run_at AS was_run_at, jobs.started_at, jobs.updated_at,
    set_config('conveyor.counted', 'on', true) AS counted_here
    ),
    counted AS (
    INSERT INTO job_counts AS c (queue, status, shard, n)
    SELECT queue, status, pg_backend_pid(), count(*)
    FROM finished
    WHERE applies AND status IN ('done', 'failed')
    GROUP BY queue, status
    ORDER BY queue, status  -- key order, as the trigger: no deadlock with fold_counts
    ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n
    ),
    timed AS (
    INSERT INTO job_minutes AS m (minute, queue, shard, wait_bucket, run_bucket,
    finished, failed, retried)
    SELECT date_trunc('minute', updated_at), queue, pg_backend_pid(),
    conveyor_bucket(extract(epoch FROM started_at - was_run_at)),
    conveyor_bucket(extract(epoch FROM updated_at - started_at)),
    count(*) FILTER (WHERE status = 'done'),
    count(*) FILTER (WHERE status = 'failed'),
    count(*) FILTER (WHERE status = 'pending')
    FROM finished
    WHERE applies AND kind <> 'snoozed'
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (minute, queue, shard, wait_bucket, run_bucket) DO UPDATE
    SET finished = m.finished + excluded.finished,
    failed   = m.failed + excluded.failed,
    retried  = m.retried + excluded.retried
    )
    SELECT id, status, applies, (SELECT count(pg_notify('conveyor_finished', ids))
    FROM (SELECT string_agg(id::text, ',') AS ids
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk
    FROM finished
    WHERE applies AND status IN ('done', 'failed')
    AND EXISTS (SELECT 1 FROM finish_listeners)) AS ended
    GROUP BY chunk) AS notices) AS told FROM finished;
END
$$;
