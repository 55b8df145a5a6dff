package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

// BootstrapTier is the tier of the admin that Bootstrap creates.
const BootstrapTier = wasmwiz.TierEnterprise

// Bootstrap creates the first admin, with email, and a key for it when the
// users table is empty, and returns them with created true; the plaintext
// key exists only in this answer. On a database with users it does nothing
// and returns created false. It needs no caller. Replicas calling it
// together create one admin: the check and the inserts run in one
// transaction under an advisory lock. EINVALID for a bad email,
// EUNAVAILABLE when the database does not answer.
func (db *DB) Bootstrap(ctx context.Context, email string) (*wasmwiz.User, string, bool, error) {
	if _, err := wasmwiz.NormalizeEmail(email); err != nil {
		return nil, "", false, err
	}
	var (
		user    *wasmwiz.User
		key     string
		created bool
	)
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('wasmwiz.bootstrap.' || current_schema()))`); err != nil {
			return err
		}
		var any bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users)`).Scan(&any); err != nil {
			return err
		}
		if any {
			return nil
		}
		now := db.now()
		u := &wasmwiz.User{Email: email, Role: wasmwiz.RoleAdmin, Tier: BootstrapTier}
		if err := createUser(ctx, tx, now, u); err != nil {
			return err
		}
		_, plaintext, err := createAPIKey(ctx, tx, now, u, u.ID, "bootstrap", nil)
		if err != nil {
			return err
		}
		user, key, created = u, plaintext, true
		return nil
	})
	if err != nil {
		return nil, "", false, dbError(err, "bootstrap")
	}
	return user, key, created, nil
}
