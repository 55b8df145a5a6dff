-- A run's webhook attempts cannot outlive it: webhook_deliveries.run_id
-- refers to runs (id), and deleting a run deletes its attempts with it
-- (docs/SCHEMA.md). Before, an attempt recorded while retention deleted
-- its run stayed behind, a row that nothing ever deleted. Those left
-- behind are deleted here first.
--
-- Both tables are locked until the end of this migration, runs first as
-- retention's statement takes them, so that no attempt of a deleted run is
-- written between that deletion and the check of the new constraint.
LOCK TABLE runs, webhook_deliveries IN SHARE ROW EXCLUSIVE MODE;

DELETE FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = d.run_id);

ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_run_id_fkey
	FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE;
