package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

const tierColumns = `name, runs_per_minute, runs_per_day, max_memory_bytes, timeout_ms,
	max_module_bytes, max_stdin_bytes, max_output_bytes, max_concurrent, updated_at`

const findTierSQL = `SELECT ` + tierColumns + ` FROM tiers WHERE name = ?`

func scanTier(row interface{ Scan(...any) error }) (*wasmwiz.Tier, error) {
	var t wasmwiz.Tier
	var timeoutMS, updated int64
	if err := row.Scan(&t.Name, &t.RunsPerMinute, &t.RunsPerDay, &t.MaxMemoryBytes, &timeoutMS,
		&t.MaxModuleBytes, &t.MaxStdinBytes, &t.MaxOutputBytes, &t.MaxConcurrent, &updated); err != nil {
		return nil, err
	}
	t.Timeout = time.Duration(timeoutMS) * time.Millisecond
	t.UpdatedAt = fromMS(updated)
	return &t, nil
}

// FindTier returns the named tier: ENOTFOUND when there is none,
// EUNAUTHORIZED without a caller.
func (db *DB) FindTier(ctx context.Context, name string) (*wasmwiz.Tier, error) {
	if _, err := wasmwiz.RequireUser(ctx); err != nil {
		return nil, err
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
	if err != nil {
		return nil, dbError(err, "list tiers")
	}
	defer rows.Close()
	var out []*wasmwiz.Tier
	for rows.Next() {
		t, err := scanTier(rows)
		if err != nil {
			return nil, dbError(err, "list tiers")
		}
		out = append(out, t)
	}
	return out, dbError(rows.Err(), "list tiers")
}

// PutTier creates or replaces a tier and sets its UpdatedAt. Every replica
// reads tiers from the database on each request, so a change applies at
// once. EFORBIDDEN for non-admins, EINVALID for a tier that fails Validate.
func (db *DB) PutTier(ctx context.Context, t *wasmwiz.Tier) error {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	c := *t
	c.UpdatedAt = db.Now()
	if err := db.write(ctx, "put tier", func(tx *sql.Tx) error { return putTier(ctx, tx, &c) }); err != nil {
		return err
	}
	t.UpdatedAt = c.UpdatedAt
	return nil
}

func putTier(ctx context.Context, tx *sql.Tx, t *wasmwiz.Tier) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO tiers (`+tierColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET runs_per_minute = excluded.runs_per_minute,
			runs_per_day = excluded.runs_per_day, max_memory_bytes = excluded.max_memory_bytes,
			timeout_ms = excluded.timeout_ms, max_module_bytes = excluded.max_module_bytes,
			max_stdin_bytes = excluded.max_stdin_bytes, max_output_bytes = excluded.max_output_bytes,
			max_concurrent = excluded.max_concurrent, updated_at = excluded.updated_at`,
		t.Name, t.RunsPerMinute, t.RunsPerDay, t.MaxMemoryBytes, t.Timeout.Milliseconds(),
		t.MaxModuleBytes, t.MaxStdinBytes, t.MaxOutputBytes, t.MaxConcurrent, ms(t.UpdatedAt))
	return err
}
