-- count_run_output (0014) ends at once when its statement changed no
-- output, without calling add_run_output_usage: a heartbeat updates its
-- run's heartbeat_at only, every 2 s of every running background run, and
-- the upsert that found nothing to add doubled its cost (0.29 to 0.50 ms a
-- heartbeat, docs/PERFORMANCE.md). PostgreSQL only: SQLite's row triggers
-- name their columns and test the sizes in WHEN.
CREATE OR REPLACE FUNCTION count_run_output() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	users BIGINT[];
	deltas BIGINT[];
BEGIN
	IF TG_OP = 'INSERT' THEN
		SELECT array_agg(user_id), array_agg(n) INTO users, deltas FROM (
			SELECT user_id, coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0) AS n FROM added) d WHERE n <> 0;
	ELSIF TG_OP = 'UPDATE' THEN
		SELECT array_agg(user_id), array_agg(n) INTO users, deltas FROM (
			SELECT user_id, coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0) AS n FROM added
			UNION ALL
			SELECT user_id, -(coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0)) FROM gone) d WHERE n <> 0;
	ELSE
		SELECT array_agg(user_id), array_agg(n) INTO users, deltas FROM (
			SELECT user_id, -(coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0)
				+ coalesce(octet_length(files), 0)) AS n FROM gone) d WHERE n <> 0;
	END IF;
	IF users IS NOT NULL THEN
		PERFORM add_run_output_usage(users, deltas);
	END IF;
	RETURN NULL;
END
$$;
