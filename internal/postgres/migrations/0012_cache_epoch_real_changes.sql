-- The cache epoch moves only when a row really changes what a replica
-- caches (docs/RATIONALE.md, "Caches and the cache epoch"). Migration
-- 0002's statement triggers fired for every UPDATE and DELETE, also of no
-- row or to the same values: revoking a revoked key, or deleting or
-- changing a module that is missing or another user's, emptied every
-- replica's caches for every tenant.
--
-- Updates: one row trigger each, whose WHEN skips an unchanged row before
-- any function runs. Deletes: one statement trigger each over the deleted
-- rows, so that a delete of many rows raises the epoch once, and a delete
-- of none not at all. Tiers keep their triggers of 0002: only admins write
-- them, and every column of a tier is cached.

DROP TRIGGER api_keys_cache_epoch ON api_keys;
DROP TRIGGER users_cache_epoch ON users;
DROP TRIGGER modules_cache_epoch ON modules;

-- bump_cache_epoch_if_gone raises the epoch when the statement deleted a
-- row (its transition table gone).
CREATE FUNCTION bump_cache_epoch_if_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM gone) THEN
		UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1;
	END IF;
	RETURN NULL;
END
$$;

-- bump_cache_epoch_if_live_key_gone raises the epoch when the statement
-- deleted a key that was not revoked. A revoked key authenticates nowhere,
-- cached or not, and its revocation moved the epoch already: deleting it
-- (the cleanup of old keys when a key is created) changes nothing cached.
CREATE FUNCTION bump_cache_epoch_if_live_key_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM gone WHERE revoked_at IS NULL) THEN
		UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1;
	END IF;
	RETURN NULL;
END
$$;

-- An API key: revoked, its expiry changed, or deleted unrevoked.
CREATE TRIGGER api_keys_cache_epoch_update AFTER UPDATE OF revoked_at, expires_at, user_id, digest ON api_keys
	FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
		OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.digest IS DISTINCT FROM NEW.digest)
	EXECUTE FUNCTION bump_cache_epoch();
CREATE TRIGGER api_keys_cache_epoch_delete AFTER DELETE ON api_keys REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_epoch_if_live_key_gone();

-- A user: disabled or enabled, another role or tier, or deleted.
CREATE TRIGGER users_cache_epoch_update AFTER UPDATE OF disabled, role, tier, email ON users
	FOR EACH ROW WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled OR OLD.role IS DISTINCT FROM NEW.role
		OR OLD.tier IS DISTINCT FROM NEW.tier OR OLD.email IS DISTINCT FROM NEW.email)
	EXECUTE FUNCTION bump_cache_epoch();
CREATE TRIGGER users_cache_epoch_delete AFTER DELETE ON users REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_epoch_if_gone();

-- A stored module: made public or private, renamed, given to another owner,
-- or deleted. Its run counters (run_count, last_run_at) and description do
-- not count.
CREATE TRIGGER modules_cache_epoch_update AFTER UPDATE OF public, name, owner_id, sha256, size_bytes ON modules
	FOR EACH ROW WHEN (OLD.public IS DISTINCT FROM NEW.public OR OLD.name IS DISTINCT FROM NEW.name
		OR OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.sha256 IS DISTINCT FROM NEW.sha256
		OR OLD.size_bytes IS DISTINCT FROM NEW.size_bytes)
	EXECUTE FUNCTION bump_cache_epoch();
CREATE TRIGGER modules_cache_epoch_delete AFTER DELETE ON modules REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_epoch_if_gone();
