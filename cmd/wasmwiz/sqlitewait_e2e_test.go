package main

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
)

// TestServeSQLiteWaitBounded: serve on SQLite with WASMWIZ_DATABASE_TIMEOUT
// 1s while another process holds the file's write lock (as the admin CLI
// may): a user's write answers 503 EUNAVAILABLE with Retry-After at the
// timeout, before SQLite's busy timeout (10 s) would have ended the wait,
// and reads go on; once the lock is released, the write goes through.
func TestServeSQLiteWaitBounded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wasmwiz.db")
	s := startServe(t, serveEnv(t, map[string]string{"WASMWIZ_DATABASE_URL": path, "WASMWIZ_DATABASE_TIMEOUT": "1s"}), ServeOptions{})
	user, _, _ := s.newUser(wasmwiz.TierFree)
	setupRetry(t, "a read before the lock", func() error { // the key's last use is written now, not under the lock
		_, err := user.Me(context.Background())
		return err
	})

	locker, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	// Below the busy timeout: a write that waited for it fails here, with
	// no answer, instead of answering 503.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	_, err = user.CreateKey(ctx, "under the lock", nil)
	if d, ok := client.RetryAfter(err); client.StatusCode(err) != http.StatusServiceUnavailable || codeOf(err) != wasmwiz.EUNAVAILABLE || !ok || d <= 0 {
		t.Fatalf("a write while another process holds the lock: %v, want 503 EUNAVAILABLE with Retry-After", err)
	}
	if _, _, err := user.ListKeys(ctx, false, client.Page{}); err != nil {
		t.Fatalf("a read while another process holds the write lock: %v", err)
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	setupRetry(t, "a write after the lock", func() error {
		_, err := user.CreateKey(context.Background(), "after the lock", nil)
		return err
	})
}

// TestSQLiteReadersOutnumberOneUser: the SQLite store has, beside what a
// user at its WASMWIZ_MAX_USER_REQUESTS bound can hold (two readers a
// request), its default number of readers, up to the pool's cap; with no
// bound the pool is at its cap.
func TestSQLiteReadersOutnumberOneUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ bound, want int }{
		{1, sqlite.DefaultReaders() + 2},
		{wwhttp.DefaultMaxUserRequests, sqlite.DefaultReaders() + 2*wwhttp.DefaultMaxUserRequests},
		{100, maxSQLiteReaders},
		{0, maxSQLiteReaders},
	} {
		if got := sqliteReaders(&Config{MaxUserRequests: tc.bound}); got != min(tc.want, maxSQLiteReaders) {
			t.Errorf("WASMWIZ_MAX_USER_REQUESTS %d: %d readers, want %d", tc.bound, got, min(tc.want, maxSQLiteReaders))
		}
	}
}
