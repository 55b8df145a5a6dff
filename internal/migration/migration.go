// Package migration runs a store's schema migrations: numbered,
// forward-only SQL files, each applied once in a transaction of its own and
// recorded in schema_migrations. Both stores (internal/sqlite and
// internal/postgres) run theirs through Run, each giving it a Database that
// speaks its driver; the migrations themselves are frozen history: plain SQL,
// seeds included, never calling live code, so that a migration written
// today yields the same schema whatever the code looks like later.
package migration

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/wasmwiz/wasmwiz"
)

// Step is one migration.
type Step struct {
	Version int    // from the file name, NNNN_name.sql
	Name    string // the file name
	SQL     string // the whole file, run as one statement batch
}

// Load reads the NNNN_name.sql files of dir in fsys, in version order. The
// versions must run 1, 2, 3, … without gaps or repeats.
func Load(fsys fs.FS, dir string) ([]Step, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Step
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Step{Version: v, Name: e.Name(), SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, s := range out {
		if s.Version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", s.Name, i+1)
		}
	}
	return out, nil
}

// Version returns the version of the step whose file is NNNN_name.sql, 0
// when there is none.
func Version(steps []Step, name string) int {
	for _, s := range steps {
		if _, n, _ := strings.Cut(s.Name, "_"); n == name+".sql" {
			return s.Version
		}
	}
	return 0
}

// Database is what a store gives Run.
type Database interface {
	// Lock takes the database's migration lock, so that processes starting
	// together migrate once, and returns its release. A store whose
	// transactions already serialise writers may return a no-op.
	Lock(ctx context.Context) (unlock func(), err error)
	// Init creates schema_migrations when it is missing.
	Init(ctx context.Context) error
	// InTx runs fn in one transaction: committed when fn returns nil,
	// rolled back otherwise.
	InTx(ctx context.Context, fn func(Tx) error) error
}

// Tx is one migration's transaction.
type Tx interface {
	// Version returns the highest version recorded, 0 for none.
	Version(ctx context.Context) (int, error)
	// Exec runs a migration's SQL.
	Exec(ctx context.Context, sql string) error
	// Record notes version as applied.
	Record(ctx context.Context, version int) error
}

// Run applies, in order, each step up to version upTo (0: all) that the
// database has not recorded, each in its own transaction, checking again
// inside it, so that a step another process applied a moment ago is not
// applied twice. A database at a version beyond the last step (migrated by
// a newer binary) is EINTERNAL; a failing step is rolled back and its error
// returned with the step's name, keeping the store's error code.
func Run(ctx context.Context, db Database, steps []Step, upTo int) error {
	unlock, err := db.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := db.Init(ctx); err != nil {
		return err
	}
	last := 0
	if len(steps) > 0 {
		last = steps[len(steps)-1].Version
	}
	for _, s := range steps {
		if upTo > 0 && s.Version > upTo {
			break
		}
		var newer error
		err := db.InTx(ctx, func(tx Tx) error {
			v, err := tx.Version(ctx)
			if err != nil {
				return err
			}
			if v > last {
				newer = wasmwiz.Errorf(wasmwiz.EINTERNAL,
					"the database is at schema version %d, newer than this binary's %d: run a newer wasmwiz", v, last)
				return newer
			}
			if v >= s.Version {
				return nil // applied, perhaps by another process a moment ago
			}
			if err := tx.Exec(ctx, s.SQL); err != nil {
				return err
			}
			return tx.Record(ctx, s.Version)
		})
		switch {
		case err == nil:
		case newer != nil:
			return newer
		case wasmwiz.ErrorCode(err) == wasmwiz.EUNAVAILABLE:
			return err
		default:
			msg := err.Error()
			if we := wasmwiz.AsError(err); we != nil {
				msg = we.Message
			}
			return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "migration %s failed: %s", s.Name, msg)
		}
	}
	return nil
}
