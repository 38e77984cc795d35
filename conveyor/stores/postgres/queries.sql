-- Every statement the PostgreSQL store runs. Parameters are bound by name (psycopg's
-- %(name)s style), so no percent sign may appear anywhere else in this file.
-- A NULL now parameter means the database clock (now(): the transaction's start, which is
-- the statement's start for the store's own one-statement transactions).
-- Wake-ups: statements that make jobs runnable call pg_notify('conveyor_jobs', queue) in the
-- same transaction; PostgreSQL delivers it only on commit and folds duplicates into one.

-- name: schema_version
-- The highest applied migration, from the table the migration runner keeps.
SELECT coalesce(max(version), 0) AS version FROM schema_version

-- name: lock_migrations
-- Serialise concurrent migrate() calls (many workers starting at once); released at commit.
SELECT pg_advisory_xact_lock(7079031357295620405)

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL
)

-- name: record_migration
INSERT INTO schema_version (version, name, applied_at) VALUES (%(version)s, %(name)s, now())

-- name: enqueue
-- Insert one pending job and wake listeners; no row when an unfinished job holds its unique_key
-- (then nobody is woken either). Only what the database chose comes back (the id, run_at
-- when it was "now", the creation time): the store knows the rest, and reading the whole row
-- back cost a tenth of the call.
WITH inserted AS (
    INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at, unique_key,
                      concurrency_key, trace_context, created_at, updated_at)
    VALUES (%(type)s, %(queue)s, %(payload)s::jsonb, %(priority)s, %(max_attempts)s,
            coalesce(%(run_at)s::timestamptz, now()), %(unique_key)s::text,
            %(concurrency_key)s::text, %(trace_context)s::text, now(), now())
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
    DO NOTHING
    RETURNING id, queue, run_at, created_at
)
SELECT inserted.id, inserted.run_at, inserted.created_at
FROM inserted
CROSS JOIN LATERAL pg_notify('conveyor_jobs', inserted.queue) AS woke

-- name: enqueue_many_unkeyed
-- The common batch: no row carries a unique_key, so no row can conflict and the insert
-- needs neither ON CONFLICT (a speculative insertion per row) nor ids drawn ahead to match
-- rows back: ids are drawn in input order, so the store sorts the returned ids. One more
-- row, without an id, carries now(): the creation time of every row (the transaction's
-- start), and the run_at of rows that gave none. Reading 10,000 timestamps back cost the
-- client more than reading the ids. One notification per queue that got jobs. Same batch
-- format as enqueue_many below.
WITH inserted AS (
    INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at, concurrency_key,
                      trace_context, created_at, updated_at)
    SELECT row ->> 0, row ->> 1, (row ->> 2)::jsonb, (row ->> 3)::smallint,
           (row ->> 4)::integer, coalesce((row ->> 5)::timestamptz, now()), row ->> 7,
           row ->> 8, now(), now()
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS batch (row, ord)
    ORDER BY ord
    RETURNING id, queue
),
woken AS (
    SELECT pg_notify('conveyor_jobs', queue) FROM (SELECT DISTINCT queue FROM inserted) AS q
)
SELECT id, NULL::timestamptz AS created_at FROM inserted
UNION ALL
SELECT NULL, now() FROM (SELECT count(*) FROM woken) AS notified

-- name: enqueue_many
-- Insert a batch in one statement and wake listeners. The batch arrives as
-- one JSON array of [type, queue, payload JSON text, priority, max_attempts, run_at,
-- unique_key, concurrency_key, trace_context] rows: one parameter that the client encodes in C and the server parses once
-- (as jsonb, whose fields are then read without parsing the row's text again), where seven
-- arrays would be escaped element by element. The sequence is looked up once, not per row.
-- Ids are drawn from it per input row first, so each inserted row joins back to its input
-- position (RETURNING order is not guaranteed). Only what the database decides comes back
-- (id and times): the store knows the rest. Rows whose unique_key is held come back with a
-- NULL id; the store then reads their holder.
-- Rows are inserted in unique_key order (bytewise, COLLATE "C": one total order whatever the
-- database's collation), not input order. Each row is a speculative insertion that waits for
-- any open transaction that inserted the same key and holds its own key until commit: two
-- batches inserting shared keys in different orders would each wait for the other
-- (deadlock detected). In one global key order the first to take a key goes on and the
-- other waits behind it. Ties keep input order (ord), so ON CONFLICT DO NOTHING still skips
-- the later of two rows of the batch with the same key, as sequential inserts would.
WITH input AS MATERIALIZED (
    SELECT nextval((SELECT pg_get_serial_sequence('jobs', 'id'))::regclass) AS id,
           row ->> 0                  AS type,
           row ->> 1                  AS queue,
           (row ->> 2)::jsonb         AS payload,
           (row ->> 3)::smallint      AS priority,
           (row ->> 4)::integer       AS max_attempts,
           (row ->> 5)::timestamptz   AS run_at,
           row ->> 6                  AS unique_key,
           row ->> 7                  AS concurrency_key,
           row ->> 8                  AS trace_context,
           ord
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS batch (row, ord)
),
inserted AS (
    INSERT INTO jobs (id, type, queue, payload, priority, max_attempts, run_at, unique_key,
                      concurrency_key, trace_context, created_at, updated_at)
    SELECT id, type, queue, payload, priority, max_attempts,
           coalesce(run_at, now()), unique_key, concurrency_key, trace_context, now(), now()
    FROM input
    ORDER BY unique_key COLLATE "C", ord
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
    DO NOTHING
    RETURNING id, queue, run_at, created_at
)
SELECT inserted.id, inserted.run_at, inserted.created_at,
       CASE WHEN inserted.id IS NOT NULL THEN pg_notify('conveyor_jobs', inserted.queue) END
           AS woke
FROM input
LEFT JOIN inserted ON inserted.id = input.id
ORDER BY input.ord

-- name: lock_dependencies
-- The dependencies of a job being enqueued (SPEC §8), locked in id order (as every
-- multi-row lock here) until the enqueue commits: none can finish meanwhile, so each one is
-- either seen finished here or finds has_dependents set, and the new job's edge, when it
-- finishes (its UPDATE waits for this lock, then reads the committed row).
SELECT id, status, depth
FROM jobs
WHERE id = ANY (%(ids)s::bigint[])
ORDER BY id
FOR NO KEY UPDATE

-- name: enqueue_dependent
-- Insert a job with dependencies as dependencies.plan decided: pending and held until
-- waiting_for dependencies have finished (run_at held past every claim, the asked-for
-- run_at in held_run_at), or already cancelled by a dependency that ended badly. A job
-- with nothing left to wait for is due now: wake the fetchers.
WITH inserted AS (
    INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at, held_run_at,
                      unique_key, concurrency_key, depends_on, on_dependency_failure,
                      waiting_for, depth, status, last_error, finished_at, trace_context,
                      created_at, updated_at)
    VALUES (%(type)s, %(queue)s, %(payload)s::jsonb, %(priority)s, %(max_attempts)s,
            CASE WHEN %(waiting_for)s::integer > 0 THEN %(held)s::timestamptz
                 ELSE coalesce(%(run_at)s::timestamptz, now()) END,
            CASE WHEN %(waiting_for)s::integer > 0
                 THEN coalesce(%(run_at)s::timestamptz, now()) END,
            %(unique_key)s::text, %(concurrency_key)s::text, %(depends_on)s::bigint[],
            %(on_dependency_failure)s::text, %(waiting_for)s::integer, %(depth)s::integer,
            %(status)s::text, %(last_error)s::text,
            CASE WHEN %(status)s::text = 'cancelled' THEN now() END, %(trace_context)s::text,
            now(), now())
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
    DO NOTHING
    RETURNING *
),
named AS (  -- every dependency, finished or not: the dependents listing (job_dependents)
    INSERT INTO job_dependents (depends_on, job_id)
    SELECT DISTINCT unnest(inserted.depends_on), inserted.id FROM inserted
    ON CONFLICT DO NOTHING
)
SELECT inserted.*,
       CASE WHEN status = 'pending' AND waiting_for = 0
            THEN pg_notify('conveyor_jobs', queue) END AS woke
FROM inserted

-- name: add_dependencies
-- The new job job_id waits for each unfinished dependency in ids; finishing one of them now
-- has work to do (the jobs_settle_dependents trigger). Their rows are locked already.
WITH edges AS (
    INSERT INTO job_dependencies (depends_on, job_id)
    SELECT unnest(%(ids)s::bigint[]), %(job_id)s::bigint
)
UPDATE jobs
SET has_dependents = true
WHERE id = ANY (%(ids)s::bigint[])
  AND NOT has_dependents

-- name: retry_blocked
-- Of the jobs ids about to be retried, those whose dependency is still failed or cancelled
-- while they give up on such a dependency ("cancel"): retrying one would only cancel it
-- again (SPEC §8: retry the dependency first), so it is refused; with the dependency named.
-- Driven from the ids: one primary-key lookup per id and per dependency (LATERAL), nothing
-- for the jobs without dependencies; never a join the planner could turn into a scan.
SELECT DISTINCT ON (job.id) job.id, dep.id AS dependency, dep.status
FROM jobs AS job
CROSS JOIN LATERAL unnest(job.depends_on) AS ref (id)
CROSS JOIN LATERAL (SELECT d.id, d.status FROM jobs AS d WHERE d.id = ref.id) AS dep
WHERE job.id = ANY (%(ids)s::bigint[])
  AND job.depends_on IS NOT NULL
  AND job.on_dependency_failure = 'cancel'
  AND dep.status IN ('failed', 'cancelled')
ORDER BY job.id, dep.id

-- name: wait_again
-- Retried jobs ids wait again for their dependencies that are unfinished now (a retried
-- dependency, say), as at their enqueue: the unfinished dependencies locked in id order
-- (none can finish meanwhile), their edges (kept if still there) and flag, and the jobs
-- held. Driven from the ids by primary key, as retry_blocked.
WITH wanted AS MATERIALIZED (
    SELECT ref.id AS depends_on, job.id AS job_id
    FROM jobs AS job
    CROSS JOIN LATERAL unnest(job.depends_on) AS ref (id)
    WHERE job.id = ANY (%(ids)s::bigint[])
      AND job.depends_on IS NOT NULL
),
unfinished AS MATERIALIZED (
    SELECT id
    FROM jobs
    WHERE id = ANY (ARRAY(SELECT DISTINCT depends_on FROM wanted))
      AND status IN ('pending', 'processing')
    ORDER BY id
    FOR NO KEY UPDATE
),
deps AS (
    SELECT wanted.depends_on, wanted.job_id
    FROM wanted
    JOIN unfinished ON unfinished.id = wanted.depends_on
),
edges AS (
    INSERT INTO job_dependencies (depends_on, job_id)
    SELECT depends_on, job_id FROM deps
    ON CONFLICT DO NOTHING
),
marked AS (
    UPDATE jobs
    SET has_dependents = true
    WHERE id = ANY (ARRAY(SELECT id FROM unfinished))
      AND NOT has_dependents
)
UPDATE jobs
SET waiting_for = waiting.n,
    held_run_at = jobs.run_at,
    run_at      = %(held)s::timestamptz
FROM (SELECT job_id, count(*) AS n FROM deps GROUP BY job_id) AS waiting
WHERE jobs.id = waiting.job_id
  AND jobs.id = ANY (ARRAY(SELECT job_id FROM deps))

-- name: dependency_jobs
-- A job's dependencies (ctx.dependencies()), in id order.
SELECT dep.*
FROM jobs AS job
JOIN jobs AS dep ON dep.id = ANY (job.depends_on)
WHERE job.id = %(id)s
ORDER BY dep.id

-- name: dependents
-- The jobs that named %(id)s as a dependency, in id order (the job page's links): a range
-- of job_dependents' primary key, then each job by its own.
SELECT job.*
FROM job_dependents AS d
JOIN jobs AS job ON job.id = d.job_id
WHERE d.depends_on = %(id)s
ORDER BY d.job_id
LIMIT %(limit)s

-- name: get_unfinished_by_unique_key
-- The job holding a unique_key (after enqueue found it taken).
SELECT * FROM jobs
WHERE unique_key = %(unique_key)s
  AND status IN ('pending', 'processing')

-- name: next_due
-- Fragment: the ids of up to limit due pending jobs from any queue, in claim order, locked.
-- Used as a MATERIALIZED CTE, which is a fence: the rows are chosen and locked exactly once,
-- before the UPDATE. Written as WHERE id IN (subquery) or an inlined CTE, the planner may run
-- the LIMIT ... SKIP LOCKED subquery more than once (re-scans, rechecks after a concurrent
-- update), each run skipping different rows, and so claim more rows than asked.
-- SKIP LOCKED lets concurrent claimers pass over each other's rows instead of queueing.
-- One priority level at a time, highest first: each level is one range of jobs_pending,
-- whose due jobs (run_at <= now) come before its future ones. A single walk of the index in
-- (priority DESC, run_at, id) order would step over every future job of a higher priority
-- (a scheduled batch, a burst of urgent retries in backoff) on each claim. `level` finds
-- the next lower priority with one index probe; the nested loop keeps the levels' order and
-- each level's (run_at, id) order, so the rows arrive in claim order and the outer LIMIT
-- stops the walk, and the locking, once it has enough: no sort, no level visited in vain.
-- A pending job that still has a live lease is passed over: it was retried after a cancel
-- while the cancelled run may still be going (never two runs at once). The store takes this
-- path only while no queue has settings (next_due_restricted otherwise); a queue given
-- settings meanwhile is passed over here (one primary-key probe of the small queues table
-- per row, a scalar subquery: as NOT EXISTS the planner may turn it into a join that reads
-- the whole level and sorts it), so a pause, a hold or a limit applies at once, before the
-- worker reads the new settings.
WITH RECURSIVE level (priority) AS (
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
      AND run_at <= coalesce(%(now)s::timestamptz, now())
      AND (lease_expires_at IS NULL OR lease_expires_at < coalesce(%(now)s::timestamptz, now()))
      AND (SELECT q.name FROM queues AS q WHERE q.name = jobs.queue AND (q.paused OR q.paused_until > coalesce(%(now)s::timestamptz, now()) OR q.fair OR q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL OR q.key_concurrency IS NOT NULL)) IS NULL
    ORDER BY run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS due
LIMIT %(limit)s

-- name: next_due_from_queues
-- Fragment: as next_due, restricted to the queues in the text array queues.
WITH RECURSIVE level (priority) AS (
    (SELECT priority
     FROM jobs
     WHERE status = 'pending'
       AND queue = ANY (%(queues)s::text[])
     ORDER BY priority DESC
     LIMIT 1)
    UNION ALL
    SELECT (SELECT jobs.priority
            FROM jobs
            WHERE jobs.status = 'pending'
              AND jobs.queue = ANY (%(queues)s::text[])
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
      AND queue = ANY (%(queues)s::text[])
      AND priority = level.priority
      AND run_at <= coalesce(%(now)s::timestamptz, now())
      AND (lease_expires_at IS NULL OR lease_expires_at < coalesce(%(now)s::timestamptz, now()))
      AND (SELECT q.name FROM queues AS q WHERE q.name = jobs.queue AND (q.paused OR q.paused_until > coalesce(%(now)s::timestamptz, now()) OR q.fair OR q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL OR q.key_concurrency IS NOT NULL)) IS NULL
    ORDER BY run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS due
LIMIT %(limit)s

-- name: take_next
-- Fragment: move the jobs in `next` to processing under a fresh lease for worker. The ids
-- are matched as one array (an index lookup per id): joined to `next`, whose size a generic
-- plan guesses at a tenth of the table, the update would hash a full scan of the table.
-- (Not by ctid: a row updated concurrently before it was locked fails a ctid re-check.)
UPDATE jobs
SET status           = 'processing',
    attempts         = jobs.attempts + 1,
    worker           = %(worker)s,
    started_at       = coalesce(%(now)s::timestamptz, now()),
    -- a job started again keeps its previous start (the timeline's "each start"), the
    -- last 100; NULL for a job started at most once
    earlier_starts   = CASE WHEN jobs.started_at IS NULL THEN jobs.earlier_starts
                            ELSE (jobs.earlier_starts || jobs.started_at)
                                 [greatest(1, cardinality(jobs.earlier_starts) - 98):]
                       END,
    updated_at       = coalesce(%(now)s::timestamptz, now()),
    lease_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s::interval,
    progress         = NULL,
    progress_message = NULL
WHERE jobs.id = ANY (ARRAY(SELECT id FROM next))
RETURNING jobs.*

-- name: claim
-- Move up to limit due pending jobs, from any queue, to processing under a fresh lease.
WITH next AS MATERIALIZED ({{next_due}})
{{take_next}}

-- name: claim_from_queues
-- As claim, restricted to the queues in the text array queues.
WITH next AS MATERIALIZED ({{next_due_from_queues}})
{{take_next}}

-- name: lock_limited_queues
-- Serialise claims from queues with a concurrency, key or rate limit: one transaction lock
-- per queue, tried without waiting, before the claim statement that counts against them.
-- That statement's snapshot is taken after the lock, so it sees every claim that went
-- before (counting and locking in one statement would not do: its snapshot would predate
-- the lock). A queue whose lock another worker holds now is left to that worker this time:
-- nothing ever waits, so a limited queue never slows the claims from other queues.
SELECT name
FROM unnest(%(locked)s::text[]) AS name
WHERE pg_try_advisory_xact_lock(1668243062, hashtext(name))  -- (Conveyor's class, the queue)

-- name: next_due_restricted
-- Fragment: the ids of up to limit due pending jobs, locked, in claim order, from the queues
-- that may start jobs now, within each queue's settings (SPEC §7). Used instead of next_due
-- while any queue has settings. `pending_queues` skips from queue to queue over
-- jobs_pending_by_queue, so a paused or held queue's backlog is never read. `open` gives each
-- queue what it may still start: the least of limit, its free concurrency (processing jobs
-- on jobs_processing, less those in left_processing: the runs the statement using this
-- fragment ends) and its rate budget (starts in the sliding window); a limited queue
-- whose lock this transaction does not hold (settings changed since the worker last read
-- them) starts nothing this time. Plain queues walk their priority levels as next_due does;
-- keyed queues (key_concurrency or fair) one concurrency_key at a time (a skip scan over
-- jobs_pending_by_key), reading jobs only of the `limit` keys that would come first (by
-- their first due job; in a fair queue the least busy, least recently served ones), each
-- key no more than key_concurrency minus its processing jobs,
-- plus the jobs without a key. A job's turn is its key's processing jobs plus its place
-- among the key's candidates: a fair queue starts the least busy key's next job first
-- (priority still first), between equally busy keys the one least recently served
-- (key_starts), so claims rotate across keys even one job at a time.
WITH RECURSIVE pending_queues (queue) AS (
    (SELECT queue FROM jobs WHERE status = 'pending' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs AS j
            WHERE j.status = 'pending' AND j.queue > p.queue
            ORDER BY j.queue LIMIT 1)
    FROM pending_queues AS p
    WHERE p.queue IS NOT NULL
),
open AS MATERIALIZED (
    SELECT p.queue, s.key_concurrency AS per_key, coalesce(s.fair, false) AS fair,
           least(%(limit)s,
                 CASE WHEN s.concurrency IS NULL THEN %(limit)s
                      WHEN NOT p.queue = ANY (%(locked)s::text[]) THEN 0
                      ELSE s.concurrency - (SELECT count(*) FROM jobs AS r
                                            WHERE r.queue = p.queue AND r.status = 'processing')
                                         + (SELECT count(*) FROM left_processing AS f
                                            WHERE f.queue = p.queue)
                 END,
                 CASE WHEN s.rate_limit IS NULL THEN %(limit)s
                      WHEN NOT p.queue = ANY (%(locked)s::text[]) THEN 0
                      ELSE s.rate_limit - (SELECT count(*) FROM queue_starts AS w
                                           WHERE w.queue = p.queue
                                             AND w.started_at > coalesce(%(now)s::timestamptz, now())
                                                                - s.rate_period)
                 END,
                 CASE WHEN s.key_concurrency IS NOT NULL
                       AND NOT p.queue = ANY (%(locked)s::text[]) THEN 0
                      ELSE %(limit)s
                 END) AS budget
    FROM pending_queues AS p
    LEFT JOIN queues AS s ON s.name = p.queue
    WHERE p.queue IS NOT NULL
      AND (%(queues)s::text[] IS NULL OR p.queue = ANY (%(queues)s::text[]))
      AND NOT coalesce(s.paused, false)
      AND coalesce(s.paused_until <= coalesce(%(now)s::timestamptz, now()), true)
),
levels (queue, budget, priority) AS (
    SELECT o.queue, o.budget,
           (SELECT j.priority FROM jobs AS j
            WHERE j.status = 'pending' AND j.queue = o.queue
            ORDER BY j.priority DESC LIMIT 1)
    FROM open AS o
    WHERE o.budget > 0 AND o.per_key IS NULL AND NOT o.fair
    UNION ALL
    SELECT l.queue, l.budget,
           (SELECT j.priority FROM jobs AS j
            WHERE j.status = 'pending' AND j.queue = l.queue AND j.priority < l.priority
            ORDER BY j.priority DESC LIMIT 1)
    FROM levels AS l
    WHERE l.priority IS NOT NULL
),
keys (queue, per_key, budget, key) AS (
    SELECT o.queue, o.per_key, o.budget,
           (SELECT j.concurrency_key FROM jobs AS j
            WHERE j.status = 'pending' AND j.queue = o.queue AND j.concurrency_key IS NOT NULL
            ORDER BY j.concurrency_key LIMIT 1)
    FROM open AS o
    WHERE o.budget > 0 AND (o.per_key IS NOT NULL OR o.fair)
    UNION ALL
    SELECT k.queue, k.per_key, k.budget,
           (SELECT j.concurrency_key FROM jobs AS j
            WHERE j.status = 'pending' AND j.queue = k.queue AND j.concurrency_key > k.key
              AND j.concurrency_key IS NOT NULL
            ORDER BY j.concurrency_key LIMIT 1)
    FROM keys AS k
    WHERE k.key IS NOT NULL
),
key_load AS (
    SELECT k.queue, k.per_key, k.budget, k.key, o.fair,
           (SELECT count(*) FROM jobs AS r
            WHERE r.queue = k.queue AND r.concurrency_key = k.key AND r.status = 'processing')
           - (SELECT count(*) FROM left_processing AS f
              WHERE f.queue = k.queue AND f.concurrency_key = k.key) AS busy,
           (SELECT s.started_at FROM key_starts AS s
            WHERE s.queue = k.queue AND s.key = k.key) AS served,
           (SELECT ARRAY[-j.priority::float8, extract(epoch FROM j.run_at)::float8, j.id]
            FROM jobs AS j
            WHERE j.status = 'pending' AND j.queue = k.queue AND j.concurrency_key = k.key
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1) AS head
    FROM keys AS k
    JOIN open AS o ON o.queue = k.queue
    WHERE k.key IS NOT NULL
),
chosen_keys AS MATERIALIZED (
    SELECT queue, per_key, budget, key, busy
    FROM (SELECT l.*,
                 row_number() OVER (PARTITION BY l.queue
                                    ORDER BY l.head[1],
                                             CASE WHEN l.fair THEN l.busy END,
                                             CASE WHEN l.fair THEN l.served END NULLS FIRST,
                                             l.head[2], l.head[3]) AS place
          FROM key_load AS l
          WHERE l.head IS NOT NULL AND (l.per_key IS NULL OR l.busy < l.per_key)) AS ranked
    WHERE place <= %(limit)s
),
candidates AS (
    SELECT due.id, l.queue, due.priority, due.run_at, 1 AS turn
    FROM levels AS l
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM jobs AS j
        WHERE j.status = 'pending'
          AND j.queue = l.queue
          AND j.priority = l.priority
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (j.lease_expires_at IS NULL
               OR j.lease_expires_at < coalesce(%(now)s::timestamptz, now()))
        ORDER BY j.run_at, j.id
        LIMIT l.budget
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE l.priority IS NOT NULL
    UNION ALL
    SELECT due.id, k.queue, due.priority, due.run_at,
           k.busy + row_number() OVER (PARTITION BY k.queue, k.key
                                       ORDER BY due.priority DESC, due.run_at, due.id)
    FROM chosen_keys AS k
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM jobs AS j
        WHERE j.status = 'pending'
          AND j.queue = k.queue
          AND j.concurrency_key = k.key
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (j.lease_expires_at IS NULL
               OR j.lease_expires_at < coalesce(%(now)s::timestamptz, now()))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT greatest(0, least(k.budget, coalesce(k.per_key - k.busy, k.budget)))
        FOR UPDATE SKIP LOCKED
    ) AS due
    UNION ALL
    SELECT due.id, o.queue, due.priority, due.run_at,
           (SELECT count(*) FROM jobs AS r
            WHERE r.queue = o.queue AND r.concurrency_key IS NULL AND r.status = 'processing')
           - (SELECT count(*) FROM left_processing AS f
              WHERE f.queue = o.queue AND f.concurrency_key IS NULL)
           + row_number() OVER (PARTITION BY o.queue
                                ORDER BY due.priority DESC, due.run_at, due.id)
    FROM open AS o
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM jobs AS j
        WHERE j.status = 'pending'
          AND j.queue = o.queue
          AND j.concurrency_key IS NULL
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (j.lease_expires_at IS NULL
               OR j.lease_expires_at < coalesce(%(now)s::timestamptz, now()))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT o.budget
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE o.budget > 0 AND (o.per_key IS NOT NULL OR o.fair)
),
shuffled AS (
    SELECT c.id, c.queue, c.priority, c.run_at,
           CASE WHEN o.fair THEN c.turn ELSE 1 END AS turn,
           CASE WHEN o.fair
                THEN coalesce((SELECT s.started_at FROM key_starts AS s
                               WHERE s.queue = c.queue
                                 AND s.key = (SELECT coalesce(j.concurrency_key, '')
                                              FROM jobs AS j WHERE j.id = c.id)),
                              '-infinity')
                ELSE '-infinity' END AS draw,
           o.budget
    FROM candidates AS c
    JOIN open AS o ON o.queue = c.queue
),
ranked AS (
    SELECT id, priority, run_at, turn, draw, budget,
           row_number() OVER (PARTITION BY queue
                              ORDER BY priority DESC, turn, draw, run_at, id) AS n
    FROM shuffled
)
SELECT id FROM ranked
WHERE n <= budget
ORDER BY priority DESC, turn, draw, run_at, id
LIMIT %(limit)s

-- name: count_starts
-- Fragment (CTEs after `claimed`): record the starts of rate-limited queues' jobs for their
-- sliding window, and forget the starts that have left it; and when each key of a fair
-- queue was last served.
started AS (
    INSERT INTO queue_starts (queue, started_at)
    SELECT c.queue, c.started_at
    FROM claimed AS c
    JOIN queues AS q ON q.name = c.queue
    WHERE q.rate_limit IS NOT NULL
    RETURNING 1
),
served AS (
    INSERT INTO key_starts (queue, key, started_at)
    SELECT DISTINCT ON (c.queue, coalesce(c.concurrency_key, ''))
           c.queue, coalesce(c.concurrency_key, ''), c.started_at
    FROM claimed AS c
    JOIN queues AS q ON q.name = c.queue
    WHERE q.fair
    ORDER BY c.queue, coalesce(c.concurrency_key, '')
    ON CONFLICT (queue, key) DO UPDATE SET started_at = excluded.started_at
    RETURNING 1
),
forgotten AS (
    DELETE FROM queue_starts AS w
    USING queues AS q
    WHERE q.name = w.queue
      AND (q.rate_limit IS NULL
           OR w.started_at <= coalesce(%(now)s::timestamptz, now()) - q.rate_period)
    RETURNING 1
)

-- name: claim_restricted
-- As claim, within every queue's settings (see next_due_restricted). No run ends here.
WITH left_processing (queue, concurrency_key) AS (SELECT NULL::text, NULL::text WHERE false),
next AS MATERIALIZED ({{next_due_restricted}}),
claimed AS ({{take_next}}),
{{count_starts}}
SELECT * FROM claimed

-- name: finish_and_claim_restricted
-- As finish_and_claim, within every queue's settings. The runs this statement ends still
-- count as processing in its snapshot: left_processing takes them off the budgets, or a
-- finished job's slot would wait for a later claim (a wake-up or the poll).
WITH {{outcomes}},
left_processing AS (
    -- (queue and key as the statement's snapshot has them: a finish does not change them)
    SELECT r.queue, r.concurrency_key
    FROM finished AS f JOIN jobs AS r ON r.id = f.id
    WHERE f.applies
),
next AS MATERIALIZED ({{next_due_restricted}}),
claimed AS ({{take_next}}),
{{count_starts}}
{{claimed_and_finished}}

-- name: queue_rules
-- The queues whose settings change how claims go (the store reads them about once a second).
SELECT name,
       concurrency IS NOT NULL OR rate_limit IS NOT NULL OR key_concurrency IS NOT NULL
           AS limited
FROM queues
WHERE paused OR paused_until IS NOT NULL OR fair
   OR concurrency IS NOT NULL OR rate_limit IS NOT NULL OR key_concurrency IS NOT NULL

-- name: held_refs
-- Fragment: the ids and statuses of the jobs whose lease these claims (ids, workers,
-- attempts: parallel arrays) still hold, whatever the status: a run whose job an operator
-- cancelled keeps its lease until its code has stopped. Locked in id order: heartbeat,
-- finish_many and release of one worker run concurrently over the same rows, and a common
-- lock order keeps them from deadlocking. No status literal: with status = 'processing' the
-- planner may walk the partial index jobs_processing (every processing job) instead of looking
-- each id up, and a generic plan keeps that choice (slow with thousands of jobs
-- processing: docs/performance.md, second round).
SELECT jobs.id, jobs.status
FROM jobs
JOIN unnest(%(ids)s::bigint[], %(workers)s::text[], %(attempts)s::integer[])
     AS ref (id, worker, attempt)
  ON jobs.id = ref.id
WHERE jobs.worker = ref.worker
  AND jobs.attempts = ref.attempt
  AND jobs.lease_expires_at IS NOT NULL
ORDER BY jobs.id
FOR UPDATE OF jobs

-- name: heartbeat
-- Extend the leases still held by these claims; returns the ids extended with their status
-- (not processing: an operator cancelled the job, and the run should stop). A row changed
-- meanwhile is re-checked against the fence after the lock (READ COMMITTED), so a lost
-- lease is never extended.
WITH held AS MATERIALIZED ({{held_refs}})
UPDATE jobs
SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s::interval
FROM held
WHERE jobs.id = held.id
RETURNING jobs.id, jobs.status

-- name: report_progress
-- What running tasks reported with ctx.progress(), written with their lease renewal: one
-- row per job, fenced as heartbeat, and only while the job is processing.
UPDATE jobs
SET progress         = report.progress,
    progress_message = report.message
FROM unnest(%(ids)s::bigint[], %(workers)s::text[], %(attempts)s::integer[],
            %(progress)s::double precision[], %(messages)s::text[])
     AS report (id, worker, attempt, progress, message)
WHERE jobs.id = report.id
  AND jobs.status = (SELECT 'processing'::text)  -- not the literal: see held_refs
  AND jobs.worker = report.worker
  AND jobs.attempts = report.attempt

-- name: outcomes
-- Fragment (CTEs): write a batch of ended runs. Each outcome applies only while its claim
-- (worker + attempt) still holds the job and the job is processing, by its kind: done →
-- done with result; retry → pending at retry_at with last_error; failed → failed with
-- last_error; snoozed → pending at retry_at, the attempt given back. A run whose job is no
-- longer processing (an operator cancelled it, perhaps retried it since) but that still
-- holds the lease only ends its lease, so a retried job may start: its outcome is dropped;
-- so does kind `ended` (a cancelled run stopped without an outcome). Same id-ordered locking
-- as heartbeat. The batch arrives as one JSON array of [id, worker, attempt, result JSON
-- text, error, retry_at, kind] rows (one parameter encoded in C, where the arrays were
-- dumped element by element in Python); `finished` holds every row written, `applies`
-- telling whether it took the outcome.
outcome AS (
    SELECT (o ->> 0)::bigint      AS id,
           o ->> 1                AS worker,
           (o ->> 2)::integer     AS attempt,
           o ->> 3                AS result,
           o ->> 4                AS error,
           (o ->> 5)::timestamptz AS retry_at,
           o ->> 6                AS kind
    FROM json_array_elements(%(outcomes)s::json) AS batch (o)
),
-- Each outcome's row is looked up by primary key and locked, in the order of the batch,
-- which the store sorts by id: the same id order as heartbeat and release, so they cannot
-- deadlock. (A join would let the planner, which guesses 100 rows for any JSON batch, scan
-- every processing job instead.) FOR UPDATE re-checks the fence on the locked row version.
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
          -- a run that ended without an outcome never touches a processing job
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
                                ELSE coalesce(%(now)s::timestamptz, now()) END,
        updated_at       = CASE WHEN o.applies THEN coalesce(%(now)s::timestamptz, now())
                                ELSE jobs.updated_at END,
        lease_expires_at = NULL
    FROM held AS o
    WHERE jobs.id = o.id
      -- the same ids again, as an array whose length the planner knows: without it, a
      -- table whose statistics lag behind (new, or just filled) is joined by a full scan
      AND jobs.id = ANY (%(ids)s::bigint[])
    RETURNING jobs.id, jobs.status, o.applies,
              -- wake the workers: a retried job waited for this run to stop, or a slot
              -- is free in a limited queue this statement cannot claim from (`wake`)
              CASE WHEN (NOT o.applies AND jobs.status = 'pending')
                        OR jobs.queue = ANY (%(wake)s::text[])
                   THEN pg_notify('conveyor_jobs', jobs.queue) END AS woke
)

-- name: told_finished
-- Fragment: a scalar subquery that tells the processes waiting for results (app.wait,
-- GET /jobs/{id}?wait=) which jobs of `finished` ended: one NOTIFY conveyor_finished per
-- 400 ids (the payload's limit is 8000 bytes), not one per job, and none while no session
-- listens (finish_listeners: a NOTIFY serialises the commits of concurrent finishers).
-- Evaluated once per statement, when the statement returns a row.
(SELECT count(pg_notify('conveyor_finished', ids))
 FROM (SELECT string_agg(id::text, ',') AS ids
       FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk
             FROM finished
             WHERE applies AND status IN ('done', 'failed')
               AND EXISTS (SELECT 1 FROM finish_listeners)) AS ended
       GROUP BY chunk) AS notices)

-- name: finish_many
-- Write a batch of ended runs; returns the new status of each job whose outcome applied.
WITH {{outcomes}}
SELECT id, status, applies, {{told_finished}} AS told FROM finished

-- name: claimed_and_finished
-- Fragment: the result of finish_and_claim. One row per claimed job (or a single row of NULL
-- job columns when none was due); every row carries the written outcomes as JSON text
-- [[id, status], ...].
SELECT (SELECT coalesce(json_agg(json_build_array(id, status)) FILTER (WHERE applies), '[]')
        FROM finished)::text
           AS finished,
       {{told_finished}} AS told,
       claimed.*
FROM (VALUES (1)) AS one
LEFT JOIN claimed ON true

-- name: finish_and_claim
-- Write a batch of outcomes and claim the next jobs in one statement: one round trip and one
-- commit per batch for a busy worker. Both parts see one snapshot and touch disjoint rows
-- (processing ones, pending ones), so a job retried here is claimed by the next call.
WITH {{outcomes}},
next AS MATERIALIZED ({{next_due}}),
claimed AS ({{take_next}})
{{claimed_and_finished}}

-- name: finish_and_claim_from_queues
-- As finish_and_claim, claiming only from the queues in the text array queues.
WITH {{outcomes}},
next AS MATERIALIZED ({{next_due_from_queues}}),
claimed AS ({{take_next}})
{{claimed_and_finished}}

-- name: release
-- processing → pending now, giving the attempt back (graceful shutdown); fenced and locked as
-- heartbeat. The lease ends at not_before: NULL when the run has stopped, or the moment by
-- which it certainly has (its process exited), which is also the job's run_at; no claim
-- takes the job before then. A held
-- job that is no longer processing (cancelled) only has its lease end so. Returns the ids
-- released, and wakes listeners: another process can run the handed-back jobs.
WITH held AS MATERIALIZED ({{held_refs}}),
released AS (
    UPDATE jobs
    SET status           = CASE WHEN held.status = 'processing' THEN 'pending'
                                ELSE jobs.status END,
        attempts         = CASE WHEN held.status = 'processing' THEN jobs.attempts - 1
                                ELSE jobs.attempts END,
        run_at           = CASE WHEN held.status = 'processing'
                                THEN coalesce(%(not_before)s::timestamptz, %(now)s::timestamptz,
                                              now())
                                ELSE jobs.run_at END,
        updated_at       = CASE WHEN held.status = 'processing'
                                THEN coalesce(%(now)s::timestamptz, now())
                                ELSE jobs.updated_at END,
        lease_expires_at = %(not_before)s::timestamptz
    FROM held
    WHERE jobs.id = held.id
    RETURNING jobs.id, jobs.queue, jobs.status, held.status = 'processing' AS was_processing
)
SELECT id, was_processing,
       CASE WHEN status = 'pending' THEN pg_notify('conveyor_jobs', queue) END AS woke
FROM released

-- name: recover_expired
-- Jobs whose lease ran out (their worker died or stalled): back to pending while attempts
-- remain, otherwise failed for good. The old worker's fence no longer matches either way.
-- SKIP LOCKED: a row locked right now is being heartbeated or finished by its worker (so it
-- is alive), or recovered by another process's reaper; either way it is not ours to take.
-- Requeued jobs wake listeners.
WITH expired AS MATERIALIZED (
    SELECT id
    FROM jobs
    WHERE status = 'processing'
      AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
-- listeners of sessions that are gone (their process was killed) stop costing NOTIFYs
gone AS (
    DELETE FROM finish_listeners
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = finish_listeners.pid)
),
-- registry rows of workers gone without unregistering (killed) past their listing deadline
forgotten AS (
    DELETE FROM workers
    WHERE expires_at < coalesce(%(now)s::timestamptz, now())
),
recovered AS (
    UPDATE jobs
    SET status           = CASE WHEN jobs.attempts < jobs.max_attempts
                                THEN 'pending' ELSE 'failed' END,
        run_at           = coalesce(%(now)s::timestamptz, now()),
        last_error       = 'recovered: lease of worker ' || coalesce(jobs.worker, '?')
                           || ' expired during attempt ' || jobs.attempts
                           || ' of ' || jobs.max_attempts
                           || ' (the worker died or stalled)',
        finished_at      = CASE WHEN jobs.attempts < jobs.max_attempts
                                THEN NULL ELSE coalesce(%(now)s::timestamptz, now()) END,
        updated_at       = coalesce(%(now)s::timestamptz, now()),
        lease_expires_at = NULL
    FROM expired
    WHERE jobs.id = expired.id
    RETURNING jobs.id, jobs.status, jobs.queue
)
SELECT id,
       status,
       CASE WHEN status = 'pending' THEN pg_notify('conveyor_jobs', queue)
            ELSE pg_notify('conveyor_finished', id::text) END AS woke
FROM recovered

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s

-- name: list_jobs
-- Newest first; each filter applies only when given; keyset pagination by before_id.
SELECT * FROM jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s

-- name: cancel_many
-- pending|processing → cancelled, for each id of %(ids)s (one id for `cancel`), only those
-- still in %(status)s when it is given (a bulk action's filter); returns the ids cancelled.
-- The rows are locked in id order first, as heartbeat, release and outcomes lock theirs, so
-- a batch and a worker's writes over the same rows wait for each other instead of
-- deadlocking; a row that changed meanwhile is judged as it is once locked. A running job
-- keeps its lease (worker, attempts and deadline): its worker renews it until the run's
-- code has stopped, and until then no retry of the job can be claimed. A run that holds the
-- job is told at once: NOTIFY conveyor_cancel with the id, which the worker running it
-- turns into an immediate lease renewal that reports the cancel. Processes waiting for
-- results are told once per statement: NOTIFY conveyor_finished with the ids cancelled,
-- comma-separated (the store sends at most 500 ids, under NOTIFY's 8000-byte payload limit).
-- Each row is looked up by primary key, in the order of %(ids)s (the store sorts them):
-- as `WHERE id = ANY (ids) AND status = …` the planner, misled by stale statistics (a
-- bulk insert not yet analysed), walked every pending job of jobs_pending per batch.
WITH locked AS MATERIALIZED (
    SELECT job.id
    FROM unnest(%(ids)s::bigint[]) AS wanted (id)
    CROSS JOIN LATERAL (
        SELECT jobs.id
        FROM jobs
        WHERE jobs.id = wanted.id
          AND jobs.status IN ('pending', 'processing')
          AND (%(status)s::text IS NULL OR jobs.status = %(status)s::text)
        FOR UPDATE
    ) AS job
),
cancelled AS (
    UPDATE jobs
    SET status      = 'cancelled',
        -- a job waiting for dependencies waits no more (its held run_at comes back)
        run_at      = coalesce(jobs.held_run_at, jobs.run_at),
        held_run_at = NULL,
        waiting_for = 0,
        finished_at = coalesce(%(now)s::timestamptz, now()),
        updated_at  = coalesce(%(now)s::timestamptz, now())
    -- an id array, not a join: a join may hash the whole table (see the claim's update)
    WHERE jobs.id = ANY (ARRAY(SELECT id FROM locked))
    RETURNING jobs.id, jobs.lease_expires_at
)
SELECT id,
       CASE WHEN lease_expires_at IS NOT NULL
            THEN pg_notify('conveyor_cancel', id::text) END AS woke,
       (SELECT pg_notify('conveyor_finished', string_agg(id::text, ',' ORDER BY id))
        FROM cancelled
        HAVING count(*) > 0) AS told
FROM cancelled

-- name: retry_many
-- failed|cancelled → pending, runnable now, for each id of %(ids)s (one id for `retry`),
-- only those still in %(status)s when it is given; returns the ids retried and wakes
-- listeners. Rows locked one by one in id order first, as cancel_many. attempts is kept, and
-- max_attempts is raised when needed so at least one more attempt runs. A lease left by a
-- cancelled run stays: the claim waits until that run has stopped or its lease has expired.
-- A job whose unique_key an unfinished job holds is left as it is, and of several ids with
-- one key only the smallest is retried (the others would then break the unique index). An
-- enqueue of the key that commits while this runs still raises a unique violation (the
-- store runs the batch again, which then sees that job).
WITH locked AS MATERIALIZED (
    SELECT job.id, job.unique_key
    FROM unnest(%(ids)s::bigint[]) AS wanted (id)
    CROSS JOIN LATERAL (
        SELECT jobs.id, jobs.unique_key
        FROM jobs
        WHERE jobs.id = wanted.id
          AND jobs.status IN ('failed', 'cancelled')
          AND (%(status)s::text IS NULL OR jobs.status = %(status)s::text)
        FOR UPDATE
    ) AS job
),
retryable AS (
    SELECT id FROM locked WHERE unique_key IS NULL
    UNION ALL
    (SELECT DISTINCT ON (unique_key) id
     FROM locked
     WHERE unique_key IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM jobs AS holder
                       WHERE holder.unique_key = locked.unique_key
                         AND holder.status IN ('pending', 'processing'))
     ORDER BY unique_key, id)
),
retried AS (
    UPDATE jobs
    SET status       = 'pending',
        run_at       = coalesce(%(now)s::timestamptz, now()),
        max_attempts = greatest(max_attempts, attempts + 1),
        finished_at  = NULL,
        updated_at   = coalesce(%(now)s::timestamptz, now())
    WHERE jobs.id = ANY (ARRAY(SELECT id FROM retryable))  -- as in cancel_many
    RETURNING jobs.id, jobs.queue
)
SELECT id, pg_notify('conveyor_jobs', queue) AS woke
FROM retried

-- name: job_starts
-- Every start of a job kept (the job page's timeline): the earlier ones and the last.
SELECT earlier_starts, started_at FROM jobs WHERE id = %(id)s

-- name: bulk_filter
-- A fragment: the filter of a bulk action (SPEC §8), each clause only when given. The
-- store sends these statements unprepared, so every call is planned with its values:
-- the clauses of absent filters fold away, and status = a constant lets the planner use
-- that status's partial index.
(%(queue)s::text IS NULL OR queue = %(queue)s::text)
AND (%(type)s::text IS NULL OR type = %(type)s::text)
AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)

-- name: bulk_bounds
-- The lowest and highest id of the jobs a bulk action matches, read once through the
-- partial index of the status (jobs_pending, jobs_processing, jobs_retryable). `id + 0`:
-- min and max of id itself would walk the primary key from the table's first (or last)
-- row until a match, over every older (newer) job of other statuses.
SELECT min(id + 0) AS low, max(id + 0) AS high
FROM jobs
WHERE status = %(status)s::text
  AND {{bulk_filter}}

-- name: bulk_ids
-- The next batch of a bulk action: up to %(limit)s ids after %(after)s (keyset), up to
-- %(upto)s, so each batch reads from where the previous one stopped. Failed and cancelled
-- jobs come from jobs_retryable (status, id), however many of other queues or types lie
-- in between; pending and processing ones from the primary key between the bounds above
-- (they are mostly the newest rows).
SELECT id
FROM jobs
WHERE status = %(status)s::text
  AND id > %(after)s
  AND id <= %(upto)s
  AND {{bulk_filter}}
ORDER BY id
LIMIT %(limit)s

-- name: prune
-- Delete one batch of finished jobs of one status older than now - older_than, oldest first
-- (batches keep transactions short). SKIP LOCKED: a row locked now is being retried, and is
-- not ours to delete. The status IN (...) repeats the condition of the partial index
-- jobs_finished (status, finished_at), so that a generic plan, made without the parameter's
-- value, can still use it. The rows are deleted by an id array, one primary-key lookup each:
-- joined to the CTE, a plan may merge-join it with a walk of the whole primary key.
WITH doomed AS MATERIALIZED (
    SELECT id
    FROM jobs
    WHERE status IN ('done', 'failed', 'cancelled')
      AND status = %(status)s
      AND finished_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval
    ORDER BY finished_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs
WHERE id = ANY (ARRAY(SELECT id FROM doomed))

-- name: try_lead
-- Take or renew the leadership of a role for a holder until ttl from now (the database's
-- clock): a new row when nobody ever led it, else an update only while the holder leads it
-- already or its leader's time has run out. A row back means the holder leads. Two
-- processes asking at once: ON CONFLICT locks the row, and the second one's condition is
-- checked against the first one's committed row.
INSERT INTO leaders AS l (role, holder, until)
VALUES (%(role)s, %(holder)s, coalesce(%(now)s::timestamptz, now()) + %(ttl)s::interval)
ON CONFLICT (role) DO UPDATE
SET holder = excluded.holder,
    until  = excluded.until
WHERE l.holder = excluded.holder
   OR l.until < coalesce(%(now)s::timestamptz, now())
RETURNING l.holder

-- name: resign
-- The holder gives the role up (it stops), so another process takes it at its next try.
DELETE FROM leaders WHERE role = %(role)s AND holder = %(holder)s

-- name: stats
-- Jobs by queue and status: pending and processing ones counted on their partial indexes
-- (few), finished ones summed from job_counts' shards (kept by triggers, migration 0011), so
-- the cost does not grow with the finished jobs the table holds.
SELECT queue, 'pending' AS status, count(*) AS n
FROM jobs
WHERE status = 'pending'
GROUP BY queue
UNION ALL
SELECT queue, 'processing', count(*)
FROM jobs
WHERE status = 'processing'
GROUP BY queue
UNION ALL
SELECT queue, status, sum(n)::bigint
FROM job_counts
GROUP BY queue, status
HAVING sum(n) <> 0

-- name: register_periodic
-- The schedules an app registers when a worker starts: a new row whose ticks count from :now
-- (the database clock when NULL); or, when its schedule or time zone changed, the new ones,
-- counted from :now again (no tick of the old schedule, nor from before the change, is caught
-- up). Unchanged: nothing is written. last_tick stays as it is either way: it only ever moves
-- forward. Rows go in name order, so workers starting together lock them in one order.
INSERT INTO periodic (name, schedule, timezone, since, updated_at)
SELECT r.name, r.schedule, r.timezone, coalesce(%(now)s::timestamptz, now()), now()
FROM unnest(%(names)s::text[], %(schedules)s::text[], %(timezones)s::text[])
     AS r (name, schedule, timezone)
ORDER BY r.name COLLATE "C"
ON CONFLICT (name) DO UPDATE
SET schedule   = EXCLUDED.schedule,
    timezone   = EXCLUDED.timezone,
    since      = EXCLUDED.since,
    updated_at = EXCLUDED.updated_at
WHERE periodic.schedule <> EXCLUDED.schedule
   OR periodic.timezone <> EXCLUDED.timezone

-- name: enqueue_periodic
-- The compare-and-set of one tick and its job, in one statement (one transaction): `won`
-- moves last_tick to :tick only if :tick is later than it and not before `since`; only then
-- does `inserted` insert the tick's job, and wake listeners. Concurrent callers for the same
-- schedule queue on its row's lock; the WHERE is re-checked on the row as the winner left
-- it, so one wins and the others get no row, and no later call can win this tick or an
-- earlier one, not even once the job has finished and freed its unique_key. The job's id is
-- drawn first, so `won` records it in the same row version (a second update of that row
-- in the same statement is not allowed); a refused call wastes one id. A missing row is
-- created (since = :tick). An unfinished job already holding the tick's unique_key (only an
-- explicit enqueue with that key can) leaves `inserted` empty: the store then records the
-- holder (periodic_holder).
WITH job AS MATERIALIZED (
    SELECT nextval((SELECT pg_get_serial_sequence('jobs', 'id'))::regclass) AS id
),
won AS (
    INSERT INTO periodic (name, schedule, timezone, since, last_tick, last_job_id, updated_at)
    SELECT %(name)s, %(schedule)s, %(timezone)s, %(tick)s, %(tick)s, job.id, now()
    FROM job
    ON CONFLICT (name) DO UPDATE
    SET last_tick   = EXCLUDED.last_tick,
        last_job_id = EXCLUDED.last_job_id,
        updated_at  = EXCLUDED.updated_at
    WHERE (periodic.last_tick IS NULL OR periodic.last_tick < EXCLUDED.last_tick)
      AND periodic.since <= EXCLUDED.last_tick
    RETURNING last_job_id
),
inserted AS (
    INSERT INTO jobs (id, type, queue, payload, priority, max_attempts, run_at, unique_key,
                      created_at, updated_at)
    SELECT won.last_job_id, %(type)s, %(queue)s, %(payload)s::jsonb, %(priority)s,
           %(max_attempts)s, %(tick)s, %(unique_key)s, now(), now()
    FROM won
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
    DO NOTHING
    RETURNING id, queue, run_at, created_at
)
SELECT won.last_job_id AS won, inserted.id, inserted.run_at, inserted.created_at,
       CASE WHEN inserted.id IS NOT NULL THEN pg_notify('conveyor_jobs', inserted.queue) END
           AS woke
FROM won
LEFT JOIN inserted ON true

-- name: periodic_holder
-- The tick's unique_key was held by another unfinished job: record that job, unless a later
-- tick has been won meanwhile.
UPDATE periodic
SET last_job_id = %(job_id)s
WHERE name = %(name)s
  AND last_tick = %(tick)s

-- name: list_periodic
-- Every schedule, with the status of its last job (NULL once that job was pruned); in
-- bytewise name order, as on SQLite.
SELECT p.name, p.schedule, p.timezone, p.since, p.last_tick, p.last_job_id, p.updated_at,
       j.status AS last_job_status
FROM periodic AS p
LEFT JOIN jobs AS j ON j.id = p.last_job_id
ORDER BY p.name COLLATE "C"

-- name: list_queues
-- Queue settings (SPEC §7) of every queue that has a row in `queues` (configured, paused,
-- resumed or held) or has pending or processing jobs. The names of the latter come from a
-- skip scan: one probe of jobs_pending_by_queue (or jobs_processing) per distinct queue,
-- each finding the next queue name after the previous one, so the cost grows with the
-- number of queues, not of jobs, and finished jobs are never read.
WITH RECURSIVE pending (queue) AS (
    (SELECT queue FROM jobs WHERE status = 'pending' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT jobs.queue
            FROM jobs
            WHERE jobs.status = 'pending'
              AND jobs.queue > pending.queue
            ORDER BY jobs.queue
            LIMIT 1)
    FROM pending
    WHERE pending.queue IS NOT NULL
),
processing (queue) AS (
    (SELECT queue FROM jobs WHERE status = 'processing' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT jobs.queue
            FROM jobs
            WHERE jobs.status = 'processing'
              AND jobs.queue > processing.queue
            ORDER BY jobs.queue
            LIMIT 1)
    FROM processing
    WHERE processing.queue IS NOT NULL
),
names (name) AS (
    SELECT queue FROM pending WHERE queue IS NOT NULL
    UNION
    SELECT queue FROM processing WHERE queue IS NOT NULL
    UNION
    SELECT name FROM queues
)
SELECT names.name, q.concurrency, q.rate_limit, q.rate_period, q.key_concurrency,
       coalesce(q.fair, false) AS fair, coalesce(q.paused, false) AS paused, q.paused_until
FROM names
LEFT JOIN queues AS q ON q.name = names.name

-- name: configure_queue
-- Upsert a queue's settings and wake listeners (a raised limit may release jobs): only those
-- flagged set_* change (NULL clears a limit); the others keep their value, or their default
-- in a new row. The conflicting row is locked and read as it is then, so concurrent changes
-- of different settings all hold. A rate limit is a count and a period, set together.
WITH changed AS (
    INSERT INTO queues (name, concurrency, rate_limit, rate_period, key_concurrency, fair)
    VALUES (%(name)s, %(concurrency)s::integer, %(rate_limit)s::integer,
            %(rate_period)s::interval, %(key_concurrency)s::integer,
            coalesce(%(fair)s::boolean, false))
    ON CONFLICT (name) DO UPDATE
    SET concurrency     = CASE WHEN %(set_concurrency)s::boolean THEN EXCLUDED.concurrency
                               ELSE queues.concurrency END,
        rate_limit      = CASE WHEN %(set_rate_limit)s::boolean THEN EXCLUDED.rate_limit
                               ELSE queues.rate_limit END,
        rate_period     = CASE WHEN %(set_rate_limit)s::boolean THEN EXCLUDED.rate_period
                               ELSE queues.rate_period END,
        key_concurrency = CASE WHEN %(set_key_concurrency)s::boolean
                               THEN EXCLUDED.key_concurrency
                               ELSE queues.key_concurrency END,
        fair            = CASE WHEN %(set_fair)s::boolean THEN EXCLUDED.fair
                               ELSE queues.fair END,
        updated_at      = now()
    RETURNING *
)
SELECT changed.*, pg_notify('conveyor_jobs', changed.name) AS woke
FROM changed

-- name: pause_queue
-- An operator's pause: no claim takes the queue's jobs until resume_queue. Listeners are
-- woken too, like every change of a queue's settings.
WITH changed AS (
    INSERT INTO queues (name, paused) VALUES (%(name)s, true)
    ON CONFLICT (name) DO UPDATE
    SET paused     = true,
        updated_at = now()
    RETURNING *
)
SELECT changed.*, pg_notify('conveyor_jobs', changed.name) AS woke
FROM changed

-- name: resume_queue
-- Ends an operator's pause and a fleet-wide backoff (paused_until) alike, and wakes
-- listeners: the queue's jobs start within milliseconds.
WITH changed AS (
    INSERT INTO queues (name, paused) VALUES (%(name)s, false)
    ON CONFLICT (name) DO UPDATE
    SET paused       = false,
        paused_until = NULL,
        updated_at   = now()
    RETURNING *
)
SELECT changed.*, pg_notify('conveyor_jobs', changed.name) AS woke
FROM changed

-- name: hold_queue
-- A fleet-wide backoff (Snooze(queue=True)): no claim takes the queue's jobs before until;
-- a later backoff already set is kept (greatest ignores NULL). Nobody to wake.
INSERT INTO queues (name, paused_until) VALUES (%(name)s, %(until)s::timestamptz)
ON CONFLICT (name) DO UPDATE
SET paused_until = greatest(queues.paused_until, EXCLUDED.paused_until),
    updated_at   = now()
RETURNING *

-- name: listen
-- The notifier's subscription; also its keep-alive probe (LISTEN again is a no-op).
LISTEN conveyor_jobs

-- name: listen_cancel
-- Cancels of jobs that a run holds, with the job id (see cancel).
LISTEN conveyor_cancel

-- name: ping
SELECT 1

-- name: finished_among
-- Conveyor.wait (conveyor/waiting.py): of the ids, the jobs that have finished, and a row of
-- NULLs but `wanted` for an id that names no job (pruned meanwhile); one primary-key probe
-- per id. Unfinished jobs, most of the ids most of the time, are left out, so a check that
-- finds nothing reads no payload.
SELECT wanted.id AS wanted, jobs.*
FROM unnest(%(ids)s::bigint[]) AS wanted (id)
LEFT JOIN jobs ON jobs.id = wanted.id
WHERE jobs.id IS NULL OR jobs.status IN ('done', 'failed', 'cancelled')

-- name: listen_finished
-- The waiters' listener (finish_listener.py): every statement that finishes jobs notifies
-- their ids on this channel, comma-separated, while finish_listeners has a row.
LISTEN conveyor_finished

-- name: add_finish_listener
-- After LISTEN: from now on finishing statements notify. Rows of sessions that are gone go.
WITH gone AS (
    DELETE FROM finish_listeners
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = finish_listeners.pid)
)
INSERT INTO finish_listeners (pid) VALUES (pg_backend_pid())
ON CONFLICT (pid) DO NOTHING

-- name: remove_finish_listener
DELETE FROM finish_listeners WHERE pid = pg_backend_pid()

-- name: register_worker
-- A worker's registry row (migration 0010): inserted at its start, renewed by each heartbeat
-- (busy, last_heartbeat, the listing deadline); started_at stays the first one's.
INSERT INTO workers (id, host, pid, queues, slots, busy, version, started_at, last_heartbeat,
                     expires_at)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::text[], %(slots)s, %(busy)s, %(version)s,
        %(started_at)s::timestamptz, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()) + %(live)s::interval)
ON CONFLICT (id) DO UPDATE
SET busy           = excluded.busy,
    last_heartbeat = excluded.last_heartbeat,
    expires_at     = excluded.expires_at

-- name: unregister_worker
DELETE FROM workers WHERE id = %(id)s

-- name: list_workers
SELECT * FROM workers
WHERE expires_at >= coalesce(%(now)s::timestamptz, now())
ORDER BY id

-- name: minute_stats
-- The per-minute aggregates from the minute of since on, all queues and shards together.
SELECT minute, wait_bucket, run_bucket,
       sum(finished)::bigint AS finished, sum(failed)::bigint AS failed,
       sum(retried)::bigint AS retried
FROM job_minutes
WHERE minute >= date_trunc('minute', %(since)s::timestamptz)
GROUP BY minute, wait_bucket, run_bucket

-- name: oldest_pending
-- The run_at of each queue's oldest due pending job, from the pending index (pending jobs
-- only). Jobs waiting for dependencies have a run_at far ahead, past now.
SELECT queue, min(run_at) AS run_at
FROM jobs
WHERE status = 'pending'
  AND run_at <= coalesce(%(now)s::timestamptz, now())
GROUP BY queue

-- name: prune_minutes
DELETE FROM job_minutes
WHERE minute < coalesce(%(now)s::timestamptz, now()) - %(keep)s::interval

-- name: fold_counts
-- The job_counts shards of sessions that are gone are added into shard 0 (which only this
-- statement writes), in key order, so that the table stays as small as the live sessions
-- make it. A pid taken again by a new session meanwhile is harmless: its row is moved whole.
WITH gone AS (
    DELETE FROM job_counts
    WHERE shard <> 0
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = job_counts.shard)
    RETURNING queue, status, n
)
INSERT INTO job_counts AS c (queue, status, shard, n)
SELECT queue, status, 0, sum(n)
FROM gone
GROUP BY queue, status
ORDER BY queue, status
ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n

-- name: call_claim
-- Through a transaction-mode pooler, the hot statements are calls of their functions
-- (migration 0016_runtime_functions): each server session keeps the plan of the statement
-- inside, where a statement sent as it is would be planned on every call.
SELECT * FROM conveyor_claim(%(worker)s::text, %(now)s::timestamptz, %(lease)s::interval,
                             %(limit)s::bigint)

-- name: call_finish_and_claim
SELECT f.finished, f.told, (f.job).*
FROM conveyor_finish_and_claim(%(outcomes)s::json, %(ids)s::bigint[], %(wake)s::text[],
                               %(worker)s::text, %(now)s::timestamptz, %(lease)s::interval,
                               %(limit)s::bigint) AS f

-- name: call_finish_many
SELECT id, status, applies, told
FROM conveyor_finish_many(%(outcomes)s::json, %(ids)s::bigint[], %(wake)s::text[],
                          %(now)s::timestamptz)

-- name: call_heartbeat
SELECT id, status
FROM conveyor_heartbeat(%(ids)s::bigint[], %(workers)s::text[], %(attempts)s::integer[],
                        %(now)s::timestamptz, %(lease)s::interval)

-- name: call_enqueue
SELECT id, run_at, created_at
FROM conveyor_enqueue(%(type)s::text, %(queue)s::text, %(payload)s::jsonb,
                      %(priority)s::smallint, %(max_attempts)s::integer,
                      %(run_at)s::timestamptz, %(unique_key)s::text,
                      %(concurrency_key)s::text, %(trace_context)s::text)
