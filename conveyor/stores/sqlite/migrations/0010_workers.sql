-- The workers registry (SPEC §9): one row per running worker process, written when it
-- starts, renewed with its lease heartbeat (one small write per heartbeat, not per job) and
-- deleted when it stops cleanly. A process killed outright leaves its row behind: listings
-- skip a row once expires_at has passed (LIVE_LEASES lease periods after its last
-- heartbeat, on the lease clock like lease deadlines, see clock.py), and the reapers'
-- recover_expired deletes it. Times are wall-clock microseconds but expires_at.
CREATE TABLE workers (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    queues         TEXT,               -- JSON array of names; NULL: every queue
    slots          INTEGER NOT NULL,
    busy           INTEGER NOT NULL,
    version        TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) WITHOUT ROWID;
