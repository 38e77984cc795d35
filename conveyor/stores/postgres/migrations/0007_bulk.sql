-- Bulk retry (SPEC §8: POST /jobs/retry, `conveyor jobs retry --status failed`) walks the
-- failed (or cancelled) jobs of a filter in batches, keyset by id: each batch is the next
-- few hundred ids after the previous batch's last one (queries.sql: bulk_ids). No index
-- gave one status in id order (jobs_finished is (status, finished_at): walking it by id
-- would read every remaining failed job per batch). Partial: a row enters it only when it
-- fails or is cancelled, never on the enqueue → claim → done path, so workers do not pay
-- for it. Bulk cancel needs none: pending and processing jobs are walked by the primary key
-- between the lowest and highest id of the filter (bulk_bounds).
CREATE INDEX jobs_retryable ON jobs (status, id) WHERE status IN ('failed', 'cancelled');
