-- Lease deadlines (jobs.lease_expires_at) move from the wall clock to the host's boot-time
-- clock (see conveyor/stores/sqlite/clock.py). Such deadlines mean something only within the
-- boot that wrote them: this one-row table names that boot. The store converts the deadlines
-- written before this migration, and expires every deadline after a reboot, when it finds
-- another boot (or none) recorded here.
CREATE TABLE lease_clock (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    boot_id TEXT    NOT NULL
);
