// Alike on purpose: internal/sqlite/db.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

// Package postgres implements WasmWiz's stores on PostgreSQL with pgx/v5: the
// production database. It passes the same conformance suite as the embedded
// SQLite store (internal/storetest) and shares its schema (docs/SCHEMA.md).
//
// Every method takes its caller from the context (wasmwiz.UserFromContext)
// and scopes its SQL by that caller's id, so that tenancy holds in the query
// itself and not only in the Go code around it.
package postgres

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wasmwiz/wasmwiz"
)

// DB is the PostgreSQL store. It implements wasmwiz.UserService,
// APIKeyService, TierService, ModuleService and RunService. It is safe for
// concurrent use.
type DB struct {
	pool *pgxpool.Pool

	nowMu sync.RWMutex
	clock func() time.Time

	// lastUsed throttles writes of api_keys.last_used_at: a key that
	// authenticates many times a second is written at most once per
	// lastUsedEvery per replica.
	lastUsedMu sync.Mutex
	lastUsed   map[int64]time.Time

	copyThreshold int // batch size from which CreateRuns uses COPY
}

// Interface checks.
var (
	_ wasmwiz.UserService   = (*DB)(nil)
	_ wasmwiz.APIKeyService = (*DB)(nil)
	_ wasmwiz.TierService   = (*DB)(nil)
	_ wasmwiz.ModuleService = (*DB)(nil)
	_ wasmwiz.RunService    = (*DB)(nil)
)

// lastUsedEvery is how stale api_keys.last_used_at may be.
const lastUsedEvery = time.Minute

// Open connects to the database at url (postgres://…; pgxpool's pool_*
// parameters size the pool, connect_timeout bounds a connection attempt
// (default 5s), and any other extra query parameter, such as search_path,
// is passed to the server as a run-time setting) and checks that it
// answers. It returns EINVALID for a malformed URL and EUNAVAILABLE when
// the database does not answer. Open does not migrate: call Migrate.
func Open(ctx context.Context, url string) (*DB, error) {
	return OpenWith(ctx, url, Options{})
}

// Options tune a store beyond its URL. The zero value is the default.
type Options struct {
	// CallTimeout bounds each wait for the database: for a pooled
	// connection, and for each statement's result (DefaultCallTimeout when
	// zero; negative: none). A caller whose context ends sooner keeps its
	// own deadline. Migrations are not bounded by it.
	CallTimeout time.Duration
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The error text of ParseConfig may hold the password; keep it out.
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid PostgreSQL URL")
	}
	// A dead connection is found by its next query; health checks every
	// few seconds make a database that came back usable again sooner.
	cfg.HealthCheckPeriod = 5 * time.Second
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	timeout := opts.CallTimeout
	if timeout == 0 {
		timeout = DefaultCallTimeout
	}
	if cfg.ConnConfig.Tracer == nil {
		cfg.ConnConfig.Tracer = deadlines{timeout: timeout}
	}
	// Day boundaries (Stats' runs per day) are UTC days whatever the
	// server's default time zone.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	// pgxpool's default (4 on this kind of machine) queues a busy replica's
	// key lookups behind each other; pool_max_conns in the URL still wins.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = int32(max(10, 4*runtime.NumCPU()))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "cannot connect to PostgreSQL")
	}
	db := &DB{pool: pool, clock: time.Now, lastUsed: make(map[int64]time.Time), copyThreshold: defaultCopyThreshold}
	// The first connection is made here, at start, bounded by Ping's own
	// five seconds and the connect timeout rather than the call timeout: a
	// short call timeout is for answers, and a fresh connection (TLS,
	// authentication) on a loaded machine may take longer than one.
	if err := db.Ping(withoutCallTimeout(ctx)); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes every connection. It always returns nil; the error is there
// so that DB is an io.Closer.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Ping checks that the database answers: EUNAVAILABLE when it does not.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.pool.Ping(ctx); err != nil {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "PostgreSQL does not answer")
	}
	return nil
}

// Pool returns the underlying connection pool, for benchmarks and tests.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// SetNow replaces the store's clock, for tests. Every time the store
// writes or compares against "now" comes from this clock, never from the
// database server.
func (db *DB) SetNow(now func() time.Time) {
	db.nowMu.Lock()
	defer db.nowMu.Unlock()
	db.clock = now
}

// now returns the clock's time in UTC at the database's precision.
func (db *DB) now() time.Time {
	db.nowMu.RLock()
	defer db.nowMu.RUnlock()
	return db.clock().UTC().Truncate(time.Microsecond)
}

// PostgreSQL error codes the store maps to application errors.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
	pgCheckViolation      = "23514"
)

// dbError turns a driver error into an application error. what names the
// action for the message ("create user").
func dbError(err error, what string) error {
	if err == nil || wasmwiz.HasCode(err) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return wasmwiz.WrapError(wasmwiz.ENOTFOUND, err, "not found")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == pgUniqueViolation:
			return wasmwiz.WrapError(wasmwiz.ECONFLICT, err, "%s: already exists", what)
		case pgErr.Code == pgForeignKeyViolation || pgErr.Code == pgCheckViolation:
			return wasmwiz.WrapError(wasmwiz.EINVALID, err, "%s: refers to something that does not exist", what)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),          // insufficient resources
			strings.HasPrefix(pgErr.Code, "57"),          // operator intervention (shutdown)
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "%s: database unavailable, retry later", what)
		}
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "%s failed", what)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		isConnError(err) {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "%s: database unavailable, retry later", what)
	}
	return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "%s failed", what)
}

// isConnError reports whether err comes from a lost or refused connection,
// which pgx reports with several error types.
func isConnError(err error) bool {
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	s := err.Error()
	for _, frag := range []string{"conn closed", "connection refused", "connection reset", "broken pipe",
		"unexpected EOF", "EOF", "failed to connect", "closed pool"} {
		if strings.Contains(s, frag) {
			return true
		}
	}
	return false
}

// utcPtr returns *t in UTC, and nil for nil.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// findQuery is the query of a Find: the columns of the rows of table (whose
// key is id) that match where (a WHERE clause, with args), in order; what
// names the rows in errors ("find what", "count what").
type findQuery struct {
	what, columns, table, where, order string
	args                               []any
}

// findPage answers a Find: the page of q's rows that limit and offset pick
// (pageSQL), each read by scan, and the count of q's rows up to
// wasmwiz.MaxListTotal. A page that ends short with rows on it, or the
// first page empty, says the count itself (offset + its rows: counted
// apart, rows written between the two reads made an empty first page of
// a total above zero); otherwise countRows counts, reading at
// most MaxListTotal+1 rows, so that neither a deep page nor a caller's
// many rows make a list read them all. EINVALID for an offset past
// wasmwiz.MaxListOffset.
//
// The page's ids are picked first, its rows read by id after: the ids of
// the rows an offset skips come from an index in order (runs: an
// index-only scan of runs (user_id, created_at, id), migration 0019),
// where a plan that read whole rows would, in a generic plan sized for an
// average caller, read and sort every row of a caller with many.
func findPage[T any](ctx context.Context, db *DB, q findQuery, limit, offset int, scan func(row pgx.Row) (T, error)) ([]T, wasmwiz.ListTotal, error) {
	if err := wasmwiz.CheckListOffset(offset); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	limit = wasmwiz.ListLimit(limit)
	rows, err := db.pool.Query(ctx, `SELECT `+q.columns+` FROM `+q.table+` WHERE id IN (SELECT id FROM `+q.table+` `+q.where+
		` ORDER BY `+q.order+pageSQL(limit, offset)+`) ORDER BY `+q.order, q.args...)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, dbError(err, "find "+q.what)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, wasmwiz.ListTotal{}, dbError(err, "find "+q.what)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
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

// countRows counts q's rows up to wasmwiz.MaxListTotal: the subquery stops
// at one row past it, which says that more match.
func countRows(ctx context.Context, db *DB, q findQuery) (wasmwiz.ListTotal, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+q.table+` `+q.where+
		` LIMIT `+strconv.Itoa(wasmwiz.MaxListTotal+1)+`) AS matching`, q.args...).Scan(&n)
	if err != nil {
		return wasmwiz.ListTotal{}, dbError(err, "count "+q.what)
	}
	return wasmwiz.CountedTotal(n), nil
}

// pageSQL returns the LIMIT/OFFSET clause of a listing (limit is
// wasmwiz.ListLimit's).
func pageSQL(limit, offset int) string {
	clause := " LIMIT " + strconv.Itoa(limit)
	if offset > 0 {
		clause += " OFFSET " + strconv.Itoa(offset)
	}
	return clause
}
