-- Workflows (SPEC §8): a job may wait for other jobs to finish.
-- depends_on: the dependencies as given (a JSON array of ids), for the job's JSON and
-- ctx.dependencies(). waiting_for: how many of them have not finished yet. While it is
-- above zero the job is pending but never due: its run_at is held at the end of time, so no
-- claim ever reads it (every claim reads due jobs only, run_at <= now, as one range of
-- jobs_pending: the waiting jobs lie past that range, however many there are), and the
-- run_at it asked for waits in held_run_at. has_dependents: some job waits for this one,
-- so finishing it has work to do (the trigger below); every other finish costs nothing more.
-- depth: the longest chain of dependencies above the job; the trigger below recurses once
-- per level when a failure cascades, and SQLite stops trigger recursion at 1000 levels.
ALTER TABLE jobs ADD COLUMN depends_on TEXT;
ALTER TABLE jobs ADD COLUMN on_dependency_failure TEXT NOT NULL DEFAULT 'cancel'
    CHECK (on_dependency_failure IN ('cancel', 'run'));
ALTER TABLE jobs ADD COLUMN waiting_for INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN held_run_at INTEGER;
ALTER TABLE jobs ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;

-- One row per dependency not yet finished: (the dependency, the job waiting for it). Looked
-- up by the dependency when it finishes; the row is deleted then.
CREATE TABLE job_dependencies (
    depends_on INTEGER NOT NULL,
    job_id     INTEGER NOT NULL,
    PRIMARY KEY (depends_on, job_id)
) WITHOUT ROWID;

-- A job that others wait for has finished, whichever way (a worker's outcome, a cancel, a
-- recovery that gave up, a bulk action), in the same transaction: with "cancel", a
-- dependency that did not end done cancels its pending dependents, whose own finish fires
-- this again for theirs (recursive_triggers is on for every connection); every other
-- pending dependent has one dependency fewer to wait for, and runs once it has none. The
-- finishing statement's updated_at is the moment of the finish.
CREATE TRIGGER jobs_settle_dependents
AFTER UPDATE OF status ON jobs
WHEN NEW.has_dependents
 AND NEW.status IN ('done', 'failed', 'cancelled')
 AND OLD.status IN ('pending', 'processing')
BEGIN
    UPDATE jobs
    SET status      = 'cancelled',
        last_error  = 'dependency ' || NEW.id || ' ended ' || NEW.status,
        run_at      = coalesce(held_run_at, run_at),
        held_run_at = NULL,
        waiting_for = 0,
        finished_at = NEW.updated_at,
        updated_at  = NEW.updated_at
    WHERE NEW.status <> 'done'
      AND status = 'pending'
      AND on_dependency_failure = 'cancel'
      AND id IN (SELECT job_id FROM job_dependencies WHERE depends_on = NEW.id);
    UPDATE jobs
    SET waiting_for = waiting_for - 1,
        run_at      = CASE WHEN waiting_for = 1 THEN max(held_run_at, NEW.updated_at)
                           ELSE run_at END,
        held_run_at = CASE WHEN waiting_for = 1 THEN NULL ELSE held_run_at END,
        updated_at  = NEW.updated_at
    WHERE status = 'pending'
      AND waiting_for > 0
      AND id IN (SELECT job_id FROM job_dependencies WHERE depends_on = NEW.id);
    DELETE FROM job_dependencies WHERE depends_on = NEW.id;
END;
