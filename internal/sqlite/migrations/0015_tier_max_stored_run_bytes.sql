-- Tier limit max_stored_run_bytes: the run output (stdout, stderr, files)
-- a user's run records keep together, counted in run_output_usage (0014).
-- Frozen SQL: the defaults of the four default tiers are written here; a
-- tier made by an admin gets the free tier's. Users already over their new
-- quota keep their records; their new ones keep no output, and their
-- background runs are refused, until retention frees enough.
ALTER TABLE tiers ADD COLUMN max_stored_run_bytes INTEGER NOT NULL DEFAULT 33554432;
UPDATE tiers SET max_stored_run_bytes = 1073741824 WHERE name = 'basic';
UPDATE tiers SET max_stored_run_bytes = 10737418240 WHERE name = 'pro';
UPDATE tiers SET max_stored_run_bytes = 107374182400 WHERE name = 'enterprise';
