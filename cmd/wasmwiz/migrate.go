package main

import (
	"context"
	"fmt"
)

// cmdMigrate applies the database migrations: wasmwiz migrate.
func cmdMigrate(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "migrate", `usage: wasmwiz migrate

Creates the configured database if there is none (WASMWIZ_DATABASE_URL, or
the SQLite file WASMWIZ_DATA_DIR/wasmwiz.db), and applies the embedded
migrations it lacks. serve does the same at start.`)
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	cfg, err := LoadConfig(env.Getenv)
	if err != nil {
		return err
	}
	s, err := OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := migrateStore(ctx, s); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "database %s is up to date\n", storeName(cfg))
	return nil
}

// storeName describes the configured database without secrets.
func storeName(cfg *Config) string {
	if cfg.IsPostgres() {
		return redact(cfg.DatabaseURL)
	}
	return cfg.SQLitePath()
}
