package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
)

// Store is the configured database: every service interface of the root
// package, plus what serve and the admin commands need around them.
type Store interface {
	wasmwiz.UserService
	wasmwiz.APIKeyService
	wasmwiz.TierService
	wasmwiz.ModuleService
	wasmwiz.RunService

	// Migrate applies the embedded migrations the database lacks.
	Migrate(ctx context.Context) error
	// Ping returns nil when the database answers, EUNAVAILABLE otherwise.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
	// Bootstrap creates the first admin and its key on a database without
	// users, and reports whether it did; the key is shown only here.
	Bootstrap(ctx context.Context, email string) (user *wasmwiz.User, key string, created bool, err error)
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
		db, err := postgres.Open(ctx, cfg.DatabaseURL)
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
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return db, nil
}

// openAdminStore loads the configuration, opens the store and applies any
// pending migration (idempotent; the same as serve does at start), for the
// admin commands.
func openAdminStore(ctx context.Context, env *Env) (Store, error) {
	cfg, err := LoadConfig(env.Getenv)
	if err != nil {
		return nil, err
	}
	s, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
