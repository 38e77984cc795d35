-- A row trigger on a column an UPDATE sets makes SQLite run that UPDATE in two passes (the
-- rowids are collected first) and call the trigger's program once per row, its WHEN
-- included: every claim and every finish paid for the three triggers below, which act
-- for few jobs (docs/performance.md, "Before and after").
--
-- The starts of rate-limited and fair queues are now written by the full claim itself, in
-- its transaction (queries.sql: forget_starts, add_starts, serve_keys); claim_plain never
-- takes a job of such a queue.
DROP TRIGGER jobs_started;
DROP TRIGGER jobs_started_fair;

-- A finish settles the job's dependents as before, now fired by has_dependents: every
-- statement that can finish a job names it in its SET list (has_dependents =
-- has_dependents), except `complete`, which takes only jobs that nothing waits for;
-- complete_settling finishes the others. So claims and most completions run no trigger.
DROP TRIGGER jobs_settle_dependents;
CREATE TRIGGER jobs_settle_dependents
AFTER UPDATE OF has_dependents ON jobs
WHEN NEW.has_dependents
 AND NEW.status IN ('done', 'failed', 'cancelled')
 AND OLD.status IN ('pending', 'processing')
BEGIN
    UPDATE jobs
    SET status         = 'cancelled',
        has_dependents = has_dependents,  -- their own dependents are settled in turn
        last_error     = 'dependency ' || NEW.id || ' ended ' || NEW.status,
        run_at         = coalesce(held_run_at, run_at),
        held_run_at    = NULL,
        waiting_for    = 0,
        finished_at    = NEW.updated_at,
        updated_at     = NEW.updated_at
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
