-- Timestamps are INTEGER microseconds since the Unix epoch, UTC: sortable, exact, compact.
CREATE TABLE jobs (
    -- No AUTOINCREMENT (it costs a write to sqlite_sequence per insert): new ids are
    -- max(id) + 1, and prune never deletes the newest row, so ids are never reused.
    id               INTEGER PRIMARY KEY,
    type             TEXT    NOT NULL,
    queue            TEXT    NOT NULL DEFAULT 'default',
    payload          TEXT    NOT NULL DEFAULT 'null',    -- JSON text
    priority         INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'done', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 5,
    run_at           INTEGER NOT NULL,
    unique_key       TEXT,
    result           TEXT,                               -- JSON text
    last_error       TEXT,
    worker           TEXT,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);

-- The claim walks this index per queue, in claim order, and stops after LIMIT rows: its
-- cost does not grow with finished jobs (not in the index) nor with the pending backlog.
-- One index serves both "all queues" and "these queues" claims (see `queues` below), so
-- each insert and each status change maintains one pending index, not two.
CREATE INDEX jobs_pending ON jobs (queue, priority DESC, run_at, id) WHERE status = 'pending';

-- Every queue name ever used, so a claim over all queues is one short index walk per
-- queue. Kept by a trigger inside the INSERT: no extra statement, and INSERT OR IGNORE of a
-- known name writes nothing.
CREATE TABLE queues (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TRIGGER jobs_queue_seen AFTER INSERT ON jobs
BEGIN
    INSERT OR IGNORE INTO queues (name) VALUES (NEW.queue);
END;

-- At most one unfinished job per unique_key; finished jobs free the key.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing');

-- The reaper looks only at processing jobs, by lease deadline.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'processing';

-- Pruning walks finished jobs by age.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('done', 'failed', 'cancelled');
