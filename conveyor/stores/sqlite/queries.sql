-- Every statement the SQLite store runs. Parameters are bound by name (:name).
-- Times are INTEGER microseconds since the epoch (see migrations/0001_initial.sql), except
-- lease deadlines: lease_expires_at, :lease_now and :lease_until are on the host's
-- boot-time clock (see clock.py), so a process whose wall clock is off, or a step of the
-- machine's clock, never expires a live lease.

-- name: schema_version
-- The highest applied migration, from the table the migration runner keeps.
SELECT coalesce(max(version), 0) FROM schema_version

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
)

-- name: record_migration
INSERT INTO schema_version (version, name, applied_at) VALUES (:version, :name, :now)

-- name: enqueue
-- Insert one pending job; returns no row when an unfinished job holds its unique_key.
INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at, unique_key,
                  concurrency_key, trace_context, created_at, updated_at)
VALUES (:type, :queue, :payload, :priority, :max_attempts, :run_at, :unique_key,
        :concurrency_key, :trace_context, :now, :now)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
DO NOTHING
RETURNING id

-- name: read_dependencies
-- The dependencies of a job being enqueued (SPEC §8), in the enqueue's write transaction:
-- none can finish before the job and its edges are written.
SELECT id, status, depth FROM jobs WHERE id IN (SELECT value FROM json_each(:ids))

-- name: enqueue_dependent
-- Insert a job with dependencies as dependencies.plan decided: pending, held until
-- :waiting_for dependencies have finished (run_at held past every claim, the asked-for
-- run_at in held_run_at); or already cancelled by a dependency that ended badly.
INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at, unique_key,
                  concurrency_key, depends_on, on_dependency_failure, waiting_for, held_run_at,
                  depth, status, last_error, finished_at, trace_context, created_at, updated_at)
VALUES (:type, :queue, :payload, :priority, :max_attempts, :run_at, :unique_key,
        :concurrency_key, :depends_on, :on_dependency_failure, :waiting_for, :held_run_at,
        :depth, :status, :last_error, :finished_at, :trace_context, :now, :now)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
DO NOTHING
RETURNING id

-- name: add_dependencies
-- The new job :job_id waits for each unfinished dependency in :ids; finishing one of them
-- now has work to do (the jobs_settle_dependents trigger).
INSERT INTO job_dependencies (depends_on, job_id)
SELECT value, :job_id FROM json_each(:ids)

-- name: name_dependencies
-- Every dependency of the new job :job_id in :ids, finished or not: the dependents listing
-- (job_dependents).
INSERT OR IGNORE INTO job_dependents (depends_on, job_id)
SELECT value, :job_id FROM json_each(:ids)

-- name: mark_dependents
UPDATE jobs SET has_dependents = 1
WHERE id IN (SELECT value FROM json_each(:ids))
  AND NOT has_dependents

-- name: retry_blocked
-- Of the jobs :ids about to be retried, those whose dependency is still failed or cancelled
-- while they give up on such a dependency ("cancel"): retrying one would only cancel it
-- again (SPEC §8: retry the dependency first), so it is refused; with the dependency named.
-- Driven from the ids (CROSS JOIN keeps SQLite's join order): one primary-key lookup per
-- id and per dependency, nothing for the jobs without dependencies.
SELECT job.id, min(dep.id) AS dependency, dep.status
FROM json_each(:ids) AS wanted
CROSS JOIN jobs AS job ON job.id = wanted.value
CROSS JOIN json_each(job.depends_on) AS ref
CROSS JOIN jobs AS dep ON dep.id = ref.value
WHERE job.depends_on IS NOT NULL
  AND job.on_dependency_failure = 'cancel'
  AND dep.status IN ('failed', 'cancelled')
GROUP BY job.id

-- name: wait_again_edges
-- Retried jobs :ids wait again for their dependencies that are unfinished now (a retried
-- dependency, say): their edges (kept if still there) and the dependencies' flag. Driven
-- from the ids, as retry_blocked.
INSERT OR IGNORE INTO job_dependencies (depends_on, job_id)
SELECT dep.id, job.id
FROM json_each(:ids) AS wanted
CROSS JOIN jobs AS job ON job.id = wanted.value
CROSS JOIN json_each(job.depends_on) AS ref
CROSS JOIN jobs AS dep ON dep.id = ref.value
WHERE job.depends_on IS NOT NULL
  AND dep.status IN ('pending', 'processing')

-- name: wait_again_mark
UPDATE jobs SET has_dependents = 1
WHERE id IN (SELECT ref.value
             FROM json_each(:ids) AS wanted
             CROSS JOIN jobs AS job ON job.id = wanted.value
             CROSS JOIN json_each(job.depends_on) AS ref
             WHERE job.depends_on IS NOT NULL)
  AND status IN ('pending', 'processing')
  AND NOT has_dependents

-- name: wait_again
-- ... and are held until those have finished, as at their enqueue.
UPDATE jobs
SET waiting_for = unfinished.n,
    held_run_at = run_at,
    run_at      = :held
FROM (SELECT job.id, count(*) AS n
      FROM json_each(:ids) AS wanted
      CROSS JOIN jobs AS job ON job.id = wanted.value
      CROSS JOIN json_each(job.depends_on) AS ref
      CROSS JOIN jobs AS dep ON dep.id = ref.value
      WHERE job.depends_on IS NOT NULL
        AND dep.status IN ('pending', 'processing')
      GROUP BY job.id) AS unfinished
WHERE jobs.id = unfinished.id

-- name: dependency_jobs
-- A job's dependencies (ctx.dependencies()), in id order, read from its depends_on.
SELECT dep.*
FROM jobs AS job
CROSS JOIN json_each(job.depends_on) AS ref
CROSS JOIN jobs AS dep ON dep.id = ref.value
WHERE job.id = :id
ORDER BY dep.id

-- name: dependents
-- The jobs that named :id as a dependency, in id order (the job page's links): a range of
-- job_dependents' primary key, then each job by its own.
SELECT job.*
FROM job_dependents AS d
CROSS JOIN jobs AS job ON job.id = d.job_id
WHERE d.depends_on = :id
ORDER BY d.job_id
LIMIT :limit

-- name: get_unfinished_by_unique_key
SELECT * FROM jobs
WHERE unique_key = :unique_key
  AND status IN ('pending', 'processing')

-- name: queue_rules
-- Whether any queue has settings that change how claims go (read about once a second):
-- until one has, claims take claim_plain.
SELECT 1 FROM queues
WHERE paused OR paused_until IS NOT NULL OR fair
   OR concurrency IS NOT NULL OR rate_limit IS NOT NULL OR key_concurrency IS NOT NULL
LIMIT 1

-- name: claim_plain
-- The claim while no queue has settings (the store reads queue_rules about once a second):
-- claim below without its budgets, keys and turns, which cost a busy worker a fifth of its
-- rate (docs/performance.md, "Flow control"). A queue given settings since is passed over
-- (one primary-key probe per queue) until the store takes the full claim.
-- The walk goes one (queue, priority) level at a time, as in claim: `levels` finds each
-- queue's pending priorities with one jobs_pending probe per level, and each level is one
-- range of jobs_pending whose due jobs (run_at <= :now) come before its future ones, read up
-- to :limit rows; the cost is (levels + queues x limit) whatever the backlog. A pending job
-- that still has a live lease is not taken: it was retried after a cancel while the
-- cancelled run may still be going (never two runs at once).
WITH RECURSIVE levels (queue, priority) AS (
    SELECT q.name,
           (SELECT max(c.priority) FROM jobs AS c INDEXED BY jobs_pending
            WHERE c.queue = q.name AND c.status = 'pending')
    FROM queues AS q
    WHERE (:queues IS NULL OR q.name IN (SELECT value FROM json_each(:queues)))
      AND q.paused = 0 AND q.paused_until IS NULL AND q.fair = 0
      AND q.concurrency IS NULL AND q.rate_limit IS NULL AND q.key_concurrency IS NULL
    UNION ALL
    SELECT l.queue,
           (SELECT max(c.priority) FROM jobs AS c INDEXED BY jobs_pending
            WHERE c.queue = l.queue AND c.status = 'pending' AND c.priority < l.priority)
    FROM levels AS l
    WHERE l.priority IS NOT NULL
)
UPDATE jobs
SET status           = 'processing',
    attempts         = attempts + 1,
    worker           = :worker,
    started_at       = :now,
    earlier_starts   = {{earlier_starts}},
    updated_at       = :now,
    lease_expires_at = :lease_until,
    progress         = NULL,
    progress_message = NULL
WHERE id IN (
    SELECT j.id
    FROM levels AS l
    JOIN jobs AS j ON j.id IN (
        SELECT c.id FROM jobs AS c INDEXED BY jobs_pending
        WHERE c.queue = l.queue
          AND c.status = 'pending'
          AND c.priority = l.priority
          AND c.run_at <= :now
          AND (c.lease_expires_at IS NULL OR c.lease_expires_at < :lease_now)
        ORDER BY c.run_at, c.id
        LIMIT :limit
    )
    WHERE l.priority IS NOT NULL
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT :limit
)
RETURNING *

-- name: claim
-- Move up to :limit due pending jobs to processing under a fresh lease, highest priority
-- first, then oldest run_at, then id; from every queue, or only those in the JSON array
-- :queues; within each queue's settings (SPEC §7). One statement: SQLite has one writer at
-- a time, so no two workers can take the same row, and the counts each limit is checked
-- against cannot change under it.
-- `open` lists the queues that may start jobs now (not paused nor held by a fleet-wide
-- backoff) and how many each may still start: the least of :limit, its free concurrency
-- (processing jobs counted on jobs_processing) and its rate budget (starts in the sliding
-- window, kept in queue_starts by record_starts below). A queue without settings
-- counts nothing.
-- Plain queues walk one (queue, priority) level at a time: `levels` finds each queue's
-- pending priorities with one jobs_pending probe per level, and each level is one range of
-- jobs_pending whose due jobs (run_at <= :now) come before its future ones, read up to
-- :limit rows. A single walk in (priority DESC, run_at, id) order would step over every
-- future job of a higher priority (a scheduled batch, a burst of urgent retries in
-- backoff) on each claim; this way the cost is (levels + queues x limit) whatever the
-- backlog, scheduled or due.
-- Keyed queues (key_concurrency or fair) walk one concurrency_key at a time (`keys` skips
-- from key to key on jobs_pending_by_key), and read up to :limit jobs in priority order of
-- only the :limit keys that would come first (by their first due job; in a fair queue the
-- least busy, least recently served ones), plus the jobs without a key. Each job's `turn` is its key's processing jobs plus
-- its place among the key's candidates: a key may start no more than key_concurrency minus
-- its processing jobs, and a fair queue starts the least busy key's next job first
-- (priority still first), between equally busy keys the one least recently served
-- (key_starts, kept by serve_keys below), so claims rotate across keys even
-- one job at a time.
-- Paused and held queues are not read at all, so they never slow the others. A pending job
-- that still has a live lease is not taken: it was retried after a cancel while the
-- cancelled run may still be going (never two runs at once).
WITH RECURSIVE open (queue, budget, per_key, fair) AS (
    SELECT q.name,
           min(:limit,
               CASE WHEN q.concurrency IS NULL THEN :limit
                    ELSE q.concurrency - (SELECT count(*) FROM jobs AS r INDEXED BY jobs_processing
                                          WHERE r.queue = q.name AND r.status = 'processing')
               END,
               CASE WHEN q.rate_limit IS NULL THEN :limit
                    ELSE q.rate_limit - (SELECT count(*) FROM queue_starts AS w
                                         WHERE w.queue = q.name
                                           AND w.started_at > :now - q.rate_period)
               END),
           q.key_concurrency,
           q.fair
    FROM queues AS q
    WHERE (:queues IS NULL OR q.name IN (SELECT value FROM json_each(:queues)))
      AND q.paused = 0
      AND (q.paused_until IS NULL OR q.paused_until <= :now)
),
levels (queue, priority) AS (
    SELECT o.queue,
           (SELECT max(c.priority) FROM jobs AS c INDEXED BY jobs_pending
            WHERE c.queue = o.queue AND c.status = 'pending')
    FROM open AS o
    WHERE o.budget > 0 AND o.per_key IS NULL AND o.fair = 0
    UNION ALL
    SELECT l.queue,
           (SELECT max(c.priority) FROM jobs AS c INDEXED BY jobs_pending
            WHERE c.queue = l.queue AND c.status = 'pending' AND c.priority < l.priority)
    FROM levels AS l
    WHERE l.priority IS NOT NULL
),
keys (queue, key) AS (
    SELECT o.queue,
           (SELECT min(c.concurrency_key) FROM jobs AS c INDEXED BY jobs_pending_by_key
            WHERE c.queue = o.queue AND c.status = 'pending' AND c.concurrency_key IS NOT NULL)
    FROM open AS o
    WHERE o.budget > 0 AND (o.per_key IS NOT NULL OR o.fair = 1)
    UNION ALL
    SELECT k.queue,
           (SELECT min(c.concurrency_key) FROM jobs AS c INDEXED BY jobs_pending_by_key
            WHERE c.queue = k.queue AND c.status = 'pending' AND c.concurrency_key > k.key)
    FROM keys AS k
    WHERE k.key IS NOT NULL
),
plain (id, queue, priority, run_at, turn) AS (
    SELECT j.id, j.queue, j.priority, j.run_at, 1
    FROM levels AS l
    JOIN jobs AS j ON j.id IN (
        SELECT c.id FROM jobs AS c INDEXED BY jobs_pending
        WHERE c.queue = l.queue
          AND c.status = 'pending'
          AND c.priority = l.priority
          AND c.run_at <= :now
          AND (c.lease_expires_at IS NULL OR c.lease_expires_at < :lease_now)
        ORDER BY c.run_at, c.id
        LIMIT :limit
    )
    WHERE l.priority IS NOT NULL
),
key_load (queue, key, busy, served, head) AS (
    SELECT k.queue, k.key,
           (SELECT count(*) FROM jobs AS r INDEXED BY jobs_processing
            WHERE r.queue = k.queue AND r.concurrency_key = k.key AND r.status = 'processing'),
           (SELECT s.started_at FROM key_starts AS s WHERE s.queue = k.queue AND s.key = k.key),
           (SELECT c.id FROM jobs AS c INDEXED BY jobs_pending_by_key
            WHERE c.queue = k.queue AND c.concurrency_key = k.key AND c.status = 'pending'
              AND c.run_at <= :now
              AND (c.lease_expires_at IS NULL OR c.lease_expires_at < :lease_now)
            ORDER BY c.priority DESC, c.run_at, c.id LIMIT 1)
    FROM keys AS k
    WHERE k.key IS NOT NULL
),
chosen_keys (queue, key) AS (
    SELECT queue, key FROM (
        SELECT l.queue, l.key,
               row_number() OVER (PARTITION BY l.queue
                                  ORDER BY h.priority DESC,
                                           CASE WHEN o.fair = 1 THEN l.busy END,
                                           CASE WHEN o.fair = 1 THEN coalesce(l.served, 0) END,
                                           h.run_at, h.id) AS place
        FROM key_load AS l
        JOIN jobs AS h ON h.id = l.head
        JOIN open AS o ON o.queue = l.queue
        WHERE o.per_key IS NULL OR l.busy < o.per_key)
    WHERE place <= :limit
),
keyed (id, queue, key, priority, run_at) AS (
    SELECT j.id, j.queue, j.concurrency_key, j.priority, j.run_at
    FROM chosen_keys AS k
    JOIN jobs AS j ON j.id IN (
        SELECT c.id FROM jobs AS c INDEXED BY jobs_pending_by_key
        WHERE c.queue = k.queue
          AND c.concurrency_key = k.key
          AND c.status = 'pending'
          AND c.run_at <= :now
          AND (c.lease_expires_at IS NULL OR c.lease_expires_at < :lease_now)
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT :limit
    )
    UNION ALL
    SELECT j.id, j.queue, NULL, j.priority, j.run_at
    FROM open AS o
    JOIN jobs AS j ON j.id IN (
        SELECT c.id FROM jobs AS c INDEXED BY jobs_pending
        WHERE c.queue = o.queue
          AND c.status = 'pending'
          AND c.concurrency_key IS NULL
          AND c.run_at <= :now
          AND (c.lease_expires_at IS NULL OR c.lease_expires_at < :lease_now)
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT :limit
    )
    WHERE o.budget > 0 AND (o.per_key IS NOT NULL OR o.fair = 1)
),
turns (id, queue, priority, run_at, turn) AS (
    SELECT q.id, q.queue, q.priority, q.run_at, q.busy + q.turn
    FROM (SELECT k.*,
                 row_number() OVER (PARTITION BY k.queue, k.key
                                    ORDER BY k.priority DESC, k.run_at, k.id) AS turn,
                 (SELECT count(*) FROM jobs AS r INDEXED BY jobs_processing
                  WHERE r.queue = k.queue AND r.concurrency_key IS k.key
                    AND r.status = 'processing') AS busy
          FROM keyed AS k) AS q
    JOIN open AS o ON o.queue = q.queue
    WHERE q.key IS NULL OR o.per_key IS NULL OR q.busy + q.turn <= o.per_key
),
shuffled (id, queue, priority, run_at, turn, draw, budget) AS (
    SELECT c.id, c.queue, c.priority, c.run_at,
           CASE WHEN o.fair = 1 THEN c.turn ELSE 1 END,
           CASE WHEN o.fair = 1
                THEN coalesce((SELECT s.started_at FROM key_starts AS s
                               WHERE s.queue = c.queue AND s.key = coalesce(j.concurrency_key, '')),
                              0)
                ELSE 0 END,
           o.budget
    FROM (SELECT * FROM plain UNION ALL SELECT * FROM turns) AS c
    JOIN open AS o ON o.queue = c.queue
    JOIN jobs AS j ON j.id = c.id
),
candidates (id, priority, run_at, turn, draw, n, budget) AS (
    SELECT id, priority, run_at, turn, draw,
           row_number() OVER (PARTITION BY queue
                              ORDER BY priority DESC, turn, draw, run_at, id),
           budget
    FROM shuffled
)
UPDATE jobs
SET status           = 'processing',
    attempts         = attempts + 1,
    worker           = :worker,
    started_at       = :now,
    earlier_starts   = {{earlier_starts}},
    updated_at       = :now,
    lease_expires_at = :lease_until,
    progress         = NULL,
    progress_message = NULL
WHERE id IN (
    SELECT id FROM candidates
    WHERE n <= budget
    ORDER BY priority DESC, turn, draw, run_at, id
    LIMIT :limit
)
RETURNING *

-- name: forget_starts
-- After a claim (the full one) that started jobs :ids (a JSON array): the starts that have
-- left their rate-limited queue's sliding window go, so queue_starts holds about one
-- window per queue. Then add_starts and serve_keys, in the claim's transaction; they were
-- row triggers, which made every claim two-pass (migrations/0015).
DELETE FROM queue_starts
WHERE rowid IN (
    SELECT w.rowid
    FROM queues AS q
    JOIN queue_starts AS w ON w.queue = q.name
    WHERE q.rate_limit IS NOT NULL
      AND q.name IN (SELECT j.queue FROM jobs AS j
                     WHERE j.id IN (SELECT value FROM json_each(:ids)))
      AND w.started_at <= :now - q.rate_period
)

-- name: add_starts
-- ... each start of a rate-limited queue's job, counted by the next claims' window.
INSERT INTO queue_starts (queue, started_at)
SELECT j.queue, j.started_at
FROM jobs AS j
JOIN queues AS q ON q.name = j.queue
WHERE j.id IN (SELECT value FROM json_each(:ids))
  AND q.rate_limit IS NOT NULL

-- name: serve_keys
-- ... and when each concurrency_key of a fair queue was last served ('' for no key).
INSERT INTO key_starts (queue, key, started_at)
SELECT j.queue, coalesce(j.concurrency_key, ''), max(j.started_at)
FROM jobs AS j
JOIN queues AS q ON q.name = j.queue
WHERE j.id IN (SELECT value FROM json_each(:ids))
  AND q.fair = 1
GROUP BY j.queue, coalesce(j.concurrency_key, '')
ON CONFLICT (queue, key) DO UPDATE SET started_at = excluded.started_at

-- name: heartbeat
-- Extend one lease, only while this claim (worker + attempt) still holds the job, and
-- return its status: a run whose job was cancelled meanwhile keeps its lease until its code
-- has stopped (end_run), so that a retry cannot start a second run beside it; the status
-- tells the worker to stop it.
UPDATE jobs
SET lease_expires_at = :lease_until
WHERE id = :id
  AND worker = :worker
  AND attempts = :attempt
  AND lease_expires_at IS NOT NULL
RETURNING status

-- name: report_progress
-- What a running task reported with ctx.progress(), written with its lease renewal; only
-- while this claim holds the job and it is processing.
UPDATE jobs
SET progress         = :progress,
    progress_message = :progress_message
WHERE id = :id
  AND status = 'processing'
  AND worker = :worker
  AND attempts = :attempt

-- name: complete
-- processing → done, fenced by the claim's worker and attempt, for a job that no other job
-- waits for (complete_settling finishes the others). With complete_settling, the one way
-- to done: the batch is counted by count_done and done_minutes, not by a trigger (it sets
-- no run_at, so the counts' triggers of migration 0011 do not run; every other change of
-- status sets it). It names no has_dependents, so it fires no trigger (migrations/0015).
UPDATE jobs
SET status           = 'done',
    result           = :result,
    finished_at      = :now,
    updated_at       = :now,
    lease_expires_at = NULL
WHERE id = :id
  AND status = 'processing'
  AND worker = :worker
  AND attempts = :attempt
  AND has_dependents = 0

-- name: complete_settling
-- As complete, for a job that others wait for: jobs_settle_dependents settles them.
UPDATE jobs
SET status           = 'done',
    has_dependents   = has_dependents,
    result           = :result,
    finished_at      = :now,
    updated_at       = :now,
    lease_expires_at = NULL
WHERE id = :id
  AND status = 'processing'
  AND worker = :worker
  AND attempts = :attempt

-- name: fail
-- processing → pending at :retry_at, or → failed when :retry_at is NULL; same fence.
UPDATE jobs
SET status           = CASE WHEN :retry_at IS NULL THEN 'failed' ELSE 'pending' END,
    has_dependents   = has_dependents,  -- settles them when failed (migrations/0015)
    run_at           = coalesce(:retry_at, run_at),
    last_error       = :error,
    finished_at      = CASE WHEN :retry_at IS NULL THEN :now END,
    updated_at       = :now,
    lease_expires_at = NULL
WHERE id = :id
  AND status = 'processing'
  AND worker = :worker
  AND attempts = :attempt
RETURNING status

-- name: snooze
-- processing → pending at :retry_at, giving the attempt back (the task raised Snooze);
-- fenced as complete.
UPDATE jobs
SET status           = 'pending',
    attempts         = attempts - 1,
    run_at           = :retry_at,
    updated_at       = :now,
    lease_expires_at = NULL
WHERE id = :id
  AND status = 'processing'
  AND worker = :worker
  AND attempts = :attempt

-- name: release
-- processing → pending, giving the attempt back (graceful shutdown); same fence. The lease
-- ends at :lease_until: NULL when the run has stopped, or the moment by which it certainly
-- has (its process exited), which is also the job's :run_at; no claim takes it before then.
UPDATE jobs
SET status           = 'pending',
    attempts         = attempts - 1,
    run_at           = :run_at,
    updated_at       = :now,
    lease_expires_at = :lease_until
WHERE id = :id
  AND status = 'processing'
  AND worker = :worker
  AND attempts = :attempt

-- name: end_run
-- The run of a job that is no longer processing (cancelled, perhaps retried since) has
-- stopped, or will have by :lease_until: its lease ends then (NULL: now), and a retried job
-- may start. Same fence; the job's status and outcome are left as they are.
UPDATE jobs
SET lease_expires_at = :lease_until
WHERE id = :id
  AND worker = :worker
  AND attempts = :attempt
  AND lease_expires_at IS NOT NULL
  AND status <> 'processing'

-- name: recover_expired
-- Jobs whose lease ran out (their worker died or stalled): back to pending while attempts
-- remain, otherwise failed for good. The old worker's fence no longer matches either way.
UPDATE jobs
SET status           = CASE WHEN attempts < max_attempts THEN 'pending' ELSE 'failed' END,
    has_dependents   = has_dependents,  -- settles them when failed (migrations/0015)
    run_at           = :now,
    last_error       = 'recovered: lease of worker ' || coalesce(worker, '?')
                       || ' expired during attempt ' || attempts || ' of ' || max_attempts
                       || ' (the worker died or stalled)',
    finished_at      = CASE WHEN attempts < max_attempts THEN NULL ELSE :now END,
    updated_at       = :now,
    lease_expires_at = NULL
WHERE id IN (
    SELECT id FROM jobs
    WHERE status = 'processing'
      AND lease_expires_at < :lease_now
    LIMIT :limit
)
RETURNING id, status

-- name: get_job
SELECT * FROM jobs WHERE id = :id

-- name: list_jobs
-- Newest first; each filter applies only when given; keyset pagination by :before_id.
SELECT * FROM jobs
WHERE (:status IS NULL OR status = :status)
  AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit

-- name: cancel_many
-- pending|processing → cancelled, for each id of the JSON array :ids (one id for `cancel`),
-- only those still in :status when it is given (a bulk action's filter). A running job
-- keeps its lease (worker, attempts and deadline): its worker renews it until the run's
-- code has stopped, and until then no retry of the job can be claimed. `held`: a run holds
-- the job, so its worker must be told (signal_cancel).
-- A job waiting for dependencies waits no more (its held run_at comes back).
UPDATE jobs
SET status         = 'cancelled',
    has_dependents = has_dependents,  -- settles them (migrations/0015)
    run_at         = coalesce(held_run_at, run_at),
    held_run_at    = NULL,
    waiting_for    = 0,
    finished_at    = :now,
    updated_at     = :now
WHERE id IN (SELECT value FROM json_each(:ids))
  AND status IN ('pending', 'processing')
  AND (:status IS NULL OR status = :status)
RETURNING id, lease_expires_at IS NOT NULL AS held

-- name: retry_many
-- failed|cancelled → pending, runnable now, for each id of the JSON array :ids (one id for
-- `retry`), only those still in :status when it is given. attempts is kept (history), and
-- max_attempts is raised when needed so at least one more attempt runs. A lease left by a
-- cancelled run stays: the claim waits until that run has stopped or its lease has
-- expired. A job whose unique_key an unfinished job holds is left as it is. Two of :ids
-- with one key would both pass that test (neither is unfinished yet) and the second breaks
-- the unique index: the store then runs the ids one at a time (retry_many in store.py).
UPDATE jobs
SET status       = 'pending',
    run_at       = :now,
    max_attempts = max(max_attempts, attempts + 1),
    finished_at  = NULL,
    updated_at   = :now
WHERE id IN (SELECT value FROM json_each(:ids))
  AND status IN ('failed', 'cancelled')
  AND (:status IS NULL OR status = :status)
  AND (unique_key IS NULL
       OR NOT EXISTS (SELECT 1 FROM jobs AS holder
                      WHERE holder.unique_key = jobs.unique_key
                        AND holder.unique_key IS NOT NULL
                        AND holder.status IN ('pending', 'processing')))
RETURNING id

-- name: earlier_starts
-- A fragment of the claims: a job started again keeps its previous start (the timeline's
-- "each start"), the last 100; NULL for a job started at most once.
CASE WHEN started_at IS NULL THEN earlier_starts
     ELSE json_insert(CASE WHEN json_array_length(earlier_starts) >= 100
                           THEN json_remove(earlier_starts, '$[0]')
                           ELSE coalesce(earlier_starts, '[]') END,
                      '$[#]', started_at)
END

-- name: job_starts
-- Every start of a job kept (the job page's timeline): the earlier ones and the last.
SELECT earlier_starts, started_at FROM jobs WHERE id = :id

-- name: bulk_filter
-- A fragment: the filter of a bulk action (SPEC §8), each clause only when given.
(:queue IS NULL OR queue = :queue)
AND (:type IS NULL OR type = :type)
AND (:created_before IS NULL OR created_at < :created_before)

-- name: bulk_bounds_pending
-- The lowest and highest id of the pending jobs a bulk cancel matches: one walk of the
-- partial index jobs_pending (a status literal, so that SQLite can use it). `id + 0`: min
-- and max of the rowid itself would walk the table from its first (or last) row instead.
SELECT min(id + 0) AS low, max(id + 0) AS high
FROM jobs
WHERE status = 'pending'
  AND {{bulk_filter}}

-- name: bulk_bounds_processing
-- As bulk_bounds_pending, over the processing jobs (few: at most the fleet's slots).
SELECT min(id + 0) AS low, max(id + 0) AS high
FROM jobs
WHERE status = 'processing'
  AND {{bulk_filter}}

-- name: bulk_bounds_retryable
-- As bulk_bounds_pending, over the failed or cancelled jobs of :status (jobs_retryable).
SELECT min(id) AS low, max(id) AS high
FROM jobs INDEXED BY jobs_retryable
WHERE status IN ('failed', 'cancelled')
  AND status = :status
  AND {{bulk_filter}}

-- name: bulk_cancel_ids
-- The next batch of a bulk cancel: up to :limit ids after :after (keyset), up to :upto,
-- by the rowid, so a batch reads from where the previous one stopped; pending and processing
-- jobs are mostly the newest rows, and the walk runs between the bounds above.
SELECT id
FROM jobs
WHERE id > :after
  AND id <= :upto
  AND status = :status
  AND {{bulk_filter}}
ORDER BY id
LIMIT :limit

-- name: bulk_retry_ids
-- The next batch of a bulk retry: up to :limit ids of :status after :after (keyset), up to
-- :upto, from jobs_retryable (status, id), so a batch reads from where the previous one
-- stopped, however many failed jobs of other queues or types lie before it.
SELECT id
FROM jobs INDEXED BY jobs_retryable
WHERE status IN ('failed', 'cancelled')
  AND status = :status
  AND id > :after
  AND id <= :upto
  AND {{bulk_filter}}
ORDER BY id
LIMIT :limit

-- name: prune
-- Delete one batch of finished jobs of :status older than :cutoff, oldest first (batches
-- keep write locks short). The newest row is kept: ids are max(id) + 1, so keeping it means
-- ids are never reused; it is left out of the batch, so a full batch means there may be more.
-- The status IN (...) repeats the index's condition: with :status alone SQLite cannot tell
-- that the partial index jobs_finished (status, finished_at) covers the rows.
DELETE FROM jobs
WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_finished
    WHERE status IN ('done', 'failed', 'cancelled')
      AND status = :status
      AND finished_at < :cutoff
      AND id < (SELECT max(id) FROM jobs)
    ORDER BY finished_at
    LIMIT :batch
)

-- name: try_lead
-- Take or renew the leadership of :role for :holder until :until (lease clock): a new row
-- when nobody ever led it, else an update only while :holder leads it already or its
-- leader's time has run out (:lease_now past `until`). A row back means :holder leads. One
-- statement: SQLite's single writer decides between two processes asking at once.
INSERT INTO leaders (role, holder, until) VALUES (:role, :holder, :until)
ON CONFLICT (role) DO UPDATE
SET holder = excluded.holder,
    until  = excluded.until
WHERE leaders.holder = excluded.holder
   OR leaders.until < :lease_now
RETURNING holder

-- name: resign
-- :holder gives :role up (it stops), so another process takes it at its next try.
DELETE FROM leaders WHERE role = :role AND holder = :holder

-- name: expire_leaders
-- After a reboot (see expire_leases): every leader's deadline has passed.
UPDATE leaders SET until = 0

-- name: written_by
-- Whether a batched `complete` applied to this job: it did when the row carries this
-- claim's fence, is done and has the write's timestamp. Used only when a batch's rowcount
-- shows that some rows were not held any more.
SELECT 1 FROM jobs
WHERE id = :id
  AND worker = :worker
  AND attempts = :attempt
  AND status = 'done'
  AND updated_at = :now

-- name: stats
-- Jobs by queue and status: pending and processing ones counted on their partial indexes
-- (few), finished ones read from job_counts (kept by triggers, migration 0011), so the cost
-- does not grow with the finished jobs the table holds.
SELECT queue, 'pending' AS status, count(*) AS n
FROM jobs INDEXED BY jobs_pending
WHERE status = 'pending'
GROUP BY queue
UNION ALL
SELECT queue, 'processing', count(*)
FROM jobs INDEXED BY jobs_processing
WHERE status = 'processing'
GROUP BY queue
UNION ALL
SELECT queue, status, n
FROM job_counts
WHERE n > 0

-- name: register_periodic
-- A schedule as an app registers it when a worker starts: a new row whose ticks count from
-- :now; or, when its schedule or time zone changed, the new ones, counted from :now again (no
-- tick of the old schedule, nor from before the change, is caught up). Unchanged: nothing is
-- written. last_tick stays as it is either way: it only ever moves forward.
INSERT INTO periodic (name, schedule, timezone, since, updated_at)
VALUES (:name, :schedule, :timezone, :now, :now)
ON CONFLICT (name) DO UPDATE
SET schedule   = excluded.schedule,
    timezone   = excluded.timezone,
    since      = excluded.since,
    updated_at = excluded.updated_at
WHERE periodic.schedule <> excluded.schedule
   OR periodic.timezone <> excluded.timezone

-- name: enqueue_periodic
-- The compare-and-set of one tick: last_tick moves to :tick only if :tick is later than it
-- and not before `since`. A row back means this call won the tick; the store inserts the
-- tick's job and records it (periodic_job) in the same BEGIN IMMEDIATE transaction, so no
-- other process can win the same tick, nor an earlier one, ever after: not even once the
-- job has finished and freed its unique_key. A missing row is created (since = :tick).
INSERT INTO periodic (name, schedule, timezone, since, last_tick, updated_at)
VALUES (:name, :schedule, :timezone, :tick, :tick, :now)
ON CONFLICT (name) DO UPDATE
SET last_tick  = excluded.last_tick,
    updated_at = excluded.updated_at
WHERE (periodic.last_tick IS NULL OR periodic.last_tick < excluded.last_tick)
  AND periodic.since <= excluded.last_tick
RETURNING name

-- name: periodic_job
-- The job of the tick just won (or the unfinished job that held its unique_key).
UPDATE periodic
SET last_job_id = :job_id
WHERE name = :name

-- name: list_periodic
-- Every schedule, with the status of its last job (NULL once that job was pruned).
SELECT p.name, p.schedule, p.timezone, p.since, p.last_tick, p.last_job_id, p.updated_at,
       j.status AS last_job_status
FROM periodic AS p
LEFT JOIN jobs AS j ON j.id = p.last_job_id
ORDER BY p.name

-- name: data_version
-- Changes whenever another connection commits to the file: the cross-process wake-up signal.
PRAGMA data_version

-- name: lease_clock
-- The boot whose clock wrote the lease deadlines (see migrations/0002_lease_clock.sql).
SELECT boot_id FROM lease_clock WHERE id = 1

-- name: set_lease_clock
INSERT INTO lease_clock (id, boot_id) VALUES (1, :boot_id)
ON CONFLICT (id) DO UPDATE SET boot_id = excluded.boot_id

-- name: convert_leases
-- Once, at the first start after migration 0002: wall-clock deadlines to the lease clock.
UPDATE jobs
SET lease_expires_at = lease_expires_at - :wall_now + :lease_now
WHERE lease_expires_at IS NOT NULL

-- name: expire_leases
-- After a reboot: every process that held a lease is gone, so every deadline has passed.
UPDATE jobs
SET lease_expires_at = 0
WHERE lease_expires_at IS NOT NULL

-- name: signal_cancel
-- A run held the job just cancelled: tell every worker process (see cancel_signal in
-- migrations/0003_progress.sql).
UPDATE cancel_signal SET version = version + 1 WHERE id = 1

-- name: cancel_signal
SELECT version FROM cancel_signal WHERE id = 1

-- name: list_queues
-- Queue settings (SPEC §7) of every queue that was configured (configure, pause, resume and
-- hold set updated_at; the rows the jobs_queue_seen trigger adds have none) or has pending
-- or processing jobs. Cost: a walk of `queues` (every queue ever used) with at most one probe
-- of jobs_pending and one of jobs_processing per queue, whatever the number of jobs.
SELECT q.*
FROM queues AS q
WHERE q.updated_at IS NOT NULL
   OR EXISTS (SELECT 1 FROM jobs WHERE queue = q.name AND status = 'pending')
   OR EXISTS (SELECT 1 FROM jobs WHERE queue = q.name AND status = 'processing')

-- name: configure_queue
-- Upsert a queue's settings: only those flagged :set_* change (NULL clears a limit); the
-- others keep their value, or their default in a new row. A rate limit is a count and a
-- period (microseconds), set together.
INSERT INTO queues (name, concurrency, rate_limit, rate_period, key_concurrency, fair,
                    updated_at)
VALUES (:name, :concurrency, :rate_limit, :rate_period, :key_concurrency, coalesce(:fair, 0),
        :now)
ON CONFLICT (name) DO UPDATE
SET concurrency     = CASE WHEN :set_concurrency THEN excluded.concurrency ELSE concurrency END,
    rate_limit      = CASE WHEN :set_rate_limit THEN excluded.rate_limit ELSE rate_limit END,
    rate_period     = CASE WHEN :set_rate_limit THEN excluded.rate_period ELSE rate_period END,
    key_concurrency = CASE WHEN :set_key_concurrency THEN excluded.key_concurrency
                           ELSE key_concurrency END,
    fair            = CASE WHEN :set_fair THEN excluded.fair ELSE fair END,
    updated_at      = excluded.updated_at
RETURNING *

-- name: pause_queue
-- An operator's pause: no claim takes the queue's jobs until resume_queue.
INSERT INTO queues (name, paused, updated_at) VALUES (:name, 1, :now)
ON CONFLICT (name) DO UPDATE
SET paused     = 1,
    updated_at = excluded.updated_at
RETURNING *

-- name: resume_queue
-- Ends an operator's pause and a fleet-wide backoff (paused_until) alike.
INSERT INTO queues (name, paused, updated_at) VALUES (:name, 0, :now)
ON CONFLICT (name) DO UPDATE
SET paused       = 0,
    paused_until = NULL,
    updated_at   = excluded.updated_at
RETURNING *

-- name: hold_queue
-- A fleet-wide backoff (Snooze(queue=True)): no claim takes the queue's jobs before :until
-- (wall-clock microseconds); a later backoff already set is kept.
INSERT INTO queues (name, paused_until, updated_at) VALUES (:name, :until, :now)
ON CONFLICT (name) DO UPDATE
SET paused_until = max(coalesce(paused_until, excluded.paused_until), excluded.paused_until),
    updated_at   = excluded.updated_at
RETURNING *

-- name: ping
SELECT 1

-- name: finished_among
-- Conveyor.wait (conveyor/waiting.py): of the ids in :ids (a JSON array), the jobs that have
-- finished, and a row of NULLs but `wanted` for an id that names no job (pruned meanwhile);
-- one primary-key probe per id. Unfinished jobs, most of the ids most of the time, are left
-- out, so a check that finds nothing reads no payload.
SELECT wanted.value AS wanted, jobs.*
FROM json_each(:ids) AS wanted
LEFT JOIN jobs ON jobs.id = wanted.value
WHERE jobs.id IS NULL OR jobs.status IN ('done', 'failed', 'cancelled')

-- name: register_worker
-- A worker's registry row (migration 0010): inserted at its start, renewed by each heartbeat
-- (busy, last_heartbeat, the listing deadline); started_at stays the first one's.
INSERT INTO workers (id, host, pid, queues, slots, busy, version, started_at, last_heartbeat,
                     expires_at)
VALUES (:id, :host, :pid, :queues, :slots, :busy, :version, :started_at, :now, :expires_at)
ON CONFLICT (id) DO UPDATE
SET busy           = excluded.busy,
    last_heartbeat = excluded.last_heartbeat,
    expires_at     = excluded.expires_at

-- name: unregister_worker
DELETE FROM workers WHERE id = :id

-- name: list_workers
SELECT * FROM workers WHERE expires_at >= :lease_now ORDER BY id

-- name: forget_workers
-- Registry rows of workers gone without unregistering (killed): deleted by the reapers.
DELETE FROM workers WHERE expires_at < :lease_now

-- name: forget_all_workers
-- After a reboot every worker process is gone (see expire_leases).
DELETE FROM workers

-- name: minute_stats
-- The per-minute aggregates from minute :since on, all queues together.
SELECT minute, wait_bucket, run_bucket,
       sum(finished) AS finished, sum(failed) AS failed, sum(retried) AS retried
FROM job_minutes
WHERE minute >= :since
GROUP BY minute, wait_bucket, run_bucket

-- name: oldest_pending
-- The run_at of each queue's oldest due pending job: one walk of jobs_pending (pending jobs
-- only). Jobs waiting for dependencies have a run_at far ahead, past :now.
SELECT queue, min(run_at) AS run_at
FROM jobs INDEXED BY jobs_pending
WHERE status = 'pending'
  AND run_at <= :now
GROUP BY queue

-- name: prune_minutes
DELETE FROM job_minutes WHERE minute < :before

-- name: count_done
-- The jobs of :ids (a JSON array) just completed, counted in job_counts in the completing
-- transaction: once per batch, where a trigger would run once per job (see
-- migrations/0011_job_stats.sql). `complete` is the one statement that makes jobs done.
INSERT INTO job_counts (queue, status, n)
SELECT queue, 'done', count(*)
FROM jobs
WHERE id IN (SELECT value FROM json_each(:ids))
GROUP BY queue
ON CONFLICT (queue, status) DO UPDATE SET n = n + excluded.n

-- name: done_minutes
-- ... and their attempts in job_minutes: queue wait (run_at → started_at) and run time
-- (started_at → updated_at, the completion) by bucket, as the jobs_minute_stats trigger
-- counts the other ended attempts.
INSERT INTO job_minutes (minute, queue, wait_bucket, run_bucket, finished, failed, retried)
SELECT updated_at / 60000000,
       queue,
       CASE
           WHEN started_at - run_at < 1000 THEN 0
           WHEN started_at - run_at < 2000 THEN 1
           WHEN started_at - run_at < 5000 THEN 2
           WHEN started_at - run_at < 10000 THEN 3
           WHEN started_at - run_at < 20000 THEN 4
           WHEN started_at - run_at < 50000 THEN 5
           WHEN started_at - run_at < 100000 THEN 6
           WHEN started_at - run_at < 200000 THEN 7
           WHEN started_at - run_at < 500000 THEN 8
           WHEN started_at - run_at < 1000000 THEN 9
           WHEN started_at - run_at < 2000000 THEN 10
           WHEN started_at - run_at < 5000000 THEN 11
           WHEN started_at - run_at < 10000000 THEN 12
           WHEN started_at - run_at < 30000000 THEN 13
           WHEN started_at - run_at < 60000000 THEN 14
           WHEN started_at - run_at < 120000000 THEN 15
           WHEN started_at - run_at < 300000000 THEN 16
           WHEN started_at - run_at < 600000000 THEN 17
           WHEN started_at - run_at < 1800000000 THEN 18
           WHEN started_at - run_at < 3600000000 THEN 19
           ELSE 20 END AS wait_bucket,
       CASE
           WHEN updated_at - started_at < 1000 THEN 0
           WHEN updated_at - started_at < 2000 THEN 1
           WHEN updated_at - started_at < 5000 THEN 2
           WHEN updated_at - started_at < 10000 THEN 3
           WHEN updated_at - started_at < 20000 THEN 4
           WHEN updated_at - started_at < 50000 THEN 5
           WHEN updated_at - started_at < 100000 THEN 6
           WHEN updated_at - started_at < 200000 THEN 7
           WHEN updated_at - started_at < 500000 THEN 8
           WHEN updated_at - started_at < 1000000 THEN 9
           WHEN updated_at - started_at < 2000000 THEN 10
           WHEN updated_at - started_at < 5000000 THEN 11
           WHEN updated_at - started_at < 10000000 THEN 12
           WHEN updated_at - started_at < 30000000 THEN 13
           WHEN updated_at - started_at < 60000000 THEN 14
           WHEN updated_at - started_at < 120000000 THEN 15
           WHEN updated_at - started_at < 300000000 THEN 16
           WHEN updated_at - started_at < 600000000 THEN 17
           WHEN updated_at - started_at < 1800000000 THEN 18
           WHEN updated_at - started_at < 3600000000 THEN 19
           ELSE 20 END AS run_bucket,
       count(*),
       0,
       0
FROM jobs
WHERE id IN (SELECT value FROM json_each(:ids))
GROUP BY 1, 2, 3, 4
ON CONFLICT (minute, queue, wait_bucket, run_bucket) DO UPDATE
SET finished = finished + excluded.finished
