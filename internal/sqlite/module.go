// Alike on purpose: internal/postgres/module.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"

	"github.com/wasmwiz/wasmwiz"
)

// Bounds on module metadata; the module's size is bounded by the caller's
// tier before it gets here.
const ()

const moduleColumns = `id, owner_id, name, description, sha256, size_bytes, inspection, public, created_at, last_run_at, run_count`

// moduleListColumns are moduleColumns with the inspection's summary in its
// place: a list carries no imports or exports (migration 0017).
const moduleListColumns = `id, owner_id, name, description, sha256, size_bytes, summary, public, created_at, last_run_at, run_count`

func scanModule(row interface{ Scan(...any) error }, extra ...any) (*wasmwiz.Module, error) {
	var m wasmwiz.Module
	var inspection sql.NullString
	var created int64
	var lastRun sql.NullInt64
	dest := append([]any{&m.ID, &m.OwnerID, &m.Name, &m.Description, &m.SHA256, &m.SizeBytes, &inspection,
		&m.Public, &created, &lastRun, &m.RunCount}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	m.CreatedAt, m.LastRunAt = fromMS(created), fromNullMS(lastRun)
	if inspection.Valid {
		m.Inspection = new(wasmwiz.Inspection)
		if err := json.Unmarshal([]byte(inspection.String), m.Inspection); err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "module %s has a broken inspection", m.ID)
		}
	}
	return &m, nil
}

// CreateModule stores m (Name, Description, Wasm, Inspection, Public) for the
// caller and sets ID, OwnerID, SHA256, SizeBytes and CreatedAt. The same
// bytes stored by two users are two modules. EINVALID for no bytes, a name
// over 128 or a description over 4096 bytes; EUNAUTHORIZED without a caller;
// ETOOLARGE over the caller's registry quota (checkStore).
func (db *DB) CreateModule(ctx context.Context, m *wasmwiz.Module) error {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return err
	}
	var inspection, summary sql.NullString
	if m.Inspection != nil {
		b, err := json.Marshal(m.Inspection)
		if err != nil {
			return wasmwiz.WrapError(wasmwiz.EINVALID, err, "module inspection cannot be stored")
		}
		inspection = sql.NullString{String: string(b), Valid: true}
		if b, err = json.Marshal(m.Inspection.Summary()); err != nil {
			return wasmwiz.WrapError(wasmwiz.EINVALID, err, "module inspection cannot be stored")
		}
		summary = sql.NullString{String: string(b), Valid: true}
	}
	digest := wasmwiz.ModuleDigest(m.Wasm)
	id, now := wasmwiz.NewModuleID(), db.Now()
	err = db.write(ctx, "create module", func(tx *sql.Tx) error {
		// The write transaction began IMMEDIATE: no other writer, of this
		// process or another, stores a module between the count and the
		// insert.
		if err := checkStore(ctx, tx, caller.ID, int64(len(m.Wasm))); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO modules (id, owner_id, name, description, sha256, size_bytes, wasm,
				inspection, summary, public, created_at, run_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			id, caller.ID, m.Name, m.Description, digest, len(m.Wasm), m.Wasm,
			inspection, summary, m.Public, ms(now))
		return err
	})
	if err != nil {
		return err
	}
	m.ID, m.OwnerID, m.SHA256, m.SizeBytes, m.CreatedAt = id, caller.ID, digest, int64(len(m.Wasm)), now
	m.LastRunAt, m.RunCount = nil, 0
	return nil
}

// StoredModules returns how many modules the caller stores and their bytes.
func (db *DB) StoredModules(ctx context.Context) (wasmwiz.StoredModules, error) {
	var have wasmwiz.StoredModules
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return have, err
	}
	err = db.reader.QueryRowContext(ctx, `SELECT count(*), COALESCE(sum(size_bytes), 0) FROM modules WHERE owner_id = ?`, caller.ID).
		Scan(&have.Count, &have.Bytes)
	if err != nil {
		return have, dbError(err, "stored modules")
	}
	return have, nil
}

// checkStore returns Tier.CheckStore's ETOOLARGE when a module of size
// bytes would take user past its tier's registry quota, EINVALID when user
// is not a user (the system context owns nothing).
func checkStore(ctx context.Context, tx *sql.Tx, user, size int64) error {
	t := &wasmwiz.Tier{}
	var have wasmwiz.StoredModules
	err := tx.QueryRowContext(ctx, `SELECT t.name, t.max_stored_modules, t.max_stored_module_bytes,
			(SELECT count(*) FROM modules WHERE owner_id = u.id),
			(SELECT COALESCE(sum(size_bytes), 0) FROM modules WHERE owner_id = u.id)
		FROM users u JOIN tiers t ON t.name = u.tier WHERE u.id = ?`, user).
		Scan(&t.Name, &t.MaxStoredModules, &t.MaxStoredModuleBytes, &have.Count, &have.Bytes)
	if errors.Is(err, sql.ErrNoRows) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "modules belong to a user; the caller is not one")
	}
	if err != nil {
		return err
	}
	return t.CheckStore(have, size)
}

// FindModuleByID returns a module without its bytes: the caller's own, a
// public one, or any for admins. ENOTFOUND otherwise, EUNAUTHORIZED without
// a caller.
func (db *DB) FindModuleByID(ctx context.Context, id string) (*wasmwiz.Module, error) {
	return db.findModule(ctx, id, false)
}

// FindModuleWasm returns a module with its bytes, under the rules of
// FindModuleByID.
func (db *DB) FindModuleWasm(ctx context.Context, id string) (*wasmwiz.Module, error) {
	return db.findModule(ctx, id, true)
}

// The module lookups of every stored-module run, prepared once (see DB).
const (
	findModuleSQL = `SELECT ` + moduleColumns + ` FROM modules
		WHERE id = ? AND (owner_id = ? OR public = 1 OR ?)`
	findModuleWasmSQL = `SELECT ` + moduleColumns + `, wasm FROM modules
		WHERE id = ? AND (owner_id = ? OR public = 1 OR ?)`
)

func (db *DB) findModule(ctx context.Context, id string, withWasm bool) (*wasmwiz.Module, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if !wasmwiz.ValidModuleID(id) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
	}
	stmt, query, extra := &db.findModuleStmt, findModuleSQL, []any{}
	var wasm []byte
	if withWasm {
		stmt, query, extra = &db.findModuleWasmStmt, findModuleWasmSQL, []any{&wasm}
	}
	m, err := scanModule(db.queryRow(ctx, stmt, query, id, caller.ID, caller.IsAdmin()), extra...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
	}
	if err != nil {
		return nil, dbError(err, "find module")
	}
	m.Wasm = wasm
	return m, nil
}

// FindModules lists the caller's own modules (not others' public ones),
// newest first, with the matching count up to wasmwiz.MaxListTotal;
// filter.Name matches exactly. EUNAUTHORIZED without a caller, EINVALID for
// a filter Validate refuses.
func (db *DB) FindModules(ctx context.Context, filter wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	cond, args := `owner_id = ?`, []any{caller.ID}
	if filter.Name != "" {
		cond, args = cond+` AND name = ?`, append(args, filter.Name)
	}
	q := findQuery{what: "modules", columns: moduleListColumns, table: "modules", where: cond, order: "created_at DESC, id DESC", args: args}
	return findPage(ctx, db, q, filter.Limit, filter.Offset, func(row interface{ Scan(...any) error }) (*wasmwiz.Module, error) {
		return scanModule(row)
	})
}

// UpdateModule applies upd to a module of the caller (any, for admins) and
// returns it without its bytes. ENOTFOUND otherwise (also for another user's
// public module), EINVALID for an empty or too long name or a description
// over 4096 bytes, EUNAUTHORIZED without a caller. changed reports a new
// name or visibility, which raises the cache epoch (migration 0012).
func (db *DB) UpdateModule(ctx context.Context, id string, upd wasmwiz.ModuleUpdate) (*wasmwiz.Module, bool, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, false, err
	}
	if err := upd.Validate(); err != nil {
		return nil, false, err
	}
	set, args := moduleUpdateSet(upd, func(int) string { return "?" })
	var m *wasmwiz.Module
	var changed bool
	err = db.write(ctx, "update module", func(tx *sql.Tx) error {
		var oldName string
		var oldPublic bool
		err := tx.QueryRowContext(ctx, `SELECT name, public FROM modules WHERE id = ? AND (owner_id = ? OR ?)`,
			id, caller.ID, caller.IsAdmin()).Scan(&oldName, &oldPublic)
		if errors.Is(err, sql.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
		}
		if err != nil {
			return err
		}
		m, err = scanModule(tx.QueryRowContext(ctx, `UPDATE modules SET `+set+` WHERE id = ? RETURNING `+moduleColumns,
			append(args, id)...))
		if err != nil {
			return err
		}
		changed = m.Name != oldName || m.Public != oldPublic
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return m, changed, nil
}

// moduleUpdateSet returns the SET list of upd, naming only the columns it
// changes (so that a new description does not touch the cache epoch), and
// its arguments; param writes the i-th parameter (from 1).
func moduleUpdateSet(upd wasmwiz.ModuleUpdate, param func(i int) string) (string, []any) {
	var set []string
	var args []any
	add := func(col string, v any) {
		args = append(args, v)
		set = append(set, col+" = "+param(len(args)))
	}
	if upd.Name != nil {
		add("name", *upd.Name)
	}
	if upd.Description != nil {
		add("description", *upd.Description)
	}
	if upd.Public != nil {
		add("public", *upd.Public)
	}
	if len(set) == 0 {
		return "id = id", nil
	}
	return strings.Join(set, ", "), args
}

// DeleteModule deletes a module of the caller (any, for admins); a public
// module of another user is not the caller's to delete. Runs that used it
// keep their records. ENOTFOUND otherwise, EUNAUTHORIZED without a caller.
func (db *DB) DeleteModule(ctx context.Context, id string) error {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return err
	}
	if !wasmwiz.ValidModuleID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
	}
	return db.write(ctx, "delete module", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM modules WHERE id = ? AND (owner_id = ? OR ?)`, id, caller.ID, caller.IsAdmin())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
		}
		return nil
	})
}
