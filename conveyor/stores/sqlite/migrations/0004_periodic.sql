-- Periodic jobs (SPEC §7): one row per schedule, the compare-and-set that makes every tick
-- enqueued once however many workers run (enqueue_periodic in queries.sql). Times are INTEGER
-- microseconds since the epoch, UTC, like every time in this schema.
CREATE TABLE periodic (
    name        TEXT    PRIMARY KEY,
    schedule    TEXT    NOT NULL,   -- the cron expression
    timezone    TEXT    NOT NULL,   -- the IANA zone its ticks are computed in
    since       INTEGER NOT NULL,   -- ticks before this are never enqueued (first registered, or changed)
    last_tick   INTEGER,            -- the latest tick enqueued; only ever moves forward
    last_job_id INTEGER,            -- that tick's job (no foreign key: jobs are pruned)
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
