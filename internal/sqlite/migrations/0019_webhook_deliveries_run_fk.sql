-- A run's webhook attempts cannot outlive it: webhook_deliveries.run_id
-- refers to runs (id), and deleting a run deletes its attempts with it
-- (docs/SCHEMA.md; the store opens every connection with foreign keys on).
-- Before, an attempt recorded after retention deleted its run stayed
-- behind, a row that nothing ever deleted. Those left behind are deleted
-- here first.
--
-- SQLite adds no constraint to a table: the table is made anew with it,
-- the rows copied, the old table dropped and the new one renamed. Nothing
-- refers to webhook_deliveries, and nothing but its primary key indexes it.
DELETE FROM webhook_deliveries WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = webhook_deliveries.run_id);

CREATE TABLE webhook_deliveries_new (
	run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	attempt     INTEGER NOT NULL,
	at          INTEGER NOT NULL,
	status_code INTEGER NOT NULL,
	error       TEXT    NOT NULL,
	duration_ms REAL    NOT NULL,
	PRIMARY KEY (run_id, attempt)
) STRICT;

INSERT INTO webhook_deliveries_new (run_id, attempt, at, status_code, error, duration_ms)
SELECT run_id, attempt, at, status_code, error, duration_ms FROM webhook_deliveries;

DROP TABLE webhook_deliveries;

ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
