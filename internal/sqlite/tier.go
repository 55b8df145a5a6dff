// Alike on purpose: internal/postgres/tier.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/wasmwiz/wasmwiz"
)

// The tiers table's columns follow wasmwiz.TierFields: name, every limit,
// updated_at.
var (
	tierColumns = `name, ` + wasmwiz.TierColumns("") + `, updated_at`
	findTierSQL = `SELECT ` + tierColumns + ` FROM tiers WHERE name = ?`
	putTierSQL  = putTierStatement()
)

func putTierStatement() string {
	fs := wasmwiz.TierFields()
	sql := `INSERT INTO tiers (` + tierColumns + `) VALUES (?` + repeat(", ?", len(fs)+1) + `)
		ON CONFLICT (name) DO UPDATE SET `
	for _, f := range fs {
		sql += f.Name + ` = excluded.` + f.Name + `, `
	}
	return sql + `updated_at = excluded.updated_at`
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

// tierRow receives a tier's columns, each NULL-able so that the same row
// serves a LEFT JOIN (Authenticate).
type tierRow struct {
	name    sql.NullString
	limits  []sql.NullInt64
	updated sql.NullInt64
}

// dest returns the scan destinations in tierColumns order.
func (r *tierRow) dest() []any {
	r.limits = make([]sql.NullInt64, len(wasmwiz.TierFields()))
	d := make([]any, 0, len(r.limits)+2)
	d = append(d, &r.name)
	for i := range r.limits {
		d = append(d, &r.limits[i])
	}
	return append(d, &r.updated)
}

// tier returns the tier read, or nil when the row was missing.
func (r *tierRow) tier() *wasmwiz.Tier {
	if !r.name.Valid {
		return nil
	}
	t := &wasmwiz.Tier{Name: r.name.String, UpdatedAt: fromMS(r.updated.Int64)}
	vals := make([]int64, len(r.limits))
	for i, v := range r.limits {
		vals[i] = v.Int64
	}
	t.SetColumnValues(vals)
	return t
}

func scanTier(row interface{ Scan(...any) error }) (*wasmwiz.Tier, error) {
	var r tierRow
	if err := row.Scan(r.dest()...); err != nil {
		return nil, err
	}
	return r.tier(), nil
}

// FindTier returns the named tier: ENOTFOUND when there is none,
// EUNAUTHORIZED without a caller.
func (db *DB) FindTier(ctx context.Context, name string) (*wasmwiz.Tier, error) {
	if _, err := wasmwiz.RequireUser(ctx); err != nil {
		return nil, err
	}
	if !wasmwiz.ValidTierName(name) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "tier %q not found", name)
	}
	t, err := scanTier(db.queryRow(ctx, &db.findTierStmt, findTierSQL, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "tier %q not found", name)
	}
	return t, dbError(err, "find tier")
}

// ListTiers returns every tier ordered by name; EUNAUTHORIZED without a
// caller.
func (db *DB) ListTiers(ctx context.Context) ([]*wasmwiz.Tier, error) {
	if _, err := wasmwiz.RequireUser(ctx); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT `+tierColumns+` FROM tiers ORDER BY name`)
	out, err := collect(rows, err, scanTier)
	if err != nil {
		return nil, dbError(err, "list tiers")
	}
	return out, nil
}

// PutTier creates or replaces a tier and sets its UpdatedAt. Every replica
// reads tiers from the database on each request, so a change applies at
// once. EFORBIDDEN for non-admins, EINVALID for a tier that fails Validate.
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
	now := db.Now()
	args := append(append([]any{t.Name}, t.ColumnValues()...), ms(now))
	if err := db.write(ctx, "put tier", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, putTierSQL, args...)
		return err
	}); err != nil {
		return err
	}
	t.UpdatedAt = now
	return nil
}
