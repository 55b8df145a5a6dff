package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered, forward-only step of the schema.
type migration struct {
	Version int
	Name    string
	SQL     string
	// after runs in the same transaction, after SQL.
	after func(ctx context.Context, tx pgx.Tx) error
}

// migrations returns the embedded migrations in version order. Files are
// named NNNN_description.sql; the number is the version.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]bool{}
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %q: want NNNN_name.sql", e.Name())
		}
		if seen[v] {
			return nil, fmt.Errorf("migration version %d appears twice", v)
		}
		seen[v] = true
		b, err := fs.ReadFile(migrationFS, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		m := migration{Version: v, Name: e.Name(), SQL: string(b)}
		if v == 1 {
			m.after = seedTiers
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// seedTiers inserts the default tiers. It runs once, with the migration that
// creates the tiers table, so an admin's later changes are never undone.
func seedTiers(ctx context.Context, tx pgx.Tx) error {
	for _, t := range wasmwiz.DefaultTiers() {
		if _, err := tx.Exec(ctx, `INSERT INTO tiers (name, runs_per_minute, runs_per_day, max_memory_bytes,
			timeout_ms, max_module_bytes, max_stdin_bytes, max_output_bytes, max_concurrent, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) ON CONFLICT (name) DO NOTHING`,
			t.Name, t.RunsPerMinute, t.RunsPerDay, t.MaxMemoryBytes, t.Timeout.Milliseconds(),
			t.MaxModuleBytes, t.MaxStdinBytes, t.MaxOutputBytes, t.MaxConcurrent); err != nil {
			return err
		}
	}
	return nil
}

// Migrate applies every embedded migration the database has not recorded in
// schema_migrations, each in a transaction of its own, and seeds the default
// tiers with the first. It holds a session advisory lock while it works, so
// that replicas starting together migrate once: the others wait for the
// lock, then find nothing left to do. The lock is keyed by the current
// schema, so databases in different schemas do not wait for each other.
// It returns EUNAVAILABLE when the database does not answer and EINTERNAL
// when a migration fails (that migration is rolled back).
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "invalid embedded migrations")
	}
	return db.migrate(ctx, ms)
}

// migrate applies ms, which are in version order.
func (db *DB) migrate(ctx context.Context, ms []migration) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return dbError(err, "migrate")
	}
	defer conn.Release()

	const lockKey = `hashtext('wasmwiz.migrate.' || current_schema())`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+lockKey+`)`); err != nil {
		return dbError(err, "migrate: lock")
	}
	defer func() {
		// A fresh context: the caller's may be done, and a lock left held
		// would block every other replica until this connection closes.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(`+lockKey+`)`); err != nil {
			// The lock dies with the session; make sure the session dies.
			conn.Conn().Close(uctx)
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return dbError(err, "migrate: create schema_migrations")
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return dbError(err, "migrate: read schema_migrations")
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return dbError(err, "migrate: read schema_migrations")
	}
	for _, v := range versions {
		applied[int(v)] = true
	}

	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			if m.after != nil {
				if err := m.after(ctx, tx); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.Version)
			return err
		})
		if err != nil {
			if code := wasmwiz.ErrorCode(dbError(err, "")); code == wasmwiz.EUNAVAILABLE {
				return dbError(err, "migrate "+m.Name)
			}
			return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "migration %s failed", m.Name)
		}
	}
	return nil
}

// MigrationVersions returns the versions recorded in schema_migrations, in
// order, for tests and diagnostics.
func (db *DB) MigrationVersions(ctx context.Context) ([]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, dbError(err, "read schema_migrations")
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, dbError(err, "read schema_migrations")
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v)
	}
	return out, nil
}
