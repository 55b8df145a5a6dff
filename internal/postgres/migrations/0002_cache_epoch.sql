-- The cache epoch (docs/RATIONALE.md, "Caches and the cache epoch"): one
-- number that grows in the same transaction as every change to what a
-- replica caches for the execute path, so that the change cannot commit
-- without it. Replicas compare it with what they cached under (through
-- Redis, or in process) and read again what changed.

CREATE TABLE cache_epoch (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	epoch BIGINT  NOT NULL
);
INSERT INTO cache_epoch (id, epoch) VALUES (1, 1);

CREATE FUNCTION bump_cache_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1;
	RETURN NULL;
END
$$;

-- An API key: revoked, its expiry changed, or deleted.
CREATE TRIGGER api_keys_cache_epoch AFTER UPDATE OF revoked_at, expires_at, user_id, digest OR DELETE ON api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_epoch();
-- A user: disabled or enabled, another role or tier, or deleted.
CREATE TRIGGER users_cache_epoch AFTER UPDATE OF disabled, role, tier, email OR DELETE ON users
	FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_epoch();
-- A tier: created, changed (PutTier's upsert) or deleted.
CREATE TRIGGER tiers_cache_epoch AFTER INSERT OR UPDATE OR DELETE ON tiers
	FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_epoch();
-- A stored module: made public or private, renamed, given to another owner,
-- or deleted. Its run counters (run_count, last_run_at) do not count.
CREATE TRIGGER modules_cache_epoch AFTER UPDATE OF public, name, owner_id, sha256, size_bytes OR DELETE ON modules
	FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_epoch();
