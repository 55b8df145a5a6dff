-- The schema of docs/SCHEMA.md. Times are unix milliseconds (UTC), booleans
-- 0 or 1. The default tiers are seeded by Go code in the same transaction,
-- from wasmwiz.DefaultTiers, so that the table in DESIGN §4 lives in one place.

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
