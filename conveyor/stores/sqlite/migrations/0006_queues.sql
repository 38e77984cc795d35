-- Flow control (SPEC §7). Queue settings live in the store, so they hold across the fleet
-- and change while it runs; NULL means no limit. The `queues` table already names every
-- queue ever used (kept by the jobs_queue_seen trigger).
ALTER TABLE queues ADD COLUMN concurrency INTEGER;        -- jobs processing at once, fleet-wide
ALTER TABLE queues ADD COLUMN rate_limit INTEGER;         -- jobs started per rate_period ...
ALTER TABLE queues ADD COLUMN rate_period INTEGER;        -- ... in microseconds (sliding window)
ALTER TABLE queues ADD COLUMN key_concurrency INTEGER;    -- processing at once per concurrency_key
ALTER TABLE queues ADD COLUMN fair INTEGER NOT NULL DEFAULT 0;    -- rotate claims across keys
ALTER TABLE queues ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;  -- claim nothing from it
ALTER TABLE queues ADD COLUMN paused_until INTEGER;       -- fleet-wide backoff (Snooze(queue=True))
ALTER TABLE queues ADD COLUMN updated_at INTEGER;

-- A job's tenant (or any key) for key_concurrency and fair share.
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;

-- Processing jobs by queue and key: the counts that concurrency and key_concurrency are
-- checked against (only processing rows, so it stays small).
CREATE INDEX jobs_processing ON jobs (queue, concurrency_key) WHERE status = 'processing';

-- Keyed pending jobs, walked one key at a time by the claim of a keyed or fair queue.
CREATE INDEX jobs_pending_by_key ON jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;

-- Starts of rate-limited queues' jobs, for the sliding window; rows older than the window
-- are deleted by the claim that finds them.
CREATE TABLE queue_starts (
    queue      TEXT    NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX queue_starts_by_time ON queue_starts (queue, started_at);

-- Every start of a rate-limited queue's job, in the claim's own transaction; the window's
-- older starts go at the same time, so the table holds about one window per queue.
CREATE TRIGGER jobs_started AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'processing' AND OLD.status = 'pending'
 AND (SELECT rate_limit FROM queues WHERE name = NEW.queue) IS NOT NULL
BEGIN
    DELETE FROM queue_starts
    WHERE queue = NEW.queue
      AND started_at <= NEW.started_at - (SELECT rate_period FROM queues WHERE name = NEW.queue);
    INSERT INTO queue_starts (queue, started_at) VALUES (NEW.queue, NEW.started_at);
END;

-- When each concurrency_key of a fair queue last had a job started: claims rotate across
-- keys by it (least recently served first). '' stands for the jobs without a key.
CREATE TABLE key_starts (
    queue      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;

CREATE TRIGGER jobs_started_fair AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'processing' AND OLD.status = 'pending'
 AND (SELECT fair FROM queues WHERE name = NEW.queue) = 1
BEGIN
    INSERT INTO key_starts (queue, key, started_at)
    VALUES (NEW.queue, coalesce(NEW.concurrency_key, ''), NEW.started_at)
    ON CONFLICT (queue, key) DO UPDATE SET started_at = excluded.started_at;
END;
