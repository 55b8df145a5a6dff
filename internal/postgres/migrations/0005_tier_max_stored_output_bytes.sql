-- Tier limit max_stored_output_bytes: the stdout and stderr (each) kept with
-- a run's record. Frozen SQL: the defaults of the four default tiers are
-- written here, not read from code.
ALTER TABLE tiers ADD COLUMN max_stored_output_bytes BIGINT NOT NULL DEFAULT 65536;
UPDATE tiers SET max_stored_output_bytes = CASE name
    WHEN 'free'       THEN 65536
    WHEN 'basic'      THEN 262144
    WHEN 'pro'        THEN 1048576
    WHEN 'enterprise' THEN 4194304
    ELSE 65536 END;
