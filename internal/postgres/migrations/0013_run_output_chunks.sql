-- A running background run's output, as its replica's heartbeats append
-- it: each heartbeat writes only the bytes added since the last one that
-- reached the store, so that the database's work for a run's output is
-- proportional to the output, not to the output times the heartbeats (a
-- column rewritten at each heartbeat was). Reading a running run joins its
-- pieces; the run's final record writes runs.stdout and runs.stderr once
-- and deletes them, and they are deleted with their run. byte_offset is
-- where data starts in its stream.
CREATE TABLE run_output_chunks (
	run_id      TEXT    NOT NULL,
	stream      TEXT    NOT NULL CHECK (stream IN ('stdout', 'stderr')),
	byte_offset BIGINT  NOT NULL,
	data        BYTEA   NOT NULL,
	PRIMARY KEY (run_id, stream, byte_offset)
);
