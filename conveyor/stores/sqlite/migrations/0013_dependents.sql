-- A job's dependents, for its page (SPEC §9: dependencies and dependents with links). The
-- edges of job_dependencies go when a dependency finishes, and a job may name one that had
-- finished already; this table keeps every (dependency, dependent) pair as the dependent
-- named it, until the dependency is deleted. Written only by enqueues with dependencies.
CREATE TABLE job_dependents (
    depends_on INTEGER NOT NULL,
    job_id     INTEGER NOT NULL,
    PRIMARY KEY (depends_on, job_id)
) WITHOUT ROWID;

INSERT OR IGNORE INTO job_dependents (depends_on, job_id)
SELECT ref.value, jobs.id
FROM jobs, json_each(jobs.depends_on) AS ref
WHERE jobs.depends_on IS NOT NULL;

-- A pruned job's list of dependents goes with it (one primary-key range per deleted row;
-- only pruning deletes jobs). A pruned dependent's row is left: listings join jobs.
CREATE TRIGGER jobs_forget_dependents AFTER DELETE ON jobs
BEGIN
    DELETE FROM job_dependents WHERE depends_on = OLD.id;
END;
