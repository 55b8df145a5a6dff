// Alike on purpose: internal/postgres/db.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

// Package sqlite implements WasmWiz's stores on SQLite through database/sql
// and modernc.org/sqlite (pure Go, so the binary stays CGO_ENABLED=0): the
// embedded default, one file, nothing to install. It passes the conformance
// suite of internal/storetest and holds the schema of docs/SCHEMA.md.
//
// Every method takes its caller from the context (wasmwiz.UserFromContext)
// and scopes its SQL by that caller's id, so that tenancy holds in the query
// itself and not only in the Go code around it.
//
// SQLite allows one writer at a time. The DB keeps one connection for writes,
// so that writers of this process queue in Go instead of spinning on
// SQLITE_BUSY, and a pool of read-only connections that WAL lets read while
// the writer writes. Another process on the same file (the admin CLI while
// serve runs) waits up to the busy timeout. Every call waits for a
// connection, and runs, for at most the call timeout (Options.CallTimeout,
// deadline.go), then fails EUNAVAILABLE.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"

	"github.com/wasmwiz/wasmwiz"
)

// busyTimeout is how long a statement waits for another process's write
// lock before it fails with EUNAVAILABLE. A call with a deadline (the call
// timeout) stops waiting at its deadline; this bounds those without one,
// migrations.
const busyTimeout = 10 * time.Second

// DB is the SQLite store. It implements wasmwiz.UserService, APIKeyService,
// TierService, ModuleService and RunService, and is safe for concurrent use.
type DB struct {
	path   string
	writer *pool // exactly one connection; transactions BEGIN IMMEDIATE
	reader *pool // read-only connections
	now    atomic.Pointer[func() time.Time]

	// Statements of every request, prepared once: parsing SQL took half of
	// a key lookup's time.
	// They are set once the schema exists (at Open or after Migrate); until
	// then the same SQL runs unprepared.
	authStmt           atomic.Pointer[sql.Stmt]
	findTierStmt       atomic.Pointer[sql.Stmt]
	findModuleStmt     atomic.Pointer[sql.Stmt]
	findModuleWasmStmt atomic.Pointer[sql.Stmt]
	// The writer's INSERT of a full chunk of usage records, without and
	// with RETURNING: parsing its 1050 parameters took half a millisecond
	// a batch.
	insertRunsStmt          atomic.Pointer[sql.Stmt]
	insertRunsReturningStmt atomic.Pointer[sql.Stmt]
}

// Interface checks.
var (
	_ wasmwiz.UserService   = (*DB)(nil)
	_ wasmwiz.APIKeyService = (*DB)(nil)
	_ wasmwiz.TierService   = (*DB)(nil)
	_ wasmwiz.ModuleService = (*DB)(nil)
	_ wasmwiz.RunService    = (*DB)(nil)
)

// Open opens (creating it if needed) the SQLite database file at path, in
// WAL mode with foreign keys on, and checks that it answers. It returns
// EINVALID for an empty path, ":memory:" or a "file:" URI, and EUNAVAILABLE
// when the file cannot be opened or is not a database. Open does not
// migrate: call Migrate.
func Open(ctx context.Context, path string) (*DB, error) {
	return OpenWith(ctx, path, Options{})
}

// Options tune a store beyond its path. The zero value is the default.
type Options struct {
	// CallTimeout bounds each call to the database: its wait for a pooled
	// connection (the one writer, or a reader), then its statement and the
	// reading of its rows until they are closed, or a transaction from its
	// start to its commit (DefaultCallTimeout when zero; negative: none).
	// Past it the call fails EUNAVAILABLE. A caller whose context ends
	// sooner keeps its own deadline. Migrations are not bounded by it.
	CallTimeout time.Duration
	// Readers is the number of read-only connections (DefaultReaders when
	// zero or negative). A request holds at most two at once (a run's
	// record and its webhook deliveries), each for at most CallTimeout.
	Readers int
}

// DefaultReaders is the number of read-only connections when Options does
// not say: one a CPU, and at least 4.
func DefaultReaders() int { return max(4, runtime.GOMAXPROCS(0)) }

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "empty SQLite database path")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		// Each connection of the pools would get a database of its own.
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "SQLite database %q: want a file path", path)
	}
	timeout := opts.CallTimeout
	if timeout == 0 {
		timeout = DefaultCallTimeout
	}
	readers := opts.Readers
	if readers <= 0 {
		readers = DefaultReaders()
	}
	// The file holds key digests and every stored module: only its owner
	// reads it. SQLite gives the -wal and -shm files the same mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "cannot create SQLite database %s", path)
	}
	params := url.Values{}
	params.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	params.Set("_foreign_keys", "1")
	params.Set("_journal_mode", "WAL")
	// NORMAL in WAL mode loses at most the last transactions on power loss,
	// never consistency; FULL would fsync every commit.
	params.Set("_synchronous", "NORMAL")
	params.Set("_txlock", "immediate") // take the write lock at BEGIN: no deadlock on upgrade
	writer, err := openPool(path, params, timeout)
	if err != nil {
		return nil, err
	}
	writer.db.SetMaxOpenConns(1)
	writer.db.SetMaxIdleConns(1)
	writer.db.SetConnMaxLifetime(0)
	writer.db.SetConnMaxIdleTime(0)

	params.Set("_query_only", "1")
	params.Del("_journal_mode") // set once by the writer; a reader must not try to change it
	reader, err := openPool(path, params, timeout)
	if err != nil {
		writer.Close()
		return nil, err
	}
	reader.db.SetMaxOpenConns(readers)
	reader.db.SetMaxIdleConns(readers)

	db := &DB{path: path, writer: writer, reader: reader}
	db.SetNow(time.Now)
	// The writer connects first: it creates the file and switches it to WAL
	// before any reader opens it. Bounded by Ping's own five seconds and
	// the busy timeout rather than the call timeout, as on PostgreSQL: a
	// short call timeout is for answers.
	if err := whileBusy(ctx, busyTimeout, func() error { return db.Ping(withoutCallTimeout(ctx)) }); err != nil {
		db.Close()
		return nil, err
	}
	db.prepare(ctx)
	return db, nil
}

// openPool returns a pool of connections to the file at path with the DSN
// parameters params, each call bounded by timeout (deadline.go).
func openPool(path string, params url.Values, timeout time.Duration) (*pool, error) {
	base, err := sqlite.NewConnector("file:" + (&url.URL{Path: path}).EscapedPath() + "?" + params.Encode())
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "cannot open SQLite database %s", path)
	}
	return &pool{db: sql.OpenDB(connector{Connector: base, timeout: timeout}), timeout: timeout}, nil
}

// whileBusy calls f again while it fails with SQLITE_BUSY or SQLITE_LOCKED,
// for at most wait. SQLite answers SQLITE_BUSY without calling the busy
// handler where waiting could deadlock, and a connection's first statements
// (switching a new file to WAL) can meet that when processes open the file
// together: a CI run saw it once in TestMigrateConcurrentProcesses. By the
// next try the other process has switched the file, and the switch is a
// no-op. A failed connection is not kept by the pool, so each try connects
// anew.
func whileBusy(ctx context.Context, wait time.Duration, f func() error) error {
	deadline := time.Now().Add(wait)
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		err := f()
		if err == nil || !isBusy(err) || time.Now().Add(pause).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// isBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var serr *sqlite.Error
	if !errors.As(err, &serr) {
		return false
	}
	code := serr.Code() & 0xff
	return code == sqliteBusy || code == sqliteLocked
}

// prepare prepares the statements of every request. It fails on a
// database without the schema yet; Migrate calls it again.
func (db *DB) prepare(ctx context.Context) {
	for _, p := range []struct {
		stmt  *atomic.Pointer[sql.Stmt]
		on    *pool
		query string
	}{{&db.authStmt, db.reader, authenticateSQL}, {&db.findTierStmt, db.reader, findTierSQL},
		{&db.findModuleStmt, db.reader, findModuleSQL}, {&db.findModuleWasmStmt, db.reader, findModuleWasmSQL},
		{&db.insertRunsStmt, db.writer, insertRunsSQL(runsPerInsert, false)},
		{&db.insertRunsReturningStmt, db.writer, insertRunsSQL(runsPerInsert, true)}} {
		if p.stmt.Load() != nil {
			continue
		}
		st, err := p.on.PrepareContext(ctx, p.query)
		if err != nil {
			continue
		}
		if !p.stmt.CompareAndSwap(nil, st) {
			st.Close()
		}
	}
}

// queryRow runs a prepared statement, or its SQL before it is prepared.
func (db *DB) queryRow(ctx context.Context, stmt *atomic.Pointer[sql.Stmt], query string, args ...any) *sql.Row {
	if st := stmt.Load(); st != nil {
		return db.reader.queryRowStmt(ctx, st, args...)
	}
	return db.reader.QueryRowContext(ctx, query, args...)
}

// Close closes every connection.
func (db *DB) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{db.authStmt.Load(), db.findTierStmt.Load(),
		db.findModuleStmt.Load(), db.findModuleWasmStmt.Load(), db.insertRunsStmt.Load(), db.insertRunsReturningStmt.Load()} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(append(errs, db.reader.Close(), db.writer.Close())...)
}

// Ping checks that the database answers, for readiness: EUNAVAILABLE when
// it does not.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var one int
	if err := db.writer.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "SQLite database does not answer")
	}
	if err := db.reader.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&one); err != nil {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "SQLite database does not answer")
	}
	return nil
}

// SetNow replaces the clock the store reads (time.Now by default): tests
// move it to check expiry and last-use times.
func (db *DB) SetNow(now func() time.Time) { db.now.Store(&now) }

// Now returns the store's current time: UTC, to the millisecond, which is
// what the database keeps.
func (db *DB) Now() time.Time {
	return (*db.now.Load())().UTC().Truncate(time.Millisecond)
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// write runs fn in one write transaction, committed when fn returns nil.
func (db *DB) write(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return dbError(err, what)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return dbError(err, what)
	}
	return dbError(tx.Commit(), what)
}

// SQLite result codes the store maps to application errors.
const (
	sqliteBusy                 = 5
	sqliteLocked               = 6
	sqliteIOErr                = 10
	sqliteFull                 = 13
	sqliteCantOpen             = 14
	sqliteConstraint           = 19
	sqliteConstraintForeignKey = 787
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// dbError turns a driver error into an application error; what names the
// action for the message ("create user"). Application errors pass through.
func dbError(err error, what string) error {
	if err == nil || wasmwiz.HasCode(err) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return wasmwiz.WrapError(wasmwiz.ENOTFOUND, err, "%s: not found", what)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sql.ErrConnDone) {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "%s: database unavailable, retry later", what)
	}
	var serr *sqlite.Error
	if errors.As(err, &serr) {
		code := serr.Code()
		switch {
		case code == sqliteConstraintUnique || code == sqliteConstraintPrimaryKey:
			return wasmwiz.WrapError(wasmwiz.ECONFLICT, err, "%s: already exists", what)
		case code == sqliteConstraintForeignKey:
			return wasmwiz.WrapError(wasmwiz.EINVALID, err, "%s: refers to something that does not exist", what)
		case code&0xff == sqliteConstraint:
			return wasmwiz.WrapError(wasmwiz.EINVALID, err, "%s: invalid value", what)
		case code&0xff == sqliteBusy || code&0xff == sqliteLocked || code&0xff == sqliteIOErr ||
			code&0xff == sqliteFull || code&0xff == sqliteCantOpen:
			return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "%s: database unavailable, retry later", what)
		}
	}
	return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "%s failed", what)
}

// Times are stored as unix milliseconds.

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func msPtr(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// findQuery is the query of a Find: the columns of the rows of table (with
// its alias, if any) that match where (with args), in order; what names the
// rows in errors ("count what", "find what").
type findQuery struct {
	what, columns, table, where, order string
	args                               []any
}

// findPage answers a Find: the page of q's rows that limit and offset pick
// (page), each read by scan, and the count of q's rows up to
// wasmwiz.MaxListTotal. A page that ends short with rows on it, or the
// first page empty, says the count itself (offset + its rows: counted
// apart, rows written between the two reads made an empty first page of
// a total above zero); otherwise countRows counts, reading at
// most MaxListTotal+1 rows, so that neither a deep page nor a caller's
// many rows make a list read them all. EINVALID for an offset past
// wasmwiz.MaxListOffset.
func findPage[T any](ctx context.Context, db *DB, q findQuery, limit, offset int, scan func(row interface{ Scan(...any) error }) (T, error)) ([]T, wasmwiz.ListTotal, error) {
	if err := wasmwiz.CheckListOffset(offset); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	limit, offset = page(limit, offset)
	rows, err := db.reader.QueryContext(ctx, q.pageSQL(), append(q.args[:len(q.args):len(q.args)], limit, offset)...)
	out, err := collect(rows, err, scan)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, dbError(err, "find "+q.what)
	}
	if (len(out) > 0 || offset == 0) && len(out) < limit {
		return out, wasmwiz.CountedTotal(offset + len(out)), nil
	}
	total, err := countRows(ctx, db, q)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	return out, total, nil
}

// pageSQL is the query of a page of q's rows, its LIMIT and OFFSET the
// last two arguments.
func (q findQuery) pageSQL() string {
	return `SELECT ` + q.columns + ` FROM ` + q.table + ` WHERE ` + q.where + ` ORDER BY ` + q.order + ` LIMIT ? OFFSET ?`
}

// countSQL is the query of the count of q's rows up to its last argument.
func (q findQuery) countSQL() string {
	return `SELECT count(*) FROM (SELECT 1 FROM ` + q.table + ` WHERE ` + q.where + ` LIMIT ?)`
}

// countRows counts q's rows up to wasmwiz.MaxListTotal: the subquery stops
// at one row past it, which says that more match.
func countRows(ctx context.Context, db *DB, q findQuery) (wasmwiz.ListTotal, error) {
	var n int
	err := db.reader.QueryRowContext(ctx, q.countSQL(), append(q.args[:len(q.args):len(q.args)], wasmwiz.MaxListTotal+1)...).Scan(&n)
	if err != nil {
		return wasmwiz.ListTotal{}, dbError(err, "count "+q.what)
	}
	return wasmwiz.CountedTotal(n), nil
}

// collect reads every row of a query, given as the query returned it,
// through scan, and closes the rows.
func collect[T any](rows *sql.Rows, err error, scan func(row interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// column reads the one column of every row of a query (see collect).
func column[T any](rows *sql.Rows, err error) ([]T, error) {
	return collect(rows, err, func(row interface{ Scan(...any) error }) (v T, err error) {
		err = row.Scan(&v)
		return v, err
	})
}

// page returns the LIMIT and OFFSET of a filter (wasmwiz.ListLimit).
func page(limit, offset int) (int, int) {
	return wasmwiz.ListLimit(limit), max(offset, 0)
}
