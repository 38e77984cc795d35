-- Flow control (SPEC §7). Queue settings live in the store, so they hold across the fleet
-- and change while it runs; a queue without a row (or with NULL limits) is unlimited.
CREATE TABLE queues (
    name            text        PRIMARY KEY,
    concurrency     integer,                -- jobs processing at once, fleet-wide
    rate_limit      integer,                -- jobs started per rate_period ...
    rate_period     interval,               -- ... (a sliding window)
    key_concurrency integer,                -- processing at once per concurrency_key
    fair            boolean     NOT NULL DEFAULT false,   -- rotate claims across keys
    paused          boolean     NOT NULL DEFAULT false,   -- claim nothing from it
    paused_until    timestamptz,            -- fleet-wide backoff (Snooze(queue=True))
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A job's tenant (or any key) for key_concurrency and fair share.
ALTER TABLE jobs ADD COLUMN concurrency_key text;

-- Processing jobs by queue and key: the counts that concurrency and key_concurrency are
-- checked against (only processing rows, so it stays small).
CREATE INDEX jobs_processing ON jobs (queue, concurrency_key) WHERE status = 'processing';

-- Keyed pending jobs, walked one key at a time by the claim of a keyed or fair queue.
CREATE INDEX jobs_pending_by_key ON jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;

-- Starts of rate-limited queues' jobs, for the sliding window; rows older than the window
-- are deleted by the claim that finds them.
CREATE TABLE queue_starts (
    queue      text        NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX queue_starts_by_time ON queue_starts (queue, started_at);

-- When each concurrency_key of a fair queue last had a job started: claims rotate across
-- keys by it (least recently served first). '' stands for the jobs without a key.
CREATE TABLE key_starts (
    queue      text        NOT NULL,
    key        text        NOT NULL,
    started_at timestamptz NOT NULL,
    PRIMARY KEY (queue, key)
);
