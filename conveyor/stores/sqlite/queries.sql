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
                  created_at, updated_at)
VALUES (:type, :queue, :payload, :priority, :max_attempts, :run_at, :unique_key, :now, :now)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')
DO NOTHING
RETURNING id

-- name: get_unfinished_by_unique_key
SELECT * FROM jobs
WHERE unique_key = :unique_key
  AND status IN ('pending', 'processing')

-- name: claim
-- Move up to :limit due pending jobs to processing under a fresh lease, highest priority
-- first, then oldest run_at, then id; from every queue, or only those in the JSON array
-- :queues. One statement: SQLite has one writer at a time, so no two workers can take the
-- same row. The walk goes one (queue, priority) level at a time: `levels` finds each
-- queue's pending priorities with one jobs_pending probe per level, and each level is one
-- range of jobs_pending whose due jobs (run_at <= :now) come before its future ones, read up
-- to :limit rows. A single walk in (priority DESC, run_at, id) order would step over every
-- future job of a higher priority (a scheduled batch, a burst of urgent retries in
-- backoff) on each claim; this way the cost is (levels + queues x limit) whatever the
-- backlog, scheduled or due. A pending job that still has a live lease is not taken: it was
-- retried after a cancel while the cancelled run may still be going (never two runs at once).
WITH RECURSIVE levels (queue, priority) AS (
    SELECT q.name,
           (SELECT max(c.priority) FROM jobs AS c INDEXED BY jobs_pending
            WHERE c.queue = q.name AND c.status = 'pending')
    FROM queues AS q
    WHERE :queues IS NULL OR q.name IN (SELECT value FROM json_each(:queues))
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
-- processing → done, fenced by the claim's worker and attempt.
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

-- name: fail
-- processing → pending at :retry_at, or → failed when :retry_at is NULL; same fence.
UPDATE jobs
SET status           = CASE WHEN :retry_at IS NULL THEN 'failed' ELSE 'pending' END,
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

-- name: cancel
-- pending|processing → cancelled. A running job keeps its lease (worker, attempts and
-- deadline): its worker renews it until the run's code has stopped, and until then no
-- retry of the job can be claimed.
UPDATE jobs
SET status      = 'cancelled',
    finished_at = :now,
    updated_at  = :now
WHERE id = :id
  AND status IN ('pending', 'processing')
RETURNING *

-- name: retry
-- failed|cancelled → pending, runnable now. attempts is kept (history), and max_attempts
-- is raised when needed so at least one more attempt runs. A lease left by a cancelled run
-- stays: the claim waits until that run has stopped or its lease has expired.
UPDATE jobs
SET status       = 'pending',
    run_at       = :now,
    max_attempts = max(max_attempts, attempts + 1),
    finished_at  = NULL,
    updated_at   = :now
WHERE id = :id
  AND status IN ('failed', 'cancelled')
RETURNING *

-- name: prune
-- Delete one batch of finished jobs older than :cutoff (batches keep write locks short).
-- The newest row is kept: ids are max(id) + 1, so keeping it means ids are never reused.
DELETE FROM jobs
WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_finished
    WHERE status IN ('done', 'failed', 'cancelled')
      AND finished_at < :cutoff
    LIMIT :batch
)
  AND id < (SELECT max(id) FROM jobs)

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
SELECT queue, status, count(*) AS n
FROM jobs
GROUP BY queue, status

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

-- name: ping
SELECT 1
