-- One index of processing jobs instead of two. jobs_lease (by lease deadline, for the
-- reaper) and jobs_processing (by queue and key, for the limits' counts) were both written
-- on every claim and every finish; the reaper's look at every processing job (a few
-- hundred rows at most: one per running slot) costs it less than the second index cost
-- each job (docs/performance.md, "Flow control").
DROP INDEX jobs_lease;
DROP INDEX jobs_processing;
CREATE INDEX jobs_processing ON jobs (queue, concurrency_key, lease_expires_at)
    WHERE status = 'processing';
