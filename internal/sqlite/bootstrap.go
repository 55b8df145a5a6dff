package sqlite

import (
	"context"
	"database/sql"

	"github.com/wasmwiz/wasmwiz"
)

// BootstrapKeyName names the key Bootstrap creates.
const BootstrapKeyName = "bootstrap"

// Bootstrap creates the first admin (enterprise tier) and one key for it
// when the users table is empty, and returns the key's plaintext, which
// exists nowhere else: serve prints it once. On a database with any user it
// does nothing and returns created false. The check and the insert share one
// write transaction, so concurrent callers (replicas starting together)
// create one admin. EINVALID for a bad email. It needs no caller.
func (db *DB) Bootstrap(ctx context.Context, email string) (user *wasmwiz.User, key string, created bool, err error) {
	if _, err := wasmwiz.NormalizeEmail(email); err != nil {
		return nil, "", false, err
	}
	err = db.write(ctx, "bootstrap", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		now := db.Now()
		u := &wasmwiz.User{Email: email, Role: wasmwiz.RoleAdmin, Tier: wasmwiz.TierEnterprise}
		if err := createUser(ctx, tx, now, u); err != nil {
			return err
		}
		_, plain, err := createAPIKey(ctx, tx, now, u, u.ID, BootstrapKeyName, nil)
		if err != nil {
			return err
		}
		user, key, created = u, plain, true
		return nil
	})
	if err != nil {
		return nil, "", false, err
	}
	return user, key, created, nil
}
