-- The job context (SPEC §6): a running task's progress, written with its lease renewals.
-- Nullable columns without a default: adding them rewrites nothing.
ALTER TABLE jobs
    ADD COLUMN progress double precision,
    ADD COLUMN progress_message text;
