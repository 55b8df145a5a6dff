-- The cache epoch moves only when a row really changes what a replica
-- caches (docs/RATIONALE.md, "Caches and the cache epoch"). Migration
-- 0002's UPDATE OF triggers fired for every row whose listed column was
-- SET, also to the value it had: revoking a revoked key, or making a
-- public module public, emptied every replica's caches for every tenant.
-- Each trigger now fires only for a row whose cached columns changed, and
-- a deleted API key counts only when it was not revoked: a revoked key
-- authenticates nowhere, cached or not, and its revocation moved the epoch
-- already (the cleanup of old keys when a key is created deletes such
-- keys). Tiers keep their triggers of 0002: only admins write them, and
-- every column of a tier is cached.

DROP TRIGGER api_keys_cache_epoch_update;
DROP TRIGGER api_keys_cache_epoch_delete;
DROP TRIGGER users_cache_epoch_update;
DROP TRIGGER modules_cache_epoch_update;

-- An API key: revoked, its expiry changed, or deleted unrevoked.
CREATE TRIGGER api_keys_cache_epoch_update AFTER UPDATE OF revoked_at, expires_at, user_id, digest ON api_keys
	WHEN OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at
		OR OLD.user_id IS NOT NEW.user_id OR OLD.digest IS NOT NEW.digest
BEGIN
	UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
CREATE TRIGGER api_keys_cache_epoch_delete AFTER DELETE ON api_keys
	WHEN OLD.revoked_at IS NULL
BEGIN
	UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

-- A user: disabled or enabled, another role or tier (deletes: 0002).
CREATE TRIGGER users_cache_epoch_update AFTER UPDATE OF disabled, role, tier, email ON users
	WHEN OLD.disabled IS NOT NEW.disabled OR OLD.role IS NOT NEW.role
		OR OLD.tier IS NOT NEW.tier OR OLD.email IS NOT NEW.email
BEGIN
	UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

-- A stored module: made public or private, renamed, given to another owner
-- (deletes: 0002, which fire only for a row deleted).
CREATE TRIGGER modules_cache_epoch_update AFTER UPDATE OF public, name, owner_id, sha256, size_bytes ON modules
	WHEN OLD.public IS NOT NEW.public OR OLD.name IS NOT NEW.name OR OLD.owner_id IS NOT NEW.owner_id
		OR OLD.sha256 IS NOT NEW.sha256 OR OLD.size_bytes IS NOT NEW.size_bytes
BEGIN
	UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
