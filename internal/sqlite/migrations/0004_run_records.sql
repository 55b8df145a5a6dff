-- Runs become records you can come back to: state, timings, inputs (as a
-- JSON document, detail), output up to the tier's cap, and what an
-- asynchronous run needs until it ends (run_inputs). Output, inputs and
-- webhook attempts are deleted with their run.
ALTER TABLE runs ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
ALTER TABLE runs ADD COLUMN started_at INTEGER;
ALTER TABLE runs ADD COLUMN finished_at INTEGER;
ALTER TABLE runs ADD COLUMN heartbeat_at INTEGER;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN detail TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN stdout BLOB;
ALTER TABLE runs ADD COLUMN stderr BLOB;
-- Runs not yet final, by state: admission counts a caller's, the sweeper
-- looks for stale ones, metrics count them.
CREATE INDEX runs_active ON runs (state, user_id) WHERE state IN ('queued', 'running');

CREATE TABLE run_inputs (
	run_id TEXT PRIMARY KEY,
	wasm   BLOB NOT NULL,
	stdin  BLOB NOT NULL,
	env    TEXT NOT NULL -- JSON object
) STRICT;

CREATE TABLE webhook_deliveries (
	run_id      TEXT    NOT NULL,
	attempt     INTEGER NOT NULL,
	at          INTEGER NOT NULL,
	status_code INTEGER NOT NULL,
	error       TEXT    NOT NULL,
	duration_ms REAL    NOT NULL,
	PRIMARY KEY (run_id, attempt)
) STRICT;

CREATE TABLE webhook_secrets (
	user_id    INTEGER PRIMARY KEY,
	secret     TEXT    NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;
