// Alike on purpose: internal/sqlite/apikey.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

const apiKeyColumns = `id, user_id, name, prefix, digest, created_at, last_used_at, expires_at, revoked_at`

func scanAPIKey(row pgx.Row, extra ...any) (*wasmwiz.APIKey, error) {
	var k wasmwiz.APIKey
	dest := append([]any{&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.Digest, &k.CreatedAt,
		&k.LastUsedAt, &k.ExpiresAt, &k.RevokedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	k.CreatedAt = k.CreatedAt.UTC()
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = utcPtr(k.LastUsedAt), utcPtr(k.ExpiresAt), utcPtr(k.RevokedAt)
	return &k, nil
}

// CreateAPIKey creates a key for userID, fills k and returns the plaintext,
// which is never stored. Non-admins may create keys only for themselves.
// EUNAUTHORIZED without a caller, ENOTFOUND for an unknown user or another
// user's id (non-admins), EINVALID for a name over 100 characters, ECONFLICT
// for a user at wasmwiz.MaxActiveAPIKeys.
func (db *DB) CreateAPIKey(ctx context.Context, userID int64, name string, expiresAt *time.Time) (*wasmwiz.APIKey, string, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, "", err
	}
	if err := wasmwiz.ValidateKeyName(name); err != nil {
		return nil, "", err
	}
	var k *wasmwiz.APIKey
	var plaintext string
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		k, plaintext, err = createAPIKey(ctx, tx, db.now(), caller, userID, name, expiresAt)
		return err
	})
	if err != nil {
		return nil, "", dbError(err, "create key")
	}
	return k, plaintext, nil
}

// activeKey is the condition on api_keys of a key that can authenticate at
// the time $2.
const activeKey = `revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`

// createAPIKey creates the key in tx, which it needs for the lock on the
// user's row.
func createAPIKey(ctx context.Context, tx pgx.Tx, now time.Time, caller *wasmwiz.User, userID int64, name string, expiresAt *time.Time) (*wasmwiz.APIKey, string, error) {
	plaintext, err := wasmwiz.GenerateAPIKey()
	if err != nil {
		return nil, "", err
	}
	if expiresAt != nil {
		e := expiresAt.UTC().Truncate(time.Microsecond)
		if !e.After(now) {
			return nil, "", wasmwiz.Errorf(wasmwiz.EINVALID, "a key must expire after now")
		}
		expiresAt = &e
	}
	// The owner must exist and be the caller, or any user when an admin
	// asks. Its row is locked until commit, so that key creations of one
	// user queue here and each counts what the one before created; NO KEY
	// leaves rows that refer to the user free.
	var one int
	err = tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 AND ($2 OR id = $3) FOR NO KEY UPDATE`,
		userID, caller.IsAdmin(), caller.ID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", wasmwiz.Errorf(wasmwiz.ENOTFOUND, "user not found")
	}
	if err != nil {
		return nil, "", dbError(err, "create key")
	}
	var active, all int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE `+activeKey+`), count(*) FROM api_keys WHERE user_id = $1`,
		userID, now).Scan(&active, &all); err != nil {
		return nil, "", dbError(err, "create key")
	}
	if err := wasmwiz.CheckActiveAPIKeys(userID, active); err != nil {
		return nil, "", err
	}
	if all-active > wasmwiz.KeptInactiveAPIKeys {
		// Only when there is something to delete. Deleting revoked keys
		// leaves the cache epoch (migration 0012); an expired key that was
		// never revoked raises it once per statement.
		if _, err := tx.Exec(ctx, `DELETE FROM api_keys WHERE id IN (SELECT id FROM api_keys
			WHERE user_id = $1 AND NOT (`+activeKey+`) ORDER BY COALESCE(revoked_at, expires_at) DESC, id DESC OFFSET $3)`,
			userID, now, wasmwiz.KeptInactiveAPIKeys); err != nil {
			return nil, "", dbError(err, "create key")
		}
	}
	k, err := scanAPIKey(tx.QueryRow(ctx, `INSERT INTO api_keys (user_id, name, prefix, digest, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+apiKeyColumns,
		userID, name, plaintext[:wasmwiz.APIKeyVisiblePrefixLen], wasmwiz.HashAPIKey(plaintext), now, expiresAt))
	if err != nil {
		return nil, "", dbError(err, "create key")
	}
	return k, plaintext, nil
}

// authenticateSQL reads the key, its user and the user's tier in one round
// trip.
var authenticateSQL = `SELECT k.id, k.user_id, k.name, k.prefix, k.digest,
		k.created_at, k.last_used_at, k.expires_at, k.revoked_at,
		u.id, u.email, u.role, u.tier, u.created_at, u.disabled,
		t.name, ` + wasmwiz.TierColumns("t.") + `, t.updated_at
	FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN tiers t ON t.name = u.tier
	WHERE k.digest = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2)
		AND NOT u.disabled`

// Authenticate finds the active key with this plaintext and its enabled
// user, with the user's current tier in User.TierLimits, all in one query
// (the tier is a LEFT JOIN: a missing tier row leaves TierLimits nil and the
// lookup's ENOTFOUND to the executor, as before). It needs no caller. EUNAUTHORIZED for anything that does not
// authenticate (malformed, unknown, revoked, expired, disabled user), never
// saying which; EUNAVAILABLE when the database does not answer.
//
// last_used_at is written at most once a minute per key and replica, so
// that authentication is not a write per request.
func (db *DB) Authenticate(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
	denied := wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "invalid API key")
	if !wasmwiz.LooksLikeAPIKey(plaintext) {
		return nil, nil, denied
	}
	now := db.now()
	var u wasmwiz.User
	var role string
	var tier tierRow
	k, err := scanAPIKey(db.pool.QueryRow(ctx, authenticateSQL, wasmwiz.HashAPIKey(plaintext), now),
		append([]any{&u.ID, &u.Email, &role, &u.Tier, &u.CreatedAt, &u.Disabled}, tier.dest()...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, denied
	}
	if err != nil {
		return nil, nil, dbError(err, "authenticate")
	}
	u.Role = wasmwiz.Role(role)
	u.CreatedAt = u.CreatedAt.UTC()
	u.TierLimits = tier.tier()
	if db.shouldMarkUsed(k.ID, now) {
		// Losing this write costs nothing but a stale timestamp: an error
		// here does not fail the request.
		tag, err := db.pool.Exec(ctx, `UPDATE api_keys SET last_used_at = $2
			WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)`,
			k.ID, now, now.Add(-lastUsedEvery))
		if err == nil && tag.RowsAffected() == 1 {
			k.LastUsedAt = &now
		}
	}
	return &u, k, nil
}

// shouldMarkUsed reports whether this replica should write last_used_at of
// key id now, and notes that it will.
func (db *DB) shouldMarkUsed(id int64, now time.Time) bool {
	db.lastUsedMu.Lock()
	defer db.lastUsedMu.Unlock()
	if last, ok := db.lastUsed[id]; ok && now.Sub(last) < lastUsedEvery {
		return false
	}
	if len(db.lastUsed) > 100_000 {
		// Bounded memory: forgetting only costs an extra conditional write.
		clear(db.lastUsed)
	}
	db.lastUsed[id] = now
	return true
}

// FindAPIKeys lists keys, newest first, with the matching count up to
// wasmwiz.MaxListTotal. Admins see the keys of filter.UserID (every key
// when it is 0); other callers always see only their own. EUNAUTHORIZED
// without a caller, EINVALID for an offset past wasmwiz.MaxListOffset.
func (db *DB) FindAPIKeys(ctx context.Context, filter wasmwiz.APIKeyFilter) ([]*wasmwiz.APIKey, wasmwiz.ListTotal, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	userID := caller.ID
	if caller.IsAdmin() {
		userID = filter.UserID
	}
	const where = `WHERE ($1 = 0 OR user_id = $1) AND ($2 OR user_id = $3)
		AND ($4 OR revoked_at IS NULL)`
	q := findQuery{what: "keys", columns: apiKeyColumns, table: "api_keys", where: where, order: "created_at DESC, id DESC",
		args: []any{userID, caller.IsAdmin(), caller.ID, filter.IncludeRevoked}}
	return findPage(ctx, db, q, filter.Limit, filter.Offset, func(row pgx.Row) (*wasmwiz.APIKey, error) {
		return scanAPIKey(row)
	})
}

// RevokeAPIKey revokes a key of the caller (any key, for admins) and
// reports whether this call revoked it. Revoking a revoked key succeeds,
// changes nothing (false) and keeps the first revocation time.
// EUNAUTHORIZED without a caller, ENOTFOUND for an unknown key or another
// user's key.
func (db *DB) RevokeAPIKey(ctx context.Context, id int64) (bool, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return false, err
	}
	// Only an unrevoked key is written: a waiting revocation of the same key
	// finds it revoked once the first commits, and writes nothing.
	var got int64
	err = db.pool.QueryRow(ctx, `UPDATE api_keys SET revoked_at = $2
		WHERE id = $1 AND ($3 OR user_id = $4) AND revoked_at IS NULL RETURNING id`,
		id, db.now(), caller.IsAdmin(), caller.ID).Scan(&got)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, dbError(err, "revoke key")
	}
	err = db.pool.QueryRow(ctx, `SELECT id FROM api_keys WHERE id = $1 AND ($2 OR user_id = $3)`,
		id, caller.IsAdmin(), caller.ID).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "API key not found")
	}
	return false, dbError(err, "revoke key")
}
