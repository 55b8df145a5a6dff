package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
)

// migrateStore applies the store's migrations (internal/migration), then
// the queue's (River's own, rivermigrate): ours first, since nothing of
// River's refers to our tables; each runner keeps its own version table
// (schema_migrations, river_migration) and lock, so neither needs to know
// the other's steps (docs/RATIONALE.md, "Queue: River"). River's, like
// ours, are not cut by the store's call timeout (WASMWIZ_DATABASE_TIMEOUT):
// serve started on a slow disk with a 1s timeout failed in River's 007.
func migrateStore(ctx context.Context, s Store) error {
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	switch db := s.(type) {
	case *postgres.DB:
		return queue.MigratePostgres(postgres.WithoutCallTimeout(ctx), db.Pool())
	case *sqlite.DB:
		return queue.MigrateSQLite(sqlite.WithoutCallTimeout(ctx), db.QueueDB())
	}
	return nil
}

// openQueue makes the queue on the store's database.
func openQueue(s Store, opts queue.Options) (*queue.Queue, error) {
	switch db := s.(type) {
	case *postgres.DB:
		return queue.OpenPostgres(db.Pool(), opts)
	case *sqlite.DB:
		return queue.OpenSQLite(db.QueueDB(), opts)
	}
	return nil, wasmwiz.Errorf(wasmwiz.EINTERNAL, "no queue for a store of type %T", s)
}

// Store is the configured database: the root package's Store, plus what
// serve and the admin commands need around it.
type Store interface {
	wasmwiz.Store

	// Migrate applies the embedded migrations the database lacks.
	Migrate(ctx context.Context) error
	// MigrationVersions returns the migrations applied so far; an error or
	// none means the database has no WasmWiz schema yet.
	MigrationVersions(ctx context.Context) ([]int, error)
	// Close releases the database.
	Close() error
}

// Both stores are Stores.
var (
	_ Store = (*postgres.DB)(nil)
	_ Store = (*sqlite.DB)(nil)
)

// OpenStore opens the database cfg names: PostgreSQL for a postgres:// URL,
// else the SQLite file at cfg.SQLitePath() (its directory is created). It
// does not migrate. EINVALID for a bad URL, EUNAVAILABLE when the database
// cannot be reached.
func OpenStore(ctx context.Context, cfg *Config) (Store, error) {
	if cfg.IsPostgres() {
		db, err := postgres.OpenWith(ctx, cfg.DatabaseURL, postgres.Options{CallTimeout: cfg.DatabaseTimeout})
		if err != nil {
			return nil, err // not a nil *postgres.DB in a non-nil Store
		}
		return db, nil
	}
	path := cfg.SQLitePath()
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "cannot create the directory of %s", path)
		}
	}
	db, err := sqlite.OpenWith(ctx, path, sqlite.Options{CallTimeout: cfg.DatabaseTimeout, Readers: sqliteReaders(cfg)})
	if err != nil {
		return nil, err
	}
	return db, nil
}

// maxSQLiteReaders caps sqliteReaders: each SQLite connection keeps its own
// page cache (up to 2 MiB).
const maxSQLiteReaders = 64

// sqliteReaders sizes the SQLite store's read-only connections so that one
// user at its bound cannot take them all. WASMWIZ_MAX_USER_REQUESTS bounds
// a user's requests in flight on the routes that read the store on the
// request's behalf (runs are bounded by the tier and the run gate, and read
// only a key, a tier and a module, one at a time), and a request holds at
// most two readers at once (a run's record and its webhook deliveries): a
// user at its bound holds at most twice its bound, and the default number
// beside those stays for everyone else. Users are not bounded together, so
// many of them can still take every reader: then each wait ends at
// WASMWIZ_DATABASE_TIMEOUT with 503 and Retry-After, as every wait for the
// database does, rather than queueing silently. The pool is at most
// maxSQLiteReaders, which a large bound (or none) does not fit whole.
func sqliteReaders(cfg *Config) int {
	perUser := maxSQLiteReaders
	if cfg.MaxUserRequests > 0 {
		perUser = 2 * cfg.MaxUserRequests
	}
	return min(sqlite.DefaultReaders()+perUser, maxSQLiteReaders)
}

// openAdminStore loads the configuration and opens an existing WasmWiz
// database for the admin commands: it never creates one (only serve and
// migrate do), so that a command run from the wrong directory says so
// instead of acting on a new, empty database. It applies any pending
// migration, as serve does at start. ENOTFOUND names the database looked at
// and the variables that choose it.
func openAdminStore(ctx context.Context, env *Env) (Store, *Config, error) {
	cfg, err := LoadConfig(env.Getenv)
	if err != nil {
		return nil, nil, err
	}
	s, err := openExisting(ctx, cfg)
	return s, cfg, err
}

func openExisting(ctx context.Context, cfg *Config) (Store, error) {
	if !cfg.IsPostgres() {
		if _, err := os.Stat(cfg.SQLitePath()); errors.Is(err, fs.ErrNotExist) {
			return nil, noDatabase(cfg, "there is no such file")
		}
	}
	s, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	versions, err := s.MigrationVersions(ctx)
	if err != nil && wasmwiz.ErrorCode(err) == wasmwiz.EUNAVAILABLE {
		s.Close()
		return nil, err
	}
	if err != nil || len(versions) == 0 {
		s.Close()
		return nil, noDatabase(cfg, "it has no WasmWiz schema")
	}
	if err := migrateStore(ctx, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// noDatabase is the error of an admin command that found no database where
// the configuration points.
func noDatabase(cfg *Config, why string) error {
	where := storeName(cfg)
	if !cfg.IsPostgres() {
		if abs, err := filepath.Abs(where); err == nil {
			where = abs
		}
	}
	how := "WASMWIZ_DATABASE_URL"
	if !cfg.databaseURLSet {
		how = fmt.Sprintf("WASMWIZ_DATA_DIR (now %q) or WASMWIZ_DATABASE_URL", cfg.DataDir)
	}
	return wasmwiz.Errorf(wasmwiz.ENOTFOUND,
		"no WasmWiz database at %s (%s): set %s to the server's database, or create one with wasmwiz migrate or wasmwiz serve",
		where, why, how)
}
