package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/wasmwiz/wasmwiz"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered step of the schema. after runs Go code in the
// same transaction, after the SQL.
type migration struct {
	version int
	name    string
	sql     string
	after   func(ctx context.Context, db *DB, tx *sql.Tx) error
}

// afterHooks are the Go parts of migrations, by version.
var afterHooks = map[int]func(ctx context.Context, db *DB, tx *sql.Tx) error{
	1: seedTiers,
}

// migrations returns the embedded migrations in order. Files are named
// NNNN_description.sql; numbers start at 1 and have no gaps.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		body, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(body), after: afterHooks[v]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", m.name, i+1)
		}
	}
	return out, nil
}

// Migrate applies every migration the database has not seen, each in its
// own transaction recorded in schema_migrations. Migrations are
// forward-only. Several processes may migrate one file at once: each step
// takes SQLite's write lock at BEGIN and checks again inside it whether it
// is still to be done, so every step runs exactly once. EINTERNAL when the
// database has a version this binary does not know (a newer binary
// migrated it), EUNAVAILABLE when the database cannot be written.
func (db *DB) Migrate(ctx context.Context) error {
	steps, err := migrations()
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "embedded migrations are broken")
	}
	err = db.write(ctx, "create schema_migrations", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at INTEGER NOT NULL
		) STRICT`)
		return err
	})
	if err != nil {
		return err
	}
	for _, m := range steps {
		err := db.write(ctx, "migrate to "+m.name, func(tx *sql.Tx) error {
			var latest int
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&latest); err != nil {
				return err
			}
			if latest > len(steps) {
				return wasmwiz.Errorf(wasmwiz.EINTERNAL,
					"the database is at schema version %d, newer than this binary's %d: run a newer wasmwiz", latest, len(steps))
			}
			if latest >= m.version {
				return nil // done, perhaps by another process a moment ago
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if m.after != nil {
				if err := m.after(ctx, db, tx); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.version, ms(db.Now()))
			return err
		})
		if err != nil {
			return err
		}
	}
	db.prepare(ctx)
	return nil
}

// MigrationVersions returns the versions recorded in schema_migrations, in
// order: for tests and `wasmwiz migrate` to report.
func (db *DB) MigrationVersions(ctx context.Context) ([]int, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, dbError(err, "list migrations")
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, dbError(err, "list migrations")
		}
		out = append(out, v)
	}
	return out, dbError(rows.Err(), "list migrations")
}

// seedTiers inserts the default tiers (DESIGN §4). Never a user or a key:
// the first admin comes from Bootstrap, with a key printed once.
func seedTiers(ctx context.Context, db *DB, tx *sql.Tx) error {
	now := db.Now()
	for _, t := range wasmwiz.DefaultTiers() {
		t.UpdatedAt = now
		if err := putTier(ctx, tx, t); err != nil {
			return err
		}
	}
	return nil
}
