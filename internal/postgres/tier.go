package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

const tierColumns = `name, runs_per_minute, runs_per_day, max_memory_bytes, timeout_ms,
	max_module_bytes, max_stdin_bytes, max_output_bytes, max_concurrent, updated_at`

func scanTier(row pgx.Row) (*wasmwiz.Tier, error) {
	var t wasmwiz.Tier
	var timeoutMS int64
	if err := row.Scan(&t.Name, &t.RunsPerMinute, &t.RunsPerDay, &t.MaxMemoryBytes, &timeoutMS,
		&t.MaxModuleBytes, &t.MaxStdinBytes, &t.MaxOutputBytes, &t.MaxConcurrent, &t.UpdatedAt); err != nil {
		return nil, err
	}
	t.Timeout = time.Duration(timeoutMS) * time.Millisecond
	t.UpdatedAt = t.UpdatedAt.UTC()
	return &t, nil
}

// FindTier returns the named tier. EUNAUTHORIZED without a caller,
// ENOTFOUND for an unknown name.
func (db *DB) FindTier(ctx context.Context, name string) (*wasmwiz.Tier, error) {
	if _, err := wasmwiz.RequireUser(ctx); err != nil {
		return nil, err
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
	_, err := db.pool.Exec(ctx, `INSERT INTO tiers (`+tierColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (name) DO UPDATE SET runs_per_minute = excluded.runs_per_minute,
			runs_per_day = excluded.runs_per_day, max_memory_bytes = excluded.max_memory_bytes,
			timeout_ms = excluded.timeout_ms, max_module_bytes = excluded.max_module_bytes,
			max_stdin_bytes = excluded.max_stdin_bytes, max_output_bytes = excluded.max_output_bytes,
			max_concurrent = excluded.max_concurrent, updated_at = excluded.updated_at`,
		t.Name, t.RunsPerMinute, t.RunsPerDay, t.MaxMemoryBytes, t.Timeout.Milliseconds(),
		t.MaxModuleBytes, t.MaxStdinBytes, t.MaxOutputBytes, t.MaxConcurrent, now)
	if err != nil {
		return dbError(err, "put tier")
	}
	t.UpdatedAt = now
	return nil
}
