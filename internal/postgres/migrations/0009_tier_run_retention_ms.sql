-- Tier limit run_retention_ms: how long a tier's runs are kept (they were
-- all kept for WASMWIZ_RETENTION, 30 days by default). Frozen SQL: the
-- defaults of the four default tiers are written here.
ALTER TABLE tiers ADD COLUMN run_retention_ms BIGINT NOT NULL DEFAULT 2592000000;
UPDATE tiers SET run_retention_ms = CASE name
    WHEN 'free'       THEN 604800000
    WHEN 'basic'      THEN 2592000000
    WHEN 'pro'        THEN 7776000000
    WHEN 'enterprise' THEN 31536000000
    ELSE 2592000000 END;
