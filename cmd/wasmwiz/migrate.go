package main

import (
	"context"
	"flag"
	"fmt"
)

// cmdMigrate applies the database migrations: wasmwiz migrate.
func cmdMigrate(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: wasmwiz migrate\n\nApplies the embedded migrations the configured database (WASMWIZ_DATABASE_URL) lacks.")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitError{2}
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
	if err := s.Migrate(ctx); err != nil {
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

// parseFlags parses args into fs; -h is exit status 0, a bad flag 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case err == flag.ErrHelp:
		return exitError{0}
	default:
		return exitError{2}
	}
}
