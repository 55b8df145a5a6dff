package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// testCallTimeout is the call timeout of the deadline tests: far below
// the busy timeout (10 s) and the outer deadline, and above what an
// ordinary call takes on a loaded machine.
const testCallTimeout = 500 * time.Millisecond

// outerDeadline bounds each deadline test's calls, so that one the call
// timeout did not end fails the test instead of hanging it.
const outerDeadline = 12 * time.Second

// outerContext returns a context that ends outerDeadline from now, or
// when the test ends.
func outerContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), outerDeadline)
	t.Cleanup(cancel)
	return ctx
}

// countToABillion runs for minutes, yielding its first row at once.
const countToABillion = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) `

// openWith returns a migrated database in a new temp file opened with
// opts, closed at cleanup.
func openWith(t *testing.T, opts sqlite.Options) *sqlite.DB {
	t.Helper()
	db, err := sqlite.OpenWith(context.Background(), filepath.Join(t.TempDir(), "wasmwiz.db"), opts)
	if err != nil {
		t.Fatalf("OpenWith: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return migrate(t, db)
}

// wantCallTimeout fails the test unless err is EUNAVAILABLE because the
// call's own deadline passed: a context deadline, while the outer one has
// not (SQLite's busy timeout gives SQLITE_BUSY, and the outer deadline
// would have passed).
func wantCallTimeout(t *testing.T, outer context.Context, what string, err error) {
	t.Helper()
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !errors.Is(err, context.DeadlineExceeded) || outer.Err() != nil {
		t.Fatalf("%s: %v (code %q, outer context %v), want EUNAVAILABLE at the call timeout",
			what, err, wasmwiz.ErrorCode(err), outer.Err())
	}
}

// TestCallTimeoutEndsLongStatements: a statement that runs long fails
// EUNAVAILABLE at the call timeout, whether a read, the reading of its
// rows, a statement in a write transaction, or the queue's statement on
// the writer's pool; the pool's one connection answers again after.
func TestCallTimeoutEndsLongStatements(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, ctx context.Context, db *sqlite.DB) error
	}{
		{"read", func(t *testing.T, ctx context.Context, db *sqlite.DB) error {
			_, err := db.ReadForTest(ctx, countToABillion+`SELECT count(*) FROM c`)
			return err
		}},
		{"rows", func(t *testing.T, ctx context.Context, db *sqlite.DB) error {
			n, err := db.ReadForTest(ctx, countToABillion+`SELECT x FROM c`)
			if err != nil && n == 0 {
				t.Errorf("no row read before the deadline: the statement, not the reading, was cut")
			}
			return err
		}},
		{"write transaction", func(t *testing.T, ctx context.Context, db *sqlite.DB) error {
			return db.WriteForTest(ctx, `CREATE TEMP TABLE IF NOT EXISTS n AS `+countToABillion+`SELECT count(*) FROM c`)
		}},
		{"queue", func(t *testing.T, ctx context.Context, db *sqlite.DB) error {
			// River's statements, on the writer's *sql.DB: the driver's
			// error, which River reports as it is.
			var n int
			err := db.QueueDB().QueryRowContext(ctx, countToABillion+`SELECT count(*) FROM c`).Scan(&n)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("queue: %v, want the context's deadline", err)
			}
			return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "queue")
		}},
		{"queue's rows", func(t *testing.T, ctx context.Context, db *sqlite.DB) error {
			rows, err := db.QueueDB().QueryContext(ctx, countToABillion+`SELECT x FROM c`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); n == 0 || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("queue's rows: %v after %d rows, want the context's deadline after some", err, n)
			}
			return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, rows.Err(), "queue")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := openWith(t, sqlite.Options{CallTimeout: testCallTimeout, Readers: 1})
			ctx := outerContext(t)
			wantCallTimeout(t, ctx, tc.name, tc.run(t, ctx, db))
			// The one reader and the writer answer again.
			if _, err := db.CountUsers(ctx); err != nil {
				t.Fatalf("a read after: %v", err)
			}
			if err := db.CreateUser(wasmwiz.SystemContext(ctx), &wasmwiz.User{Email: "after@example.com"}); err != nil {
				t.Fatalf("a write after: %v", err)
			}
		})
	}
}

// TestCallTimeoutBoundsTheWaitForAConnection: while the one writer, or the
// only reader, is held (by a call stuck on it), a call waiting for it fails
// EUNAVAILABLE at the call timeout, also through a prepared statement; once
// it is released, calls answer again.
func TestCallTimeoutBoundsTheWaitForAConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		writer bool
		call   func(ctx context.Context, db *sqlite.DB) error
	}{
		{"writer", true, func(ctx context.Context, db *sqlite.DB) error {
			return db.CreateUser(wasmwiz.SystemContext(ctx), &wasmwiz.User{Email: "waits@example.com"})
		}},
		{"reader", false, func(ctx context.Context, db *sqlite.DB) error {
			_, err := db.CountUsers(ctx)
			return err
		}},
		{"reader, prepared statement", false, func(ctx context.Context, db *sqlite.DB) error {
			_, err := db.FindTier(wasmwiz.SystemContext(ctx), wasmwiz.TierFree)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := openWith(t, sqlite.Options{CallTimeout: testCallTimeout, Readers: 1})
			ctx := outerContext(t)
			release, err := db.HoldForTest(tc.writer)
			if err != nil {
				t.Fatal(err)
			}
			wantCallTimeout(t, ctx, "while the connection is held", tc.call(ctx, db))
			release()
			if err := tc.call(ctx, db); err != nil {
				t.Fatalf("after the connection was released: %v", err)
			}
		})
	}
}

// TestCallTimeoutEndsTheWaitForAnotherProcessLock: another connection to
// the file (another process, as the admin CLI) holds the write lock; a
// write fails EUNAVAILABLE at the call timeout, not at the busy timeout
// (10 s), while reads go on (WAL); once the lock is released, it writes.
func TestCallTimeoutEndsTheWaitForAnotherProcessLock(t *testing.T) {
	t.Parallel()
	db := openWith(t, sqlite.Options{CallTimeout: testCallTimeout})
	ctx := outerContext(t)
	release := lockFile(t, ctx, db)
	defer release()
	write := func() error {
		return db.CreateUser(wasmwiz.SystemContext(ctx), &wasmwiz.User{Email: "locked@example.com"})
	}
	wantCallTimeout(t, ctx, "a write while another connection holds the lock", write())
	if _, err := db.CountUsers(ctx); err != nil {
		t.Fatalf("a read while another connection holds the write lock: %v", err)
	}
	release()
	if err := write(); err != nil {
		t.Fatalf("a write after the lock was released: %v", err)
	}
}

// TestMigrationsHaveNoCallTimeout: with a call timeout no call can meet,
// the migrations still run, and the calls after them fail EUNAVAILABLE.
func TestMigrationsHaveNoCallTimeout(t *testing.T) {
	t.Parallel()
	db := openWith(t, sqlite.Options{CallTimeout: time.Nanosecond})
	ctx := outerContext(t)
	_, err := db.CountUsers(ctx)
	wantCallTimeout(t, ctx, "a call after the migrations", err)
}

// TestOwnDeadlineOutlastsTheCallTimeout: a write whose context is marked
// by wasmwiz.WithOwnDeadline waits, up to that context's deadline (3 s),
// for the writer that another call holds (the writer's pooled connection,
// or another process's write lock) past the call timeout (100 ms), and
// succeeds once it is released; the same write unmarked fails EUNAVAILABLE
// at the call timeout. A marked context without a deadline still gets the
// call timeout.
func TestOwnDeadlineOutlastsTheCallTimeout(t *testing.T) {
	t.Parallel()
	const callTimeout = 100 * time.Millisecond
	const held = 500 * time.Millisecond // how long the writer is held: past the call timeout
	for _, tc := range []struct {
		name string
		// hold takes the writer; release gives it back.
		hold func(t *testing.T, ctx context.Context, db *sqlite.DB) (release func())
	}{
		{"the writer's connection", func(t *testing.T, _ context.Context, db *sqlite.DB) func() {
			release, err := db.HoldForTest(true)
			if err != nil {
				t.Fatal(err)
			}
			return release
		}},
		{"another process's write lock", func(t *testing.T, ctx context.Context, db *sqlite.DB) func() {
			return lockFile(t, ctx, db)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := openWith(t, sqlite.Options{CallTimeout: callTimeout})
			ctx := outerContext(t)
			n := 0
			write := func(ctx context.Context) error {
				n++
				return db.CreateUser(wasmwiz.SystemContext(ctx), &wasmwiz.User{Email: fmt.Sprintf("own%d@example.com", n)})
			}

			release := tc.hold(t, ctx, db)
			wantCallTimeout(t, ctx, "an unmarked write while the writer is held", write(ctx))
			release()

			release = tc.hold(t, ctx, db)
			own, ownCancel := context.WithTimeout(wasmwiz.WithOwnDeadline(ctx), 3*time.Second)
			defer ownCancel()
			done := make(chan error, 1)
			go func() { done <- write(own) }()
			select {
			case err := <-done:
				release()
				t.Fatalf("a marked write returned while the writer was held: %v", err)
			case <-time.After(held):
			}
			release()
			if err := testenv.Recv(t, done, "the marked write"); err != nil {
				t.Fatalf("a marked write with its own deadline, the writer released past the call timeout: %v", err)
			}
		})
	}

	t.Run("marked without a deadline", func(t *testing.T) {
		t.Parallel()
		db := openWith(t, sqlite.Options{CallTimeout: callTimeout})
		ctx := outerContext(t)
		release := lockFile(t, ctx, db)
		defer release()
		// No deadline but the call timeout's: were it not applied, the wait
		// would end at the busy timeout (10 s) with SQLITE_BUSY.
		err := db.CreateUser(wasmwiz.SystemContext(wasmwiz.WithOwnDeadline(context.WithoutCancel(ctx))),
			&wasmwiz.User{Email: "unbounded@example.com"})
		wantCallTimeout(t, ctx, "a marked write without a deadline while the file is locked", err)
	})
}

// lockFile takes the write lock of db's file from another connection, as
// another process would, until release.
func lockFile(t *testing.T, ctx context.Context, db *sqlite.DB) (release func()) {
	t.Helper()
	locker, err := sql.Open("sqlite", "file:"+db.Path())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := locker.Conn(ctx)
	if err != nil {
		locker.Close()
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		conn.Close()
		locker.Close()
		t.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			locker.Close()
		})
	}
}
