-- The hot statements (the claim, the outcomes, the lease renewal, the single enqueue) as
-- PL/pgSQL functions, which a store reaching PostgreSQL through a transaction-mode pooler
-- calls. There nothing is prepared (the next transaction may run on another server session),
-- so each statement sent as it is gets parsed and planned on every call: most of a claim's
-- cost. PL/pgSQL keeps each statement's plan in the server session that runs it, so every
-- pooled server connection plans a function's statement once and reuses it, with no named
-- prepared statement and no session setting. The SET clauses give the runtime's functions
-- the runtime sessions' settings (generic plans, no sequential scan, no JIT: PostgresStore)
-- for the call only; conveyor_enqueue, a client statement, is planned as usual. Direct
-- connections keep their prepared statements (queries.sql), which are as fast.
-- Each body is its queries.sql statement with %(name)s as the argument _name, and in
-- conveyor_finish_and_claim the claimed row as one column of the table's type
-- (`claimed::jobs`, read back as `(job).*`), so that the functions follow the table's
-- columns. tests/postgres/test_runtime_functions.py checks that each body is still its
-- statement: a change to one of those statements needs a migration that replaces its
-- function. `#variable_conflict use_column`: a name such as `id` or `status` is the table's
-- column, not the function's result column of that name.

CREATE FUNCTION conveyor_claim(_worker text, _now timestamptz, _lease interval, _limit bigint)
RETURNS SETOF jobs
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH next AS MATERIALIZED (WITH RECURSIVE level (priority) AS (
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
    LIMIT _limit)
    UPDATE jobs
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
    RETURNING jobs.*;
END
$$;

CREATE FUNCTION conveyor_finish_and_claim(_outcomes json, _ids bigint[], _wake text[], _worker text, _now timestamptz, _lease interval, _limit bigint)
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
    SELECT job.id, job.applies, outcome.kind, outcome.result, outcome.error, outcome.retry_at
    FROM outcome
    CROSS JOIN LATERAL (
    SELECT jobs.id, outcome.kind <> 'ended' AND jobs.status = 'processing' AS applies
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
    THEN pg_notify('conveyor_jobs', jobs.queue) END AS woke
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

CREATE FUNCTION conveyor_finish_many(_outcomes json, _ids bigint[], _wake text[], _now timestamptz)
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
    SELECT job.id, job.applies, outcome.kind, outcome.result, outcome.error, outcome.retry_at
    FROM outcome
    CROSS JOIN LATERAL (
    SELECT jobs.id, outcome.kind <> 'ended' AND jobs.status = 'processing' AS applies
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
    THEN pg_notify('conveyor_jobs', jobs.queue) END AS woke
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

CREATE FUNCTION conveyor_heartbeat(_ids bigint[], _workers text[], _attempts integer[], _now timestamptz, _lease interval)
RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH held AS MATERIALIZED (SELECT jobs.id, jobs.status
    FROM jobs
    JOIN unnest(_ids::bigint[], _workers::text[], _attempts::integer[])
    AS ref (id, worker, attempt)
    ON jobs.id = ref.id
    WHERE jobs.worker = ref.worker
    AND jobs.attempts = ref.attempt
    AND jobs.lease_expires_at IS NOT NULL
    ORDER BY jobs.id
    FOR UPDATE OF jobs)
    UPDATE jobs
    SET lease_expires_at = coalesce(_now::timestamptz, now()) + _lease::interval
    FROM held
    WHERE jobs.id = held.id
    RETURNING jobs.id, jobs.status;
END
$$;

CREATE FUNCTION conveyor_enqueue(_type text, _queue text, _payload jsonb, _priority smallint, _max_attempts integer, _run_at timestamptz, _unique_key text, _concurrency_key text, _trace_context text)
RETURNS TABLE (id bigint, run_at timestamptz, created_at timestamptz)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH inserted AS (
    INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at, unique_key,
    concurrency_key, trace_context, created_at, updated_at)
    VALUES (_type, _queue, _payload::jsonb, _priority, _max_attempts,
    coalesce(_run_at::timestamptz, now()), _unique_key::text,
    _concurrency_key::text, _trace_context::text, now(), now())
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
    DO NOTHING
    RETURNING id, queue, run_at, created_at
    )
    SELECT inserted.id, inserted.run_at, inserted.created_at
    FROM inserted
    CROSS JOIN LATERAL pg_notify('conveyor_jobs', inserted.queue) AS woke;
END
$$;
