-- The bytes of run output each user keeps, for the tier's
-- max_stored_run_bytes: a run record's stdout, stderr and files, and the
-- pieces a running background run's heartbeats appended. Triggers keep it,
-- so that every path that writes or deletes output counts without code of
-- its own: the batches of synchronous records, a background run's final
-- record (which writes its output once and drops its pieces), heartbeats,
-- the sweeper and retention. Reading it is one row, whatever the user
-- keeps. It is not a cached table: nothing here moves the cache epoch.
CREATE TABLE run_output_usage (
	user_id BIGINT PRIMARY KEY,
	bytes   BIGINT NOT NULL
);

-- A piece names its run's user, so that it is counted to the user also
-- when it leaves in the statement that deletes its run: retention deletes
-- runs and their pieces in one statement, and the triggers run after it,
-- when the run is gone.
ALTER TABLE run_output_chunks ADD COLUMN user_id BIGINT NOT NULL DEFAULT 0;
UPDATE run_output_chunks c SET user_id = r.user_id FROM runs r WHERE r.id = c.run_id;

INSERT INTO run_output_usage (user_id, bytes)
SELECT user_id, sum(n) FROM (
	SELECT user_id, coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
		+ coalesce(octet_length(files), 0) AS n FROM runs
	UNION ALL
	SELECT user_id, octet_length(data) FROM run_output_chunks) d
GROUP BY user_id;

-- add_run_output_usage adds deltas[i] to the bytes of users[i], summed per
-- user, in user_id order: statements of two replicas that touch the same
-- users lock their rows in the same order, and cannot deadlock. A user
-- whose bytes do not change is not touched.
CREATE FUNCTION add_run_output_usage(users BIGINT[], deltas BIGINT[]) RETURNS void LANGUAGE sql AS $$
	INSERT INTO run_output_usage AS u (user_id, bytes)
	SELECT user_id, sum(n) FROM unnest(users, deltas) AS d(user_id, n)
	GROUP BY user_id HAVING sum(n) <> 0 ORDER BY user_id
	ON CONFLICT (user_id) DO UPDATE SET bytes = u.bytes + excluded.bytes
$$;

-- Statement triggers over the rows the statement inserted (added), updated
-- (gone: before, added: after) or deleted (gone): one upsert per statement,
-- whatever its rows, so a batch of records or a retention batch costs one.
-- A transition table cannot go with a column list, so updates of other
-- columns (heartbeats) run the trigger too, and touch no row.
CREATE FUNCTION count_run_output() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		PERFORM add_run_output_usage(array_agg(user_id), array_agg(n)) FROM (
			SELECT user_id, coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0) AS n FROM added) d;
	ELSIF TG_OP = 'UPDATE' THEN
		PERFORM add_run_output_usage(array_agg(user_id), array_agg(n)) FROM (
			SELECT user_id, coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0) AS n FROM added
			UNION ALL
			SELECT user_id, -(coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0)) FROM gone) d;
	ELSE
		PERFORM add_run_output_usage(array_agg(user_id), array_agg(n)) FROM (
			SELECT user_id, -(coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0)) AS n FROM gone) d;
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION count_run_output_chunks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		PERFORM add_run_output_usage(array_agg(user_id), array_agg(octet_length(data)::bigint)) FROM added;
	ELSIF TG_OP = 'UPDATE' THEN
		PERFORM add_run_output_usage(array_agg(user_id), array_agg(n)) FROM (
			SELECT user_id, octet_length(data)::bigint AS n FROM added
			UNION ALL
			SELECT user_id, -octet_length(data)::bigint FROM gone) d;
	ELSE
		PERFORM add_run_output_usage(array_agg(user_id), array_agg(-octet_length(data)::bigint)) FROM gone;
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER runs_output_usage_insert AFTER INSERT ON runs REFERENCING NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION count_run_output();
CREATE TRIGGER runs_output_usage_update AFTER UPDATE ON runs REFERENCING OLD TABLE AS gone NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION count_run_output();
CREATE TRIGGER runs_output_usage_delete AFTER DELETE ON runs REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION count_run_output();

CREATE TRIGGER run_output_chunks_usage_insert AFTER INSERT ON run_output_chunks REFERENCING NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION count_run_output_chunks();
CREATE TRIGGER run_output_chunks_usage_update AFTER UPDATE ON run_output_chunks REFERENCING OLD TABLE AS gone NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION count_run_output_chunks();
CREATE TRIGGER run_output_chunks_usage_delete AFTER DELETE ON run_output_chunks REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION count_run_output_chunks();
