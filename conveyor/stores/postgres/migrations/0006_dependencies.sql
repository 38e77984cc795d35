-- Workflows (SPEC §8): a job may wait for other jobs to finish.
-- depends_on: the dependencies as given, for the job's JSON and ctx.dependencies().
-- waiting_for: how many of them have not finished yet. While it is above zero the job is
-- pending but never due: its run_at is held at the end of time, so no claim ever reads it
-- (every claim reads due jobs only, run_at <= now, as one range of a pending index: the
-- waiting jobs lie past that range, however many there are), and the run_at it asked for
-- waits in held_run_at. has_dependents: some job waits for this one, so finishing it has
-- work to do (the trigger below); every other finish costs one false WHEN test.
-- depth: the longest chain of dependencies above the job (the SQLite store's cascade
-- recurses once per level; one limit for both stores).
-- Columns with constant defaults and a NOT VALID check: adding them rewrites and scans
-- nothing (new rows are checked).
ALTER TABLE jobs
    ADD COLUMN depends_on bigint[],
    ADD COLUMN on_dependency_failure text NOT NULL DEFAULT 'cancel',
    ADD COLUMN waiting_for integer NOT NULL DEFAULT 0,
    ADD COLUMN held_run_at timestamptz,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false,
    ADD COLUMN depth integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT jobs_on_dependency_failure
        CHECK (on_dependency_failure IN ('cancel', 'run')) NOT VALID;

-- One row per dependency not yet finished: (the dependency, the job waiting for it). Looked
-- up by the dependency when it finishes; the row is deleted then.
CREATE TABLE job_dependencies (
    depends_on bigint NOT NULL,
    job_id     bigint NOT NULL,
    PRIMARY KEY (depends_on, job_id)
);

-- A job that others wait for has finished, whichever way (a worker's outcome, a cancel, a
-- recovery that gave up, a bulk action), in the same transaction. Its edges are deleted and
-- each dependent has one dependency fewer to wait for (`released`); one with none left is
-- due at once (the fetchers are woken). With "cancel", a dependency that did not end done
-- cancels its pending dependents instead, and theirs in turn (`doomed`, walked in one
-- recursive query: the cancelled rows get has_dependents false, so this trigger does not
-- fire again for them); waiters on the cancelled jobs are told on conveyor_finished.
-- Every step goes by index (edges by dependency, jobs by primary key, ids as arrays whose
-- length the planner knows), and the dependents are updated in id order: two settles that
-- share dependents lock them in the same order.
CREATE FUNCTION conveyor_settle_dependents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    notified bigint;
BEGIN
    IF NEW.status = 'done' OR NOT EXISTS (
        SELECT 1
        FROM job_dependencies AS e
        JOIN jobs AS d ON d.id = e.job_id
        WHERE e.depends_on = NEW.id
          AND d.status = 'pending'
          AND d.on_dependency_failure = 'cancel'
    ) THEN
        WITH resolved AS (
            DELETE FROM job_dependencies
            WHERE depends_on = NEW.id
            RETURNING job_id
        ),
        released AS (
            UPDATE jobs
            SET waiting_for = jobs.waiting_for - 1,
                run_at      = CASE WHEN jobs.waiting_for = 1
                                   THEN greatest(jobs.held_run_at, now()) ELSE jobs.run_at END,
                held_run_at = CASE WHEN jobs.waiting_for = 1 THEN NULL ELSE jobs.held_run_at END,
                updated_at  = now()
            WHERE jobs.id = ANY (ARRAY(SELECT job_id FROM resolved ORDER BY job_id))
              AND jobs.status = 'pending'
              AND jobs.waiting_for > 0
            RETURNING jobs.queue, jobs.waiting_for
        )
        SELECT count(pg_notify('conveyor_jobs', queue))
        FROM (SELECT DISTINCT queue FROM released WHERE waiting_for = 0) AS due
        INTO notified;
        RETURN NULL;
    END IF;

    WITH RECURSIVE doomed (id, cause, cause_status) AS (
        SELECT d.id, NEW.id, NEW.status
        FROM job_dependencies AS e
        CROSS JOIN LATERAL (
            SELECT jobs.id FROM jobs
            WHERE jobs.id = e.job_id
              AND jobs.status = 'pending'
              AND jobs.on_dependency_failure = 'cancel'
        ) AS d
        WHERE e.depends_on = NEW.id
        UNION
        SELECT d.id, doomed.id, 'cancelled'
        FROM doomed
        CROSS JOIN LATERAL (
            SELECT e.job_id FROM job_dependencies AS e WHERE e.depends_on = doomed.id
        ) AS e
        CROSS JOIN LATERAL (
            SELECT jobs.id FROM jobs
            WHERE jobs.id = e.job_id
              AND jobs.status = 'pending'
              AND jobs.on_dependency_failure = 'cancel'
        ) AS d
    ),
    first_cause AS MATERIALIZED (
        SELECT DISTINCT ON (id) id, cause, cause_status FROM doomed ORDER BY id, cause
    ),
    cancelled AS (
        UPDATE jobs
        SET status         = 'cancelled',
            last_error     = 'dependency ' || c.cause || ' ended ' || c.cause_status,
            run_at         = coalesce(jobs.held_run_at, jobs.run_at),
            held_run_at    = NULL,
            waiting_for    = 0,
            has_dependents = false,
            finished_at    = now(),
            updated_at     = now()
        FROM first_cause AS c
        WHERE jobs.id = c.id
          AND jobs.id = ANY (ARRAY(SELECT id FROM first_cause ORDER BY id))
          AND jobs.status = 'pending'
        RETURNING jobs.id
    ),
    resolved AS (
        DELETE FROM job_dependencies
        WHERE depends_on = ANY (ARRAY(SELECT id FROM first_cause) || NEW.id)
        RETURNING job_id
    ),
    settled AS (
        SELECT job_id, count(*) AS n FROM resolved GROUP BY job_id
    ),
    released AS (
        UPDATE jobs
        SET waiting_for = jobs.waiting_for - r.n,
            run_at      = CASE WHEN jobs.waiting_for = r.n
                               THEN greatest(jobs.held_run_at, now()) ELSE jobs.run_at END,
            held_run_at = CASE WHEN jobs.waiting_for = r.n THEN NULL ELSE jobs.held_run_at END,
            updated_at  = now()
        FROM settled AS r
        WHERE jobs.id = r.job_id
          AND jobs.id = ANY (ARRAY(SELECT job_id FROM settled
                                   WHERE job_id NOT IN (SELECT id FROM first_cause)
                                   ORDER BY job_id))
          AND jobs.status = 'pending'
          AND jobs.waiting_for > 0
        RETURNING jobs.queue, jobs.waiting_for
    )
    SELECT count(*) FROM (
        SELECT pg_notify('conveyor_jobs', queue)
        FROM (SELECT DISTINCT queue FROM released WHERE waiting_for = 0) AS due
        UNION ALL
        SELECT pg_notify('conveyor_finished', string_agg(id::text, ','))
        FROM (SELECT id, row_number() OVER (ORDER BY id) / 400 AS chunk FROM cancelled) AS c
        GROUP BY chunk
    ) AS sent
    INTO notified;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_settle_dependents
AFTER UPDATE OF status ON jobs
FOR EACH ROW
WHEN (NEW.has_dependents
      AND NEW.status IN ('done', 'failed', 'cancelled')
      AND OLD.status IN ('pending', 'processing'))
EXECUTE FUNCTION conveyor_settle_dependents();
