-- A job's dependents, for its page (SPEC §9: dependencies and dependents with links). The
-- edges of job_dependencies go when a dependency finishes, and a job may name one that had
-- finished already; this table keeps every (dependency, dependent) pair as the dependent
-- named it, until the dependency is deleted. Written only by enqueues with dependencies.
CREATE TABLE job_dependents (
    depends_on bigint NOT NULL,
    job_id     bigint NOT NULL,
    PRIMARY KEY (depends_on, job_id)
);

INSERT INTO job_dependents (depends_on, job_id)
SELECT DISTINCT unnest(depends_on), id
FROM jobs
WHERE depends_on IS NOT NULL
ON CONFLICT DO NOTHING;

-- A pruned job's list of dependents goes with it: one statement per deleting statement
-- (only pruning deletes jobs). A pruned dependent's row is left: listings join jobs.
CREATE FUNCTION conveyor_forget_dependents() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_dependents AS d
    USING old_jobs AS o
    WHERE d.depends_on = o.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_forget_dependents
AFTER DELETE ON jobs
REFERENCING OLD TABLE AS old_jobs
FOR EACH STATEMENT
EXECUTE FUNCTION conveyor_forget_dependents();
