// Alike on purpose: internal/postgres/migrate.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"
	"database/sql"
	"embed"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/migration"
)

// The migrations are alike on purpose: internal/postgres/migrations holds the
// same ones for the other store (one schema, two SQL dialects), and both are
// frozen once released.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate applies every migration the database has not seen, each in its
// own transaction recorded in schema_migrations (internal/migration).
// Several processes may migrate one file at once: each step takes SQLite's
// write lock at BEGIN and checks again inside it whether it is still to be
// done, so every step runs exactly once. EINTERNAL when the database has a
// version this binary does not know (a newer binary migrated it) or a step
// fails, EUNAVAILABLE when the database cannot be written.
func (db *DB) Migrate(ctx context.Context) error { return db.MigrateTo(ctx, 0) }

// MigrateTo is Migrate up to version (0: all), for tests that migrate step
// by step.
func (db *DB) MigrateTo(ctx context.Context, version int) error {
	// A migration may rewrite a large table, and waits for another
	// process's: no call timeout, only the caller's deadline and, for the
	// other process's lock, the busy timeout.
	ctx = withoutCallTimeout(ctx)
	steps, err := migration.Load(migrationFiles, "migrations")
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "embedded migrations are broken")
	}
	if err := migration.Run(ctx, migrator{db}, steps, version); err != nil {
		return err
	}
	db.prepare(ctx)
	return nil
}

// migrator is the store as internal/migration sees it.
type migrator struct{ db *DB }

// Lock is a no-op: every step's transaction holds SQLite's write lock.
func (m migrator) Lock(context.Context) (func(), error) { return func() {}, nil }

func (m migrator) Init(ctx context.Context) error {
	return m.db.write(ctx, "create schema_migrations", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at INTEGER NOT NULL
		) STRICT`)
		return err
	})
}

func (m migrator) InTx(ctx context.Context, fn func(migration.Tx) error) error {
	return m.db.write(ctx, "migrate", func(tx *sql.Tx) error { return fn(migrationTx{m.db, tx}) })
}

type migrationTx struct {
	db *DB
	tx *sql.Tx
}

func (t migrationTx) Version(ctx context.Context) (int, error) {
	var v int
	err := t.tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (t migrationTx) Exec(ctx context.Context, sql string) error {
	_, err := t.tx.ExecContext(ctx, sql)
	return err
}

func (t migrationTx) Record(ctx context.Context, version int) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, ms(t.db.Now()))
	return err
}

// MigrationVersions returns the versions recorded in schema_migrations, in
// order: for tests and `wasmwiz migrate` to report.
func (db *DB) MigrationVersions(ctx context.Context) ([]int, error) {
	out, err := column[int](db.reader.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`))
	return out, dbError(err, "list migrations")
}
