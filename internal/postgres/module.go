// Alike on purpose: internal/sqlite/module.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

const moduleColumns = `id, owner_id, name, description, sha256, size_bytes, inspection, public,
	created_at, last_run_at, run_count`

// moduleListColumns are moduleColumns with the inspection's summary in its
// place: a list carries no imports or exports (migration 0018).
const moduleListColumns = `id, owner_id, name, description, sha256, size_bytes, summary, public,
	created_at, last_run_at, run_count`

func scanModule(row pgx.Row, extra ...any) (*wasmwiz.Module, error) {
	var m wasmwiz.Module
	var inspection string
	dest := append([]any{&m.ID, &m.OwnerID, &m.Name, &m.Description, &m.SHA256, &m.SizeBytes,
		&inspection, &m.Public, &m.CreatedAt, &m.LastRunAt, &m.RunCount}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if inspection != "" {
		m.Inspection = new(wasmwiz.Inspection)
		if err := json.Unmarshal([]byte(inspection), m.Inspection); err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "module %s: stored inspection is not JSON", m.ID)
		}
	}
	m.CreatedAt = m.CreatedAt.UTC()
	m.LastRunAt = utcPtr(m.LastRunAt)
	return &m, nil
}

// CreateModule stores m (Name, Description, Wasm, Inspection, Public) for
// the caller and sets ID, OwnerID, SHA256, SizeBytes and CreatedAt.
// EUNAUTHORIZED without a caller, EINVALID for an empty module or a name or
// description that is too long, ETOOLARGE over the caller's registry quota
// (counted with the caller's row locked).
func (db *DB) CreateModule(ctx context.Context, m *wasmwiz.Module) error {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return err
	}
	id := wasmwiz.NewModuleID()
	var inspection, summary string
	if m.Inspection != nil {
		b, err := json.Marshal(m.Inspection)
		if err != nil {
			return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "cannot encode inspection")
		}
		inspection = string(b)
		if b, err = json.Marshal(m.Inspection.Summary()); err != nil {
			return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "cannot encode inspection")
		}
		summary = string(b)
	}
	digest := wasmwiz.ModuleDigest(m.Wasm)
	now := db.now()
	size := int64(len(m.Wasm))
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// The owner is the caller, and must exist: the system context (id 0)
		// owns nothing. Its row is locked until commit, so that uploads of
		// one user queue here and each counts what the one before stored;
		// NO KEY leaves rows that refer to the user (runs, keys) free.
		t := &wasmwiz.Tier{}
		err := tx.QueryRow(ctx, `SELECT t.name, t.max_stored_modules, t.max_stored_module_bytes
			FROM users u JOIN tiers t ON t.name = u.tier WHERE u.id = $1 FOR NO KEY UPDATE OF u`, caller.ID).
			Scan(&t.Name, &t.MaxStoredModules, &t.MaxStoredModuleBytes)
		if errors.Is(err, pgx.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "modules belong to a user; the caller is not one")
		}
		if err != nil {
			return err
		}
		// A statement of its own: under READ COMMITTED its snapshot is taken
		// after the lock was granted, so it sees the modules stored by the
		// transaction that held it.
		var have wasmwiz.StoredModules
		if err := tx.QueryRow(ctx, `SELECT count(*), COALESCE(sum(size_bytes), 0)::bigint FROM modules WHERE owner_id = $1`,
			caller.ID).Scan(&have.Count, &have.Bytes); err != nil {
			return err
		}
		if err := t.CheckStore(have, size); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO modules (id, owner_id, name, description, sha256, size_bytes,
				wasm, inspection, summary, public, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			id, caller.ID, m.Name, m.Description, digest, size, m.Wasm, inspection, summary, m.Public, now)
		return err
	})
	if err != nil {
		return dbError(err, "create module")
	}
	m.ID, m.OwnerID, m.SHA256, m.SizeBytes, m.CreatedAt = id, caller.ID, digest, int64(len(m.Wasm)), now
	m.RunCount, m.LastRunAt = 0, nil
	return nil
}

// StoredModules returns how many modules the caller stores and their bytes.
func (db *DB) StoredModules(ctx context.Context) (wasmwiz.StoredModules, error) {
	var have wasmwiz.StoredModules
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return have, err
	}
	err = db.pool.QueryRow(ctx, `SELECT count(*), COALESCE(sum(size_bytes), 0) FROM modules WHERE owner_id = $1`, caller.ID).
		Scan(&have.Count, &have.Bytes)
	if err != nil {
		return have, dbError(err, "stored modules")
	}
	return have, nil
}

// FindModuleByID returns a module without its bytes. EUNAUTHORIZED without
// a caller; ENOTFOUND when it does not exist or the caller may not see it
// (not the owner, not an admin, not public).
func (db *DB) FindModuleByID(ctx context.Context, id string) (*wasmwiz.Module, error) {
	return db.findModule(ctx, id, false)
}

// FindModuleWasm returns a module with its bytes, under the rules of
// FindModuleByID.
func (db *DB) FindModuleWasm(ctx context.Context, id string) (*wasmwiz.Module, error) {
	return db.findModule(ctx, id, true)
}

func (db *DB) findModule(ctx context.Context, id string, withWasm bool) (*wasmwiz.Module, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if !wasmwiz.ValidModuleID(id) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
	}
	cols := moduleColumns + `, NULL::bytea`
	if withWasm {
		cols = moduleColumns + `, wasm`
	}
	var wasm []byte
	m, err := scanModule(db.pool.QueryRow(ctx, `SELECT `+cols+` FROM modules
		WHERE id = $1 AND ($2 OR public OR owner_id = $3)`, id, caller.IsAdmin(), caller.ID), &wasm)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
	}
	if err != nil {
		return nil, dbError(err, "find module")
	}
	m.Wasm = wasm
	return m, nil
}

// FindModules lists the caller's own modules, newest first, with the
// matching count up to wasmwiz.MaxListTotal. Filter.Name matches names
// exactly. EUNAUTHORIZED without a caller, EINVALID for a filter Validate
// refuses.
func (db *DB) FindModules(ctx context.Context, filter wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	const where = `WHERE owner_id = $1 AND ($2 = '' OR name = $2)`
	q := findQuery{what: "modules", columns: moduleListColumns, table: "modules", where: where, order: "created_at DESC, id DESC",
		args: []any{caller.ID, filter.Name}}
	return findPage(ctx, db, q, filter.Limit, filter.Offset, func(row pgx.Row) (*wasmwiz.Module, error) {
		return scanModule(row)
	})
}

// UpdateModule applies upd to a module of the caller (any, for admins) and
// returns it without its bytes. ENOTFOUND otherwise (also for another user's
// public module), EINVALID for an empty or too long name or a description
// over 4096 bytes, EUNAUTHORIZED without a caller. changed reports a new
// name or visibility, which raises the cache epoch (migration 0012).
func (db *DB) UpdateModule(ctx context.Context, id string, upd wasmwiz.ModuleUpdate) (m *wasmwiz.Module, changed bool, err error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, false, err
	}
	if err := upd.Validate(); err != nil {
		return nil, false, err
	}
	var set []string
	args := []any{id, caller.IsAdmin(), caller.ID}
	add := func(col string, v any) {
		args = append(args, v)
		set = append(set, col+" = $"+strconv.Itoa(len(args)))
	}
	// Only the columns that change, so that a new description does not
	// touch the cache epoch.
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
		set = []string{"id = id"}
	}
	// The row as it was, locked first so that it is the version updated.
	var oldName string
	var oldPublic bool
	m, err = scanModule(db.pool.QueryRow(ctx, `WITH old AS (SELECT id AS old_id, name AS old_name, public AS old_public
			FROM modules WHERE id = $1 AND ($2 OR owner_id = $3) FOR NO KEY UPDATE)
		UPDATE modules SET `+strings.Join(set, ", ")+` FROM old WHERE id = old_id
		RETURNING `+moduleColumns+`, old_name, old_public`, args...), &oldName, &oldPublic)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
	}
	if err != nil {
		return nil, false, dbError(err, "update module")
	}
	return m, m.Name != oldName || m.Public != oldPublic, nil
}

// DeleteModule deletes a module of the caller (any, for admins). Run records
// that used it stay. EUNAUTHORIZED without a caller, ENOTFOUND otherwise,
// also for another user's public module.
func (db *DB) DeleteModule(ctx context.Context, id string) error {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return err
	}
	if !wasmwiz.ValidModuleID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM modules WHERE id = $1 AND ($2 OR owner_id = $3)`,
		id, caller.IsAdmin(), caller.ID)
	if err != nil {
		return dbError(err, "delete module")
	}
	if tag.RowsAffected() == 0 {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
	}
	return nil
}
