// Alike on purpose: internal/sqlite/user.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

const userColumns = `id, email, role, tier, created_at, disabled`

func scanUser(row pgx.Row, extra ...any) (*wasmwiz.User, error) {
	var u wasmwiz.User
	var role string
	if err := row.Scan(append([]any{&u.ID, &u.Email, &role, &u.Tier, &u.CreatedAt, &u.Disabled}, extra...)...); err != nil {
		return nil, err
	}
	u.Role = wasmwiz.Role(role)
	u.CreatedAt = u.CreatedAt.UTC()
	return &u, nil
}

func validRole(r wasmwiz.Role) bool { return r == wasmwiz.RoleUser || r == wasmwiz.RoleAdmin }

// CreateUser creates u and sets its ID and CreatedAt; the email is stored
// normalized. An empty Role means RoleUser and an empty Tier the free tier.
// EFORBIDDEN for non-admins, ECONFLICT for a taken email (any case),
// EINVALID for a bad email, role or unknown tier.
func (db *DB) CreateUser(ctx context.Context, u *wasmwiz.User) error {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return err
	}
	return createUser(ctx, db.pool, db.now(), u)
}

// querier is what both a pool and a transaction offer.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func createUser(ctx context.Context, q querier, now time.Time, u *wasmwiz.User) error {
	email, err := wasmwiz.NormalizeEmail(u.Email)
	if err != nil {
		return err
	}
	if u.Role == "" {
		u.Role = wasmwiz.RoleUser
	}
	if !validRole(u.Role) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid role %q: want user or admin", u.Role)
	}
	if u.Tier == "" {
		u.Tier = wasmwiz.TierFree
	}
	if !wasmwiz.ValidTierName(u.Tier) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown tier %q", u.Tier)
	}
	// The tier is checked in the statement itself: no row means no tier.
	err = q.QueryRow(ctx, `INSERT INTO users (email, role, tier, created_at, disabled)
		SELECT $1, $2, name, $4, $5 FROM tiers WHERE name = $3
		RETURNING id, created_at`, email, string(u.Role), u.Tier, now, u.Disabled).Scan(&u.ID, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown tier %q", u.Tier)
	}
	if err != nil {
		if wasmwiz.ErrorCode(dbError(err, "")) == wasmwiz.ECONFLICT {
			return wasmwiz.Errorf(wasmwiz.ECONFLICT, "a user with email %q exists", email)
		}
		return dbError(err, "create user")
	}
	u.Email = email
	u.CreatedAt = u.CreatedAt.UTC()
	return nil
}

// FindUserByID returns a user. EUNAUTHORIZED without a caller; ENOTFOUND
// when it does not exist or, for non-admins, is not the caller.
func (db *DB) FindUserByID(ctx context.Context, id int64) (*wasmwiz.User, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	u, err := scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users
		WHERE id = $1 AND ($2 OR id = $3)`, id, caller.IsAdmin(), caller.ID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "user not found")
	}
	if err != nil {
		return nil, dbError(err, "find user")
	}
	return u, nil
}

// FindUsers lists users ordered by id, with the matching count up to
// wasmwiz.MaxListTotal. Filter.Email matches the normalized email exactly.
// EUNAUTHORIZED without a caller, EFORBIDDEN for non-admins, EINVALID for a
// filter Validate refuses.
func (db *DB) FindUsers(ctx context.Context, filter wasmwiz.UserFilter) ([]*wasmwiz.User, wasmwiz.ListTotal, error) {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	email := ""
	if filter.Email != "" {
		email = normalizeLoose(filter.Email)
	}
	q := findQuery{what: "users", columns: userColumns, table: "users", where: `WHERE ($1 = '' OR email = $1)`, order: "id",
		args: []any{email}}
	return findPage(ctx, db, q, filter.Limit, filter.Offset, func(row pgx.Row) (*wasmwiz.User, error) {
		return scanUser(row)
	})
}

// normalizeLoose lower-cases and trims an email used as a filter, without
// refusing odd shapes (they simply match nothing).
func normalizeLoose(s string) string {
	if e, err := wasmwiz.NormalizeEmail(s); err == nil {
		return e
	}
	return s
}

// UpdateUser applies upd and returns the user. EUNAUTHORIZED without a
// caller, EFORBIDDEN for non-admins, ENOTFOUND for an unknown id, EINVALID
// for an unknown tier or role.
func (db *DB) UpdateUser(ctx context.Context, id int64, upd wasmwiz.UserUpdate) (*wasmwiz.User, error) {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	if upd.Tier != nil && !wasmwiz.ValidTierName(*upd.Tier) {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "unknown tier %q", *upd.Tier)
	}
	var role *string
	if upd.Role != nil {
		if !validRole(*upd.Role) {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid role %q: want user or admin", *upd.Role)
		}
		r := string(*upd.Role)
		role = &r
	}
	if upd.Tier != nil {
		var exists bool
		if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tiers WHERE name = $1)`, *upd.Tier).Scan(&exists); err != nil {
			return nil, dbError(err, "update user")
		}
		if !exists {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "unknown tier %q", *upd.Tier)
		}
	}
	var u *wasmwiz.User
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var admins []int64
		if upd.Role != nil || upd.Disabled != nil {
			// Lock the active admins, so that two admins demoting each
			// other at once cannot both see the other one stay.
			rows, err := tx.Query(ctx, `SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE`)
			if err != nil {
				return err
			}
			if admins, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return err
			}
		}
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `UPDATE users SET
				tier = COALESCE($2, tier), role = COALESCE($3, role), disabled = COALESCE($4, disabled)
			WHERE id = $1 RETURNING `+userColumns, id, upd.Tier, role, upd.Disabled))
		if errors.Is(err, pgx.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "user not found")
		}
		if err != nil {
			return err
		}
		return wasmwiz.CheckLastAdmin(admins, u)
	})
	if err != nil {
		// A tier deleted between the check and the update lands here.
		return nil, dbError(err, "update user")
	}
	return u, nil
}

// CountUsers returns how many users exist. It needs no caller.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, dbError(err, "count users")
	}
	return n, nil
}
