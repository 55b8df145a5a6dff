-- Indexes for what any caller asks of its own runs at will, and for the
-- retention of one tier's runs (docs/SCHEMA.md).
--
-- runs (user_id, created_at, id) is a caller's runs in the order a list
-- gives them (newest first, then by id), so that a page, and the rows an
-- offset skips, are read from the index in order instead of sorting all of
-- the caller's runs; status and duration_ms follow, so that Usage,
-- DailyRuns and a list's count read no table row (covering index). It does
-- all that runs (user_id, created_at) did, which it replaces.
CREATE INDEX runs_user_id_created_at_id ON runs (user_id, created_at, id, status, duration_ms);
DROP INDEX runs_user_id_created_at;

-- One tier's runs, oldest first: retention of a tier's run_retention_ms
-- reads the oldest of that tier's runs instead of every older run of every
-- tier.
CREATE INDEX runs_tier_created_at ON runs (tier, created_at);
