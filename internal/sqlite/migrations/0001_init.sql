-- The schema of docs/SCHEMA.md. Times are unix milliseconds (UTC), booleans
-- 0 or 1. Migrations are frozen history: plain SQL, seeds included; the
-- store conformance suite checks that a new database's tiers equal
-- wasmwiz.DefaultTiers.

CREATE TABLE tiers (
	name             TEXT    PRIMARY KEY,
	runs_per_minute  INTEGER NOT NULL,
	runs_per_day     INTEGER NOT NULL,
	max_memory_bytes INTEGER NOT NULL,
	timeout_ms       INTEGER NOT NULL,
	max_module_bytes INTEGER NOT NULL,
	max_stdin_bytes  INTEGER NOT NULL,
	max_output_bytes INTEGER NOT NULL,
	max_concurrent   INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL
) STRICT;

-- The default tiers of DESIGN §4 (output caps follow the stdin caps).
INSERT INTO tiers (name, runs_per_minute, runs_per_day, max_memory_bytes, timeout_ms,
	max_module_bytes, max_stdin_bytes, max_output_bytes, max_concurrent, updated_at)
VALUES
	('free',       10,   500,     134217728,  5000,   10485760,  1048576,   1048576,   1,
		CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
	('basic',      100,  10000,   268435456,  10000,  26214400,  5242880,   5242880,   5,
		CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
	('pro',        500,  50000,   536870912,  30000,  52428800,  10485760,  10485760,  20,
		CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
	('enterprise', 5000, 1000000, 1073741824, 120000, 104857600, 52428800,  52428800,  100,
		CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

CREATE TABLE users (
	id         INTEGER PRIMARY KEY,
	email      TEXT    NOT NULL UNIQUE, -- stored lower-cased: unique whatever the case
	role       TEXT    NOT NULL CHECK (role IN ('user', 'admin')),
	tier       TEXT    NOT NULL REFERENCES tiers (name),
	created_at INTEGER NOT NULL,
	disabled   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE api_keys (
	id           INTEGER PRIMARY KEY,
	user_id      INTEGER NOT NULL REFERENCES users (id),
	name         TEXT    NOT NULL,
	prefix       TEXT    NOT NULL,
	digest       TEXT    NOT NULL UNIQUE, -- hex SHA-256 of the key; the key itself is never stored
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,
	expires_at   INTEGER,
	revoked_at   INTEGER
) STRICT;
CREATE INDEX api_keys_user_id ON api_keys (user_id);

CREATE TABLE modules (
	id          TEXT    PRIMARY KEY,
	owner_id    INTEGER NOT NULL REFERENCES users (id),
	name        TEXT    NOT NULL,
	description TEXT    NOT NULL,
	sha256      TEXT    NOT NULL,
	size_bytes  INTEGER NOT NULL,
	wasm        BLOB    NOT NULL,
	inspection  TEXT, -- JSON of wasmwiz.Inspection
	public      INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	last_run_at INTEGER,
	run_count   INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX modules_owner_id_created_at ON modules (owner_id, created_at);

-- No foreign keys: deleting a module or a user never breaks usage records.
-- user_id and api_key_id are 0 and module_id, status and error_code '' when
-- absent.
CREATE TABLE runs (
	id                TEXT    PRIMARY KEY,
	user_id           INTEGER NOT NULL,
	api_key_id        INTEGER NOT NULL,
	module_id         TEXT    NOT NULL,
	module_sha256     TEXT    NOT NULL,
	tier              TEXT    NOT NULL,
	status            TEXT    NOT NULL,
	exit_code         INTEGER NOT NULL,
	duration_ms       REAL    NOT NULL,
	memory_peak_bytes INTEGER NOT NULL,
	stdin_bytes       INTEGER NOT NULL,
	output_bytes      INTEGER NOT NULL,
	error_code        TEXT    NOT NULL,
	created_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_user_id_created_at ON runs (user_id, created_at);
CREATE INDEX runs_created_at ON runs (created_at);
