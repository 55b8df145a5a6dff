-- Tier limit async_timeout_ms: the wall time of a background run. Frozen
-- SQL: the defaults of the four default tiers are written here.
ALTER TABLE tiers ADD COLUMN async_timeout_ms INTEGER NOT NULL DEFAULT 30000;
UPDATE tiers SET async_timeout_ms = CASE name
	WHEN 'free'       THEN 30000
	WHEN 'basic'      THEN 300000
	WHEN 'pro'        THEN 900000
	WHEN 'enterprise' THEN 3600000
	ELSE 30000 END;
