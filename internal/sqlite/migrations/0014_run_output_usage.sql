-- The bytes of run output each user keeps, for the tier's
-- max_stored_run_bytes: a run record's stdout, stderr and files, and the
-- pieces a running background run's heartbeats appended. Triggers keep it,
-- so that every path that writes or deletes output counts without code of
-- its own: the batches of synchronous records, a background run's final
-- record (which writes its output once and drops its pieces), heartbeats,
-- the sweeper and retention. Reading it is one row, whatever the user
-- keeps. It is not a cached table: nothing here moves the cache epoch.
CREATE TABLE run_output_usage (
	user_id INTEGER PRIMARY KEY,
	bytes   INTEGER NOT NULL
) STRICT;

-- A piece names its run's user, so that it is counted to the user also
-- when it leaves in the statement that deletes its run (PostgreSQL's
-- retention deletes both at once, and its triggers run after).
ALTER TABLE run_output_chunks ADD COLUMN user_id INTEGER NOT NULL DEFAULT 0;
UPDATE run_output_chunks SET user_id = coalesce((SELECT user_id FROM runs WHERE runs.id = run_output_chunks.run_id), 0);

INSERT INTO run_output_usage (user_id, bytes)
SELECT user_id, sum(n) FROM (
	SELECT user_id, coalesce(length(stdout), 0) + coalesce(length(stderr), 0) + coalesce(length(files), 0) AS n FROM runs
	UNION ALL
	SELECT user_id, length(data) FROM run_output_chunks)
GROUP BY user_id;

-- Runs: an insert adds its output, an update of it adds the difference, a
-- delete subtracts it.
CREATE TRIGGER runs_output_usage_insert AFTER INSERT ON runs
	WHEN coalesce(length(NEW.stdout), 0) + coalesce(length(NEW.stderr), 0) + coalesce(length(NEW.files), 0) <> 0
BEGIN
	INSERT OR IGNORE INTO run_output_usage (user_id, bytes) VALUES (NEW.user_id, 0);
	UPDATE run_output_usage
		SET bytes = bytes + coalesce(length(NEW.stdout), 0) + coalesce(length(NEW.stderr), 0) + coalesce(length(NEW.files), 0)
		WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER runs_output_usage_update AFTER UPDATE OF stdout, stderr, files, user_id ON runs
	WHEN OLD.user_id <> NEW.user_id
		OR coalesce(length(OLD.stdout), 0) + coalesce(length(OLD.stderr), 0) + coalesce(length(OLD.files), 0)
		<> coalesce(length(NEW.stdout), 0) + coalesce(length(NEW.stderr), 0) + coalesce(length(NEW.files), 0)
BEGIN
	INSERT OR IGNORE INTO run_output_usage (user_id, bytes) VALUES (NEW.user_id, 0);
	UPDATE run_output_usage
		SET bytes = bytes - coalesce(length(OLD.stdout), 0) - coalesce(length(OLD.stderr), 0) - coalesce(length(OLD.files), 0)
		WHERE user_id = OLD.user_id;
	UPDATE run_output_usage
		SET bytes = bytes + coalesce(length(NEW.stdout), 0) + coalesce(length(NEW.stderr), 0) + coalesce(length(NEW.files), 0)
		WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER runs_output_usage_delete AFTER DELETE ON runs
	WHEN coalesce(length(OLD.stdout), 0) + coalesce(length(OLD.stderr), 0) + coalesce(length(OLD.files), 0) <> 0
BEGIN
	UPDATE run_output_usage
		SET bytes = bytes - coalesce(length(OLD.stdout), 0) - coalesce(length(OLD.stderr), 0) - coalesce(length(OLD.files), 0)
		WHERE user_id = OLD.user_id;
END;

-- Pieces: an insert adds, a delete subtracts (nothing updates them; an
-- update would count as both).
CREATE TRIGGER run_output_chunks_usage_insert AFTER INSERT ON run_output_chunks
BEGIN
	INSERT OR IGNORE INTO run_output_usage (user_id, bytes) VALUES (NEW.user_id, 0);
	UPDATE run_output_usage SET bytes = bytes + length(NEW.data) WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER run_output_chunks_usage_update AFTER UPDATE OF data, user_id ON run_output_chunks
BEGIN
	INSERT OR IGNORE INTO run_output_usage (user_id, bytes) VALUES (NEW.user_id, 0);
	UPDATE run_output_usage SET bytes = bytes - length(OLD.data) WHERE user_id = OLD.user_id;
	UPDATE run_output_usage SET bytes = bytes + length(NEW.data) WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER run_output_chunks_usage_delete AFTER DELETE ON run_output_chunks
BEGIN
	UPDATE run_output_usage SET bytes = bytes - length(OLD.data) WHERE user_id = OLD.user_id;
END;
