// Alike on purpose: internal/sqlite/migrate.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package postgres

import (
	"context"
	"embed"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/migration"
)

// The migrations are alike on purpose: internal/sqlite/migrations holds the
// same ones for the other store (one schema, two SQL dialects), and both are
// frozen once released.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations returns the embedded migrations in version order.
func migrations() ([]migration.Step, error) { return migration.Load(migrationFS, "migrations") }

// Migrate applies every embedded migration the database has not recorded in
// schema_migrations, each in a transaction of its own (internal/migration).
// It holds a session advisory lock while it works, so that replicas starting
// together migrate once: the others wait for the lock, then find nothing
// left to do. The lock is keyed by the current schema, so databases in
// different schemas do not wait for each other. It returns EUNAVAILABLE when
// the database does not answer and EINTERNAL when a migration fails (that
// migration is rolled back) or the database is newer than this binary.
func (db *DB) Migrate(ctx context.Context) error { return db.MigrateTo(ctx, 0) }

// MigrateTo is Migrate up to version (0: all), for tests that migrate step
// by step.
func (db *DB) MigrateTo(ctx context.Context, version int) error {
	ms, err := migrations()
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "invalid embedded migrations")
	}
	return db.migrate(ctx, ms, version)
}

// migrate applies ms, which are in version order, up to version upTo.
func (db *DB) migrate(ctx context.Context, ms []migration.Step, upTo int) error {
	// A migration may rewrite a large table, and waits for another
	// replica's: no per-statement deadline, only the caller's.
	ctx = withoutCallTimeout(ctx)
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return dbError(err, "migrate")
	}
	defer conn.Release()
	return migration.Run(ctx, migrator{conn}, ms, upTo)
}

// migrator is one connection of the store as internal/migration sees it:
// the advisory lock belongs to the session, so everything runs on it.
type migrator struct{ conn *pgxpool.Conn }

const migrateLockKey = `hashtext('wasmwiz.migrate.' || current_schema())`

func (m migrator) Lock(ctx context.Context) (func(), error) {
	if _, err := m.conn.Exec(ctx, `SELECT pg_advisory_lock(`+migrateLockKey+`)`); err != nil {
		return nil, dbError(err, "migrate: lock")
	}
	return func() {
		// A fresh context: the caller's may be done, and a lock left held
		// would block every other replica until this connection closes.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := m.conn.Exec(uctx, `SELECT pg_advisory_unlock(`+migrateLockKey+`)`); err != nil {
			// The lock dies with the session; make sure the session dies.
			m.conn.Conn().Close(uctx)
		}
	}, nil
}

func (m migrator) Init(ctx context.Context) error {
	_, err := m.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
	return dbError(err, "migrate: create schema_migrations")
}

func (m migrator) InTx(ctx context.Context, fn func(migration.Tx) error) error {
	err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error { return fn(migrationTx{tx}) })
	if err != nil && wasmwiz.ErrorCode(dbError(err, "")) == wasmwiz.EUNAVAILABLE {
		return dbError(err, "migrate")
	}
	return err
}

type migrationTx struct{ tx pgx.Tx }

func (t migrationTx) Version(ctx context.Context) (int, error) {
	var v int
	err := t.tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (t migrationTx) Exec(ctx context.Context, sql string) error {
	_, err := t.tx.Exec(ctx, sql)
	return err
}

func (t migrationTx) Record(ctx context.Context, version int) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
	return err
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
