-- The job page's timeline shows each start (SPEC §9), not only the last: the start times
-- of the attempts before the one in started_at, oldest first. The claim appends the
-- previous started_at when it starts the job again; NULL for a job started at most once
-- (most jobs). At most the last 100 are kept, so a job snoozed over and over does not
-- grow without bound. Nullable without a default: adding it rewrites nothing.
ALTER TABLE jobs ADD COLUMN earlier_starts timestamptz[];
