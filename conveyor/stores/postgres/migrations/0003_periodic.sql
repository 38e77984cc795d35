-- Periodic jobs (SPEC §7): one row per schedule, the compare-and-set that makes every tick
-- enqueued once however many workers run (enqueue_periodic in queries.sql).
CREATE TABLE periodic (
    name        text        PRIMARY KEY,
    schedule    text        NOT NULL,   -- the cron expression
    timezone    text        NOT NULL,   -- the IANA zone its ticks are computed in
    since       timestamptz NOT NULL,   -- ticks before this are never enqueued (first registered, or changed)
    last_tick   timestamptz,            -- the latest tick enqueued; only ever moves forward
    last_job_id bigint,                 -- that tick's job (no foreign key: jobs are pruned)
    updated_at  timestamptz NOT NULL
);
