// Alike on purpose: internal/postgres/user.go is this file for PostgreSQL (one schema
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

const userColumns = `id, email, role, tier, created_at, disabled`

func scanUser(row interface{ Scan(...any) error }) (*wasmwiz.User, error) {
	var u wasmwiz.User
	var created int64
	if err := row.Scan(&u.ID, &u.Email, &u.Role, &u.Tier, &created, &u.Disabled); err != nil {
		return nil, err
	}
	u.CreatedAt = fromMS(created)
	return &u, nil
}

func validRole(r wasmwiz.Role) bool { return r == wasmwiz.RoleUser || r == wasmwiz.RoleAdmin }

// CreateUser creates u (Email, Role, Tier) and sets its ID, CreatedAt and
// normalized Email. An empty Role is user, an empty Tier free. Admin only
// (EFORBIDDEN); ECONFLICT for a taken email in any case, EINVALID for a bad
// email, role or unknown tier.
func (db *DB) CreateUser(ctx context.Context, u *wasmwiz.User) error {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return err
	}
	return db.write(ctx, "create user", func(tx *sql.Tx) error {
		return createUser(ctx, tx, db.Now(), u)
	})
}

func createUser(ctx context.Context, tx *sql.Tx, now time.Time, u *wasmwiz.User) error {
	email, err := wasmwiz.NormalizeEmail(u.Email)
	if err != nil {
		return err
	}
	role, tier := u.Role, u.Tier
	if role == "" {
		role = wasmwiz.RoleUser
	}
	if tier == "" {
		tier = wasmwiz.TierFree
	}
	if !wasmwiz.ValidTierName(tier) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown tier %q", tier)
	}
	if !validRole(role) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown role %q: want user or admin", role)
	}
	if err := tierExists(ctx, tx, tier); err != nil {
		return err
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO users (email, role, tier, created_at, disabled)
		VALUES (?, ?, ?, ?, 0) RETURNING id`, email, role, tier, ms(now)).Scan(&id)
	if wasmwiz.ErrorCode(dbError(err, "")) == wasmwiz.ECONFLICT {
		return wasmwiz.Errorf(wasmwiz.ECONFLICT, "a user with email %s exists", email)
	}
	if err != nil {
		return err
	}
	u.ID, u.Email, u.Role, u.Tier, u.CreatedAt, u.Disabled = id, email, role, tier, now, false
	return nil
}

func tierExists(ctx context.Context, tx *sql.Tx, name string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM tiers WHERE name = ?`, name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown tier %q", name)
	}
	return err
}

// FindUserByID returns a user: any for admins, only the caller itself for
// others. ENOTFOUND otherwise, EUNAUTHORIZED without a caller.
func (db *DB) FindUserByID(ctx context.Context, id int64) (*wasmwiz.User, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	u, err := scanUser(db.reader.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE id = ? AND (? OR id = ?)`, id, caller.IsAdmin(), caller.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "user %d not found", id)
	}
	return u, dbError(err, "find user")
}

// FindUsers lists users ordered by id, with the matching count up to
// wasmwiz.MaxListTotal. The email filter matches whatever its case. Admin
// only (EFORBIDDEN); EINVALID for a filter Validate refuses.
func (db *DB) FindUsers(ctx context.Context, filter wasmwiz.UserFilter) ([]*wasmwiz.User, wasmwiz.ListTotal, error) {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	where, args := `1`, []any{}
	if filter.Email != "" {
		where, args = `email = ?`, append(args, strings.ToLower(strings.TrimSpace(filter.Email)))
	}
	q := findQuery{what: "users", columns: userColumns, table: "users", where: where, order: "id", args: args}
	return findPage(ctx, db, q, filter.Limit, filter.Offset, scanUser)
}

// UpdateUser applies upd and returns the user. Admin only (EFORBIDDEN: no
// caller changes its own tier or role); ENOTFOUND for no such user, EINVALID
// for an unknown tier or role.
func (db *DB) UpdateUser(ctx context.Context, id int64, upd wasmwiz.UserUpdate) (*wasmwiz.User, error) {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	if upd.Tier != nil && !wasmwiz.ValidTierName(*upd.Tier) {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "unknown tier %q", *upd.Tier)
	}
	if upd.Role != nil && !validRole(*upd.Role) {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "unknown role %q: want user or admin", *upd.Role)
	}
	var u *wasmwiz.User
	err := db.write(ctx, "update user", func(tx *sql.Tx) error {
		if upd.Tier != nil {
			if err := tierExists(ctx, tx, *upd.Tier); err != nil {
				return err
			}
		}
		// The write transaction holds SQLite's lock: the admins read here
		// stay the admins until it ends.
		var admins []int64
		if upd.Role != nil || upd.Disabled != nil {
			var err error
			admins, err = column[int64](tx.QueryContext(ctx, `SELECT id FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY id`))
			if err != nil {
				return err
			}
		}
		var err error
		u, err = scanUser(tx.QueryRowContext(ctx, `UPDATE users SET
				tier = coalesce(?, tier), role = coalesce(?, role), disabled = coalesce(?, disabled)
			WHERE id = ? RETURNING `+userColumns,
			nullString(upd.Tier), nullString((*string)(upd.Role)), nullBool(upd.Disabled), id))
		if errors.Is(err, sql.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "user %d not found", id)
		}
		if err != nil {
			return err
		}
		return wasmwiz.CheckLastAdmin(admins, u)
	})
	return u, err
}

// CountUsers returns how many users exist. It needs no caller, so that serve
// can bootstrap the first admin on an empty database.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := db.reader.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n)
	return n, dbError(err, "count users")
}

func nullString(s *string) sql.NullString {
	if s == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *s, Valid: true}
}

func nullBool(b *bool) sql.NullInt64 {
	if b == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(boolInt(*b)), Valid: true}
}
