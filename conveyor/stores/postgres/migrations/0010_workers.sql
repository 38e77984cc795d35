-- The workers registry (SPEC §9): one row per running worker process, written when it
-- starts, renewed with its lease heartbeat (one small write per heartbeat, not per job) and
-- deleted when it stops cleanly. Each worker writes only its own row. A process killed
-- outright leaves its row behind: listings skip a row once expires_at has passed
-- (LIVE_LEASES lease periods after its last heartbeat, on the database's clock), and the
-- reapers' recover_expired deletes it.
CREATE TABLE workers (
    id             text        PRIMARY KEY,
    host           text        NOT NULL,
    pid            integer     NOT NULL,
    queues         text[],                 -- NULL: every queue
    slots          integer     NOT NULL,
    busy           integer     NOT NULL,
    version        text        NOT NULL,
    started_at     timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);
