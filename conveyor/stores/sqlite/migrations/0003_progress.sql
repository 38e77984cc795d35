-- The job context (SPEC §6): a running task's progress, written with its lease renewals.
ALTER TABLE jobs ADD COLUMN progress REAL;
ALTER TABLE jobs ADD COLUMN progress_message TEXT;

-- Bumped by every cancel of a job that a run holds, in the cancel's transaction: the
-- notifier of each worker process, which already watches data_version, reads it when the
-- file changed, and a worker running a cancelled job stops it within a second.
CREATE TABLE cancel_signal (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO cancel_signal (id, version) VALUES (1, 0);
