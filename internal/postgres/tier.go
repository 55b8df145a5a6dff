// Alike on purpose: internal/sqlite/tier.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

// The tiers table's columns follow wasmwiz.TierFields: name, every limit,
// updated_at.
var (
	tierColumns = `name, ` + wasmwiz.TierColumns("") + `, updated_at`
	putTierSQL  = putTierStatement()
)

func putTierStatement() string {
	fs := wasmwiz.TierFields()
	sql := `INSERT INTO tiers (` + tierColumns + `) VALUES ($1`
	for i := range len(fs) + 1 {
		sql += ", $" + strconv.Itoa(i+2)
	}
	sql += `) ON CONFLICT (name) DO UPDATE SET `
	for _, f := range fs {
		sql += f.Name + ` = excluded.` + f.Name + `, `
	}
	return sql + `updated_at = excluded.updated_at`
}

// tierRow receives a tier's columns, each NULL-able so that the same row
// serves a LEFT JOIN (Authenticate).
type tierRow struct {
	name    *string
	limits  []*int64
	updated *time.Time
}

// dest returns the scan destinations in tierColumns order.
func (r *tierRow) dest() []any {
	r.limits = make([]*int64, len(wasmwiz.TierFields()))
	d := make([]any, 0, len(r.limits)+2)
	d = append(d, &r.name)
	for i := range r.limits {
		d = append(d, &r.limits[i])
	}
	return append(d, &r.updated)
}

// tier returns the tier read, or nil when the row was missing.
func (r *tierRow) tier() *wasmwiz.Tier {
	if r.name == nil || r.updated == nil {
		return nil
	}
	vals := make([]int64, len(r.limits))
	for i, v := range r.limits {
		if v == nil {
			return nil
		}
		vals[i] = *v
	}
	t := &wasmwiz.Tier{Name: *r.name, UpdatedAt: r.updated.UTC()}
	t.SetColumnValues(vals)
	return t
}

func scanTier(row pgx.Row) (*wasmwiz.Tier, error) {
	var r tierRow
	if err := row.Scan(r.dest()...); err != nil {
		return nil, err
	}
	return r.tier(), nil
}

// FindTier returns the named tier. EUNAUTHORIZED without a caller,
// ENOTFOUND for an unknown name.
func (db *DB) FindTier(ctx context.Context, name string) (*wasmwiz.Tier, error) {
	if _, err := wasmwiz.RequireUser(ctx); err != nil {
		return nil, err
	}
	if !wasmwiz.ValidTierName(name) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "tier %q not found", name)
	}
	t, err := scanTier(db.pool.QueryRow(ctx, `SELECT `+tierColumns+` FROM tiers WHERE name = $1`, name))
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "tier %q not found", name)
		}
		return nil, dbError(err, "find tier")
	}
	return t, nil
}

// ListTiers returns every tier ordered by name. EUNAUTHORIZED without a
// caller.
func (db *DB) ListTiers(ctx context.Context) ([]*wasmwiz.Tier, error) {
	if _, err := wasmwiz.RequireUser(ctx); err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, `SELECT `+tierColumns+` FROM tiers ORDER BY name`)
	if err != nil {
		return nil, dbError(err, "list tiers")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*wasmwiz.Tier, error) { return scanTier(row) })
	if err != nil {
		return nil, dbError(err, "list tiers")
	}
	return out, nil
}

// PutTier creates or replaces a tier and sets its UpdatedAt. EUNAUTHORIZED
// without a caller, EFORBIDDEN for non-admins, EINVALID for a tier that
// fails Validate.
func (db *DB) PutTier(ctx context.Context, t *wasmwiz.Tier) error {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return err
	}
	if t == nil {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "no tier")
	}
	if err := t.Validate(); err != nil {
		return err
	}
	now := db.now()
	args := append(append([]any{t.Name}, t.ColumnValues()...), now)
	if _, err := db.pool.Exec(ctx, putTierSQL, args...); err != nil {
		return dbError(err, "put tier")
	}
	t.UpdatedAt = now
	return nil
}
