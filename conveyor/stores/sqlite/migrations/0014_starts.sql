-- The job page's timeline shows each start (SPEC §9), not only the last: the start times
-- (µs since the epoch) of the attempts before the one in started_at, oldest first, as a
-- JSON array. The claim appends the previous started_at when it starts the job again;
-- NULL for a job started at most once (most jobs). At most the last 100 are kept, so a
-- job snoozed over and over does not grow without bound.
ALTER TABLE jobs ADD COLUMN earlier_starts TEXT;
