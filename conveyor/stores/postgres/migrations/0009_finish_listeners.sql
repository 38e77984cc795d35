-- The sessions that LISTEN on conveyor_finished (processes waiting for results: app.wait,
-- GET /jobs/{id}?wait=), by backend pid. A statement that finishes jobs NOTIFYs only while
-- this table has a row: a NOTIFY makes the commit take the database's notification lock,
-- which serialises the commits of every worker finishing jobs at once (two workers drained
-- a quarter slower: docs/performance.md, "Workflows"). A listener adds its row once it
-- listens and deletes it when it stops; rows of sessions that are gone (a process killed)
-- are deleted by the next listener to connect and by every reaper's recover_expired.
CREATE TABLE finish_listeners (
    pid   integer PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);
