// Alike on purpose: internal/postgres/deadline.go is this file for PostgreSQL (the
// same deadline, reached through pgx's tracer there, through database/sql here).

package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"reflect"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// DefaultCallTimeout bounds each call to the database when Options does not
// say otherwise.
const DefaultCallTimeout = 5 * time.Second

// Every wait for the database has a deadline: a call's wait for a pooled
// connection (the one writer, or one of the readers), then its statement,
// the reading of its rows until they are closed, or a transaction from its
// BEGIN to its COMMIT. Past it the call fails with the context's error,
// which dbError makes EUNAVAILABLE. A slow statement (a large scan), a
// queue behind the single writer, or another process's write lock then
// costs a caller at most the timeout instead of holding its request, and
// whatever slots the request holds, for as long as the others take.
//
// Two places give it, so that no method has to:
//
//   - pool, the type of the store's two database/sql pools, starts each
//     call's deadline before database/sql waits for a connection (which only
//     the caller's context can end), and stores the deadline's cancel in the
//     context. database/sql hands that same context to the driver.
//   - conn, the driver connection every pool connects through, runs each
//     statement under a deadline: a pool call's, which it ends when the
//     call's rows or transaction close, or else one of its own (statements
//     in a transaction, whose context is the caller's, end at the
//     transaction's deadline; the queue's statements, which River sends
//     through the writer's *sql.DB, at the timeout).
//
// modernc.org/sqlite honours the context: a statement whose context ends
// before its first row is interrupted (sqlite3_interrupt), a wait for
// another connection's lock under the busy timeout ends, Next and Close
// stop waiting for a lock, and COMMIT watches the transaction's context.
// Past the first row, the reading stops at the next row (rows.Next here;
// database/sql also closes a query's rows, and rolls back a transaction,
// once the context it was given ends). modernc offers no way to interrupt
// a later step, so one that scans long for its next row ends at that row:
// past the deadline by that one step.
//
// A context that already ends sooner keeps its own deadline; one marked by
// withoutCallTimeout (migrations, which may rewrite large tables) gets
// none; one marked by wasmwiz.WithOwnDeadline that has a deadline is bounded
// by that deadline alone, also when it is later than the timeout (the
// finish of a background run, a usage batch: background work that may wait
// longer for the writer than a request should), and one so marked without
// a deadline gets the timeout as any other. A transaction is bounded as a whole, not statement by statement as
// on PostgreSQL: a write transaction holds the file's only write lock, and
// a read one one of the few readers, so others wait for all of it.

type noTimeoutKey struct{}

// callKey holds the context.CancelFunc of a pool call's deadline.
type callKey struct{}

// withoutCallTimeout marks ctx for statements that may legitimately take
// longer than the call timeout.
func withoutCallTimeout(ctx context.Context) context.Context {
	return context.WithValue(ctx, noTimeoutKey{}, true)
}

// pool is one of the store's database/sql pools, each of whose calls has a
// deadline from before it waits for a connection. Its methods are those of
// *sql.DB that the store uses.
type pool struct {
	db      *sql.DB
	timeout time.Duration // 0 or negative: none
}

// call returns ctx with the call's deadline, and its cancel, also stored
// in the context for the connection (see conn.bound).
func (p *pool) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.timeout <= 0 || ctx.Value(noTimeoutKey{}) != nil {
		return ctx, func() {}
	}
	var cancel context.CancelFunc
	if _, own := wasmwiz.OwnDeadline(ctx); own {
		// Its deadline is the call's: the connection sees a pool call,
		// and takes no timeout of its own.
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
	}
	return context.WithValue(ctx, callKey{}, cancel), cancel
}

// ExecContext is sql.DB.ExecContext under the call timeout.
func (p *pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, cancel := p.call(ctx)
	defer cancel()
	return p.db.ExecContext(ctx, query, args...)
}

// QueryContext is sql.DB.QueryContext under the call timeout, which ends
// when the rows close.
func (p *pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx, cancel := p.call(ctx)
	rows, err := p.db.QueryContext(ctx, query, args...)
	if err != nil {
		cancel()
	}
	return rows, err
}

// QueryRowContext is sql.DB.QueryRowContext under the call timeout, which
// ends when the row is scanned.
func (p *pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx, cancel := p.call(ctx)
	row := p.db.QueryRowContext(ctx, query, args...)
	if row.Err() != nil {
		cancel()
	}
	return row
}

// queryRowStmt is st.QueryRowContext, st prepared on p, under the call
// timeout: it too waits for one of p's connections.
func (p *pool) queryRowStmt(ctx context.Context, st *sql.Stmt, args ...any) *sql.Row {
	ctx, cancel := p.call(ctx)
	row := st.QueryRowContext(ctx, args...)
	if row.Err() != nil {
		cancel()
	}
	return row
}

// BeginTx is sql.DB.BeginTx under the call timeout, which bounds the
// transaction until it commits or rolls back.
func (p *pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	ctx, cancel := p.call(ctx)
	tx, err := p.db.BeginTx(ctx, opts)
	if err != nil {
		cancel()
	}
	return tx, err
}

// PrepareContext is sql.DB.PrepareContext under the call timeout.
func (p *pool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	ctx, cancel := p.call(ctx)
	defer cancel()
	return p.db.PrepareContext(ctx, query)
}

// Close closes the pool.
func (p *pool) Close() error { return p.db.Close() }

// connector makes the pools' connections: modernc's, each wrapped in a
// conn.
type connector struct {
	driver.Connector
	timeout time.Duration
}

// baseConn is what a connection of modernc.org/sqlite implements and conn
// passes on (NewConnector's documentation lists it).
type baseConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// baseStmt is what a statement of modernc.org/sqlite implements.
type baseStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	base, ok := dc.(baseConn)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("sqlite driver connection %T lacks the context methods", dc)
	}
	return &conn{base: base, timeout: c.timeout}, nil
}

// conn is a driver connection whose every statement has a deadline.
// database/sql calls it from one goroutine at a time.
type conn struct {
	base    baseConn
	timeout time.Duration
	// txDeadline is the deadline of the transaction in progress, if it
	// has one: its statements end there too.
	txDeadline time.Time
}

// Interface checks: database/sql finds these by type assertion.
var (
	_ baseConn                              = (*conn)(nil)
	_ driver.RowsColumnTypeScanType         = (*rows)(nil)
	_ driver.RowsColumnTypeLength           = (*rows)(nil)
	_ driver.RowsColumnTypeNullable         = (*rows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*rows)(nil)
	_ driver.RowsColumnTypeDatabaseTypeName = (*rows)(nil)
)

// bound returns the context of one call on the connection and the function
// that ends its deadline. lasting says that the call's result, rows or a
// transaction, outlives the call: its deadline then ends when that closes.
func (c *conn) bound(ctx context.Context, lasting bool) (context.Context, func()) {
	if cancel, ok := ctx.Value(callKey{}).(context.CancelFunc); ok {
		// A pool call: its deadline began before the wait for this
		// connection, and the pool ends it when the call returns, but
		// for rows or a transaction.
		if lasting {
			return ctx, cancel
		}
		return ctx, func() {}
	}
	_, own := wasmwiz.OwnDeadline(ctx)
	switch {
	case c.timeout <= 0 || ctx.Value(noTimeoutKey{}) != nil || own:
		return ctx, func() {}
	case !c.txDeadline.IsZero():
		return context.WithDeadline(ctx, c.txDeadline)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// Unwrap returns modernc's connection (modernc's sqlite.Limit looks for it).
func (c *conn) Unwrap() driver.Conn { return c.base }

func (c *conn) Close() error { return c.base.Close() }

func (c *conn) IsValid() bool { return c.base.IsValid() }

func (c *conn) ResetSession(ctx context.Context) error { return c.base.ResetSession(ctx) }

func (c *conn) Ping(ctx context.Context) error {
	ctx, end := c.bound(ctx, false)
	defer end()
	return c.base.Ping(ctx)
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	ctx, end := c.bound(ctx, false)
	defer end()
	ds, err := c.base.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(baseStmt)
	if !ok {
		ds.Close()
		return nil, fmt.Errorf("sqlite driver statement %T lacks the context methods", ds)
	}
	return &stmt{base: st, c: c}, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ctx, end := c.bound(ctx, false)
	defer end()
	return c.base.ExecContext(ctx, query, args)
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	ctx, end := c.bound(ctx, true)
	r, err := c.base.QueryContext(ctx, query, args)
	if err != nil {
		end()
		return nil, err
	}
	return &rows{Rows: r, ctx: ctx, end: end}, nil
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	ctx, end := c.bound(ctx, true)
	t, err := c.base.BeginTx(ctx, opts)
	if err != nil {
		end()
		return nil, err
	}
	c.txDeadline, _ = ctx.Deadline()
	return &tx{base: t, c: c, end: end}, nil
}

// tx is a transaction, bounded until it commits or rolls back: modernc's
// COMMIT runs under the context it began with.
type tx struct {
	base driver.Tx
	c    *conn
	end  func()
}

func (t *tx) Commit() error {
	defer t.done()
	return t.base.Commit()
}

func (t *tx) Rollback() error {
	defer t.done()
	return t.base.Rollback()
}

func (t *tx) done() {
	t.c.txDeadline = time.Time{}
	t.end()
}

// stmt is a prepared statement, whose every run has a deadline.
type stmt struct {
	base baseStmt
	c    *conn
}

func (s *stmt) Close() error  { return s.base.Close() }
func (s *stmt) NumInput() int { return s.base.NumInput() }

// Exec and Query run without a deadline; database/sql calls them only on
// a statement that lacks ExecContext and QueryContext, which this has.

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) { return s.base.Exec(args) }

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) { return s.base.Query(args) }

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	ctx, end := s.c.bound(ctx, false)
	defer end()
	return s.base.ExecContext(ctx, args)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	ctx, end := s.c.bound(ctx, true)
	r, err := s.base.QueryContext(ctx, args)
	if err != nil {
		end()
		return nil, err
	}
	return &rows{Rows: r, ctx: ctx, end: end}, nil
}

// rows are a query's rows, read until their deadline, which ends when
// they close. database/sql closes them at the end of the context it was
// given; this also ends the reading of rows whose caller's context has no
// deadline (in a transaction, or the queue's).
type rows struct {
	driver.Rows
	ctx context.Context
	end func()
}

func (r *rows) Next(dest []driver.Value) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	return r.Rows.Next(dest)
}

func (r *rows) Close() error {
	defer r.end()
	return r.Rows.Close()
}

// The column types, as the driver's rows tell them; database/sql's own
// answers where they do not.

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	if v, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return v.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if v, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return v.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if v, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return v.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if v, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return v.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if v, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return v.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

// WithoutCallTimeout marks ctx for the calls of another migration runner on
// this store's connections (River's, internal/queue), which the store's
// call timeout must not cut as it does not cut the store's own migrations.
func WithoutCallTimeout(ctx context.Context) context.Context { return withoutCallTimeout(ctx) }
