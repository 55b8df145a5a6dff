// Alike on purpose: internal/postgres/apikey.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// lastUsedEvery is how stale api_keys.last_used_at may get: a key in
// constant use costs one write per minute, not one per request.
const lastUsedEvery = time.Minute

const apiKeyColumns = `k.id, k.user_id, k.name, k.prefix, k.digest, k.created_at, k.last_used_at, k.expires_at, k.revoked_at`

func scanAPIKey(row interface{ Scan(...any) error }, extra ...any) (*wasmwiz.APIKey, error) {
	var k wasmwiz.APIKey
	var created int64
	var lastUsed, expires, revoked sql.NullInt64
	dest := append([]any{&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.Digest, &created, &lastUsed, &expires, &revoked}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	k.CreatedAt = fromMS(created)
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = fromNullMS(lastUsed), fromNullMS(expires), fromNullMS(revoked)
	return &k, nil
}

// CreateAPIKey creates a key for userID (the caller's own unless the caller
// is an admin) and returns it with its plaintext, which is never stored:
// the database keeps its SHA-256 digest and a short prefix for listings.
// ENOTFOUND for another user's id (non-admins) or an unknown user, EINVALID
// for a name over 100 bytes or an expiry not after now, EUNAUTHORIZED
// without a caller, ECONFLICT for a user at wasmwiz.MaxActiveAPIKeys.
func (db *DB) CreateAPIKey(ctx context.Context, userID int64, name string, expiresAt *time.Time) (*wasmwiz.APIKey, string, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, "", err
	}
	var k *wasmwiz.APIKey
	var plain string
	err = db.write(ctx, "create API key", func(tx *sql.Tx) error {
		var err error
		k, plain, err = createAPIKey(ctx, tx, db.Now(), caller, userID, name, expiresAt)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return k, plain, nil
}

// activeKey is the condition on api_keys of a key that can authenticate at
// the time of its one parameter (unix ms).
const activeKey = `(revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?))`

func createAPIKey(ctx context.Context, tx *sql.Tx, now time.Time, caller *wasmwiz.User, userID int64, name string, expiresAt *time.Time) (*wasmwiz.APIKey, string, error) {
	name = strings.TrimSpace(name)
	if err := wasmwiz.ValidateKeyName(name); err != nil {
		return nil, "", err
	}
	if expiresAt != nil {
		e := expiresAt.UTC().Truncate(time.Millisecond)
		if !e.After(now) {
			return nil, "", wasmwiz.Errorf(wasmwiz.EINVALID, "key expiry %s is not in the future", e.Format(time.RFC3339))
		}
		expiresAt = &e
	}
	notFound := wasmwiz.Errorf(wasmwiz.ENOTFOUND, "user %d not found", userID)
	if !caller.IsAdmin() && userID != caller.ID {
		return nil, "", notFound
	}
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ? AND (? OR id = ?)`,
		userID, caller.IsAdmin(), caller.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", notFound
	}
	if err != nil {
		return nil, "", err
	}
	// The single writer's transaction: key creations of one user queue and
	// each counts what the one before created.
	var active, all int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(`+activeKey+`), 0), COUNT(*) FROM api_keys WHERE user_id = ?`,
		ms(now), userID).Scan(&active, &all); err != nil {
		return nil, "", err
	}
	if err := wasmwiz.CheckActiveAPIKeys(userID, active); err != nil {
		return nil, "", err
	}
	if all-active > wasmwiz.KeptInactiveAPIKeys {
		// Deleting revoked keys leaves the cache epoch (migration 0012); an
		// expired key that was never revoked raises it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM api_keys WHERE id IN (SELECT id FROM api_keys
			WHERE user_id = ? AND NOT (`+activeKey+`) ORDER BY COALESCE(revoked_at, expires_at) DESC, id DESC LIMIT -1 OFFSET ?)`,
			userID, ms(now), wasmwiz.KeptInactiveAPIKeys); err != nil {
			return nil, "", err
		}
	}
	plain, err := wasmwiz.GenerateAPIKey()
	if err != nil {
		return nil, "", err
	}
	k := &wasmwiz.APIKey{UserID: userID, Name: name, Prefix: plain[:wasmwiz.APIKeyVisiblePrefixLen],
		Digest: wasmwiz.HashAPIKey(plain), CreatedAt: now, ExpiresAt: expiresAt}
	err = tx.QueryRowContext(ctx, `INSERT INTO api_keys (user_id, name, prefix, digest, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, k.UserID, k.Name, k.Prefix, k.Digest, ms(now), msPtr(expiresAt)).Scan(&k.ID)
	if err != nil {
		return nil, "", err
	}
	return k, plain, nil
}

// authenticateSQL reads the key, its user and the user's tier in one round
// trip. The tier is a LEFT JOIN so that a user whose tier row were missing
// still authenticates (without TierLimits) and gets the lookup's ENOTFOUND
// later, as before the tier was read here.
var authenticateSQL = `SELECT ` + apiKeyColumns + `,
		u.id, u.email, u.role, u.tier, u.created_at, u.disabled,
		t.name, ` + wasmwiz.TierColumns("t.") + `, t.updated_at
	FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN tiers t ON t.name = u.tier
	WHERE k.digest = ? AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?) AND u.disabled = 0`

// Authenticate finds the active key with this plaintext, by its digest, and
// its enabled user with the user's current tier and role, and the tier's
// current limits in User.TierLimits, all in one query. EUNAUTHORIZED for
// anything else (unknown, malformed, revoked, expired, disabled user), never
// saying which; EUNAVAILABLE when the database does not answer. It needs no
// caller.
//
// last_used_at is written only when it is unset or more than a minute old,
// read in the same query that finds the key; the UPDATE repeats that
// condition, so replicas racing at the minute's edge write once.
func (db *DB) Authenticate(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
	denied := wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "invalid API key")
	if !wasmwiz.LooksLikeAPIKey(plaintext) {
		return nil, nil, denied
	}
	now := db.Now()
	var u wasmwiz.User
	var userCreated int64
	var tier tierRow
	k, err := scanAPIKey(db.queryRow(ctx, &db.authStmt, authenticateSQL, wasmwiz.HashAPIKey(plaintext), ms(now)),
		append([]any{&u.ID, &u.Email, &u.Role, &u.Tier, &userCreated, &u.Disabled}, tier.dest()...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, denied
	}
	if err != nil {
		return nil, nil, dbError(err, "authenticate")
	}
	u.CreatedAt = fromMS(userCreated)
	u.TierLimits = tier.tier()
	stale := now.Add(-lastUsedEvery)
	if k.LastUsedAt == nil || k.LastUsedAt.Before(stale) {
		// A lost write costs only a stale timestamp: it does not fail the
		// request.
		res, err := db.writer.ExecContext(ctx, `UPDATE api_keys SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`, ms(now), k.ID, ms(stale))
		if err == nil {
			if n, _ := res.RowsAffected(); n == 1 {
				k.LastUsedAt = &now
			}
		}
	}
	return &u, k, nil
}

// FindAPIKeys lists keys, newest first, with the matching count up to
// wasmwiz.MaxListTotal. Admins see the keys of filter.UserID, every user's
// when it is 0; other callers always see only their own. Revoked keys only
// with IncludeRevoked. EUNAUTHORIZED without a caller, EINVALID for an
// offset past wasmwiz.MaxListOffset.
func (db *DB) FindAPIKeys(ctx context.Context, filter wasmwiz.APIKeyFilter) ([]*wasmwiz.APIKey, wasmwiz.ListTotal, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	var where []string
	var args []any
	switch {
	case !caller.IsAdmin():
		where, args = append(where, `k.user_id = ?`), append(args, caller.ID)
	case filter.UserID != 0:
		where, args = append(where, `k.user_id = ?`), append(args, filter.UserID)
	}
	if !filter.IncludeRevoked {
		where = append(where, `k.revoked_at IS NULL`)
	}
	cond := `1`
	if len(where) > 0 {
		cond = strings.Join(where, ` AND `)
	}
	q := findQuery{what: "API keys", columns: apiKeyColumns, table: "api_keys k", where: cond, order: "k.created_at DESC, k.id DESC", args: args}
	return findPage(ctx, db, q, filter.Limit, filter.Offset, func(row interface{ Scan(...any) error }) (*wasmwiz.APIKey, error) {
		return scanAPIKey(row)
	})
}

// RevokeAPIKey revokes a key of the caller (any key, for admins) and
// reports whether this call revoked it. Revoking a revoked key succeeds,
// changes nothing (false) and keeps the first time. ENOTFOUND for another
// user's key or no key, EUNAUTHORIZED without a caller.
func (db *DB) RevokeAPIKey(ctx context.Context, id int64) (bool, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return false, err
	}
	var revoked bool
	err = db.write(ctx, "revoke API key", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ?
			WHERE id = ? AND (? OR user_id = ?) AND revoked_at IS NULL`, ms(db.Now()), id, caller.IsAdmin(), caller.ID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n > 0 {
			revoked = true
			return nil
		}
		var got int64
		err = tx.QueryRowContext(ctx, `SELECT id FROM api_keys WHERE id = ? AND (? OR user_id = ?)`,
			id, caller.IsAdmin(), caller.ID).Scan(&got)
		if errors.Is(err, sql.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "API key %d not found", id)
		}
		return err
	})
	return revoked, err
}
