-- Runs become records you can come back to: state, timings, inputs (as a
-- JSON document, detail), output up to the tier's cap, and what an
-- asynchronous run needs until it ends (run_inputs). Output, inputs and
-- webhook attempts are deleted with their run.
ALTER TABLE runs ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
ALTER TABLE runs ADD COLUMN started_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN finished_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN heartbeat_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN detail TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN stdout BYTEA;
ALTER TABLE runs ADD COLUMN stderr BYTEA;
-- Runs not yet final, by state: admission counts a caller's, the sweeper
-- looks for stale ones, metrics count them.
CREATE INDEX runs_active ON runs (state, user_id) WHERE state IN ('queued', 'running');

CREATE TABLE run_inputs (
    run_id TEXT PRIMARY KEY,
    wasm   BYTEA NOT NULL,
    stdin  BYTEA NOT NULL,
    env    TEXT NOT NULL -- JSON object
);

CREATE TABLE webhook_deliveries (
    run_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    status_code INTEGER NOT NULL,
    error       TEXT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE webhook_secrets (
    user_id    BIGINT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
