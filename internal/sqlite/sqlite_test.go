package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/storetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

// open returns a migrated database in a new temp file, closed at cleanup.
func open(t testing.TB) *sqlite.DB {
	t.Helper()
	return migrate(t, openEmpty(t))
}

// mustUser creates a user with email (through the system context) and
// returns it with a context that carries it.
func mustUser(t testing.TB, db *sqlite.DB, email string) (*wasmwiz.User, context.Context) {
	t.Helper()
	u := &wasmwiz.User{Email: email}
	if err := db.CreateUser(wasmwiz.SystemContext(context.Background()), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u, wasmwiz.NewContextWithUser(context.Background(), u)
}

// openEmpty returns a database in a new temp file that was never migrated.
func openEmpty(t testing.TB) *sqlite.DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "wasmwiz.db"))
}

// migrate migrates db and returns it.
func migrate(t testing.TB, db *sqlite.DB) *sqlite.DB {
	t.Helper()
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

// openAt opens the database at path, closed at cleanup (a test may close
// it before).
func openAt(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t) })
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	storetest.RunMigrations(t, func(t *testing.T) storetest.Migrating { return openEmpty(t) })
}

// TestMigrateConcurrentProcesses starts several processes (this test binary
// again) that open and migrate one new file at the same moment: every one
// succeeds and each migration is applied once.
func TestMigrateConcurrentProcesses(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shared.db")
	const procs = 4
	testenv.Children(t, procs, "TestMigrateHelperProcess", "WASMWIZ_SQLITE_MIGRATE_HELPER="+path)
	db := openAt(t, path)
	versions, err := db.MigrationVersions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(versions) != fmt.Sprint(allVersions()) {
		t.Fatalf("after %d concurrent migrations schema_migrations holds %v, want %v", procs, versions, allVersions())
	}
	tiers, err := db.ListTiers(wasmwiz.SystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	if len(tiers) != len(wasmwiz.DefaultTiers()) {
		t.Fatalf("%d tiers after concurrent migrations, want %d", len(tiers), len(wasmwiz.DefaultTiers()))
	}
}

// TestMigrateHelperProcess is the body of one process of
// TestMigrateConcurrentProcesses; run on its own it does nothing.
func TestMigrateHelperProcess(t *testing.T) {
	path := os.Getenv("WASMWIZ_SQLITE_MIGRATE_HELPER")
	if path == "" {
		t.Skip("helper process of TestMigrateConcurrentProcesses")
	}
	migrate(t, openAt(t, path))
}

func TestMigrateRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	db := open(t)
	if err := db.ExecForTest(context.Background(), `INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)`); err != nil {
		t.Fatal(err)
	}
	err := db.Migrate(context.Background())
	if wasmwiz.ErrorCode(err) != wasmwiz.EINTERNAL || !strings.Contains(wasmwiz.ErrorMessage(err), "newer") {
		t.Fatalf("Migrate of a newer schema: %v, want EINTERNAL saying it is newer", err)
	}
}

// TestKeyPlaintextNeverStored looks for the plaintext of a key in every byte
// of the database files.
func TestKeyPlaintextNeverStored(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	db := migrate(t, openAt(t, path))
	ctx := context.Background()
	_, boot, created, err := db.Bootstrap(ctx, "admin@example.com")
	if err != nil || !created {
		t.Fatalf("Bootstrap: %v, created %v", err, created)
	}
	u := &wasmwiz.User{Email: "u@example.com"}
	if err := db.CreateUser(wasmwiz.SystemContext(ctx), u); err != nil {
		t.Fatal(err)
	}
	_, plain, err := db.CreateAPIKey(wasmwiz.SystemContext(ctx), u.ID, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + "*")
	digestFound := false
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{boot, plain} {
			secret := key[wasmwiz.APIKeyVisiblePrefixLen:]
			if bytes.Contains(b, []byte(secret)) {
				t.Fatalf("%s holds the secret part of a key", filepath.Base(f))
			}
		}
		digestFound = digestFound || bytes.Contains(b, []byte(wasmwiz.HashAPIKey(plain)))
	}
	if !digestFound {
		t.Fatal("the key's digest is not in the database files either: the test looked in the wrong place")
	}
}

func TestOpenRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "not.db")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("this is not a database "), 200), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		code string
	}{
		{"empty path", "", wasmwiz.EINVALID},
		{"in memory", ":memory:", wasmwiz.EINVALID},
		{"a URI", "file:" + filepath.Join(dir, "uri.db"), wasmwiz.EINVALID},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "x.db"), wasmwiz.EUNAVAILABLE},
		{"not a database", notDB, wasmwiz.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := sqlite.Open(context.Background(), tt.path)
			if err == nil {
				err = db.Migrate(context.Background())
				db.Close()
			}
			if got := wasmwiz.ErrorCode(err); got != tt.code {
				t.Fatalf("Open(%q): %v (code %q), want %q", tt.path, err, got, tt.code)
			}
		})
	}
}

// TestWritersAndReadersConcurrently hammers the store from many goroutines:
// writes queue on the one writer connection instead of failing busy.
func TestWritersAndReadersConcurrently(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	u, uctx := mustUser(t, db, "u@example.com")
	_, plain, err := db.CreateAPIKey(wasmwiz.SystemContext(ctx), u.ID, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				at := time.Now()
				r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), UserID: u.ID, Status: wasmwiz.StatusOK, CreatedAt: at, Tier: "free"}
				if err := db.CreateRuns(ctx, []*wasmwiz.UsageRecord{r}); err != nil {
					errs <- fmt.Errorf("worker %d write %d: %w", w, i, err)
				}
				if _, _, err := db.Authenticate(ctx, plain); err != nil {
					errs <- fmt.Errorf("worker %d auth %d: %w", w, i, err)
				}
				if _, _, err := db.FindRuns(uctx, wasmwiz.RunFilter{Limit: 5}); err != nil {
					errs <- fmt.Errorf("worker %d read %d: %w", w, i, err)
				}
			}
		}()
	}
	testenv.Wait(t, "the concurrent writers", wg.Wait)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, total, err := db.FindRuns(uctx, wasmwiz.RunFilter{})
	if err != nil || total.Count != workers*each {
		t.Fatalf("FindRuns: %d runs, %v; want %d", total.Count, err, workers*each)
	}
}

// TestUsageWriterIntoSQLite wires the buffered writer to the real store:
// records of many requests land once each, and bump their module.
func TestUsageWriterIntoSQLite(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	u, uctx := mustUser(t, db, "u@example.com")
	m := &wasmwiz.Module{Name: "m", Wasm: []byte("\x00asm\x01\x00\x00\x00")}
	if err := db.CreateModule(uctx, m); err != nil {
		t.Fatal(err)
	}
	w := usage.New(db, usage.Options{BatchSize: 7, FlushInterval: time.Millisecond})
	const n = 100
	for i := range n {
		r := &wasmwiz.UsageRecord{UserID: u.ID, ModuleID: m.ID, ModuleSHA256: m.SHA256, Tier: wasmwiz.TierFree, Status: wasmwiz.StatusOK}
		if i%10 == 9 {
			r.Status, r.ModuleID, r.ErrorCode = "", "", wasmwiz.ERATELIMIT // refused: recorded, not run
		}
		w.Record(r)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, total, err := db.FindRuns(uctx, wasmwiz.RunFilter{})
	if err != nil || total.Count != n {
		t.Fatalf("FindRuns: %d runs, %v; want %d", total.Count, err, n)
	}
	got, err := db.FindModuleByID(uctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RunCount != n-n/10 || got.LastRunAt == nil {
		t.Fatalf("module run count %d, last run %v; want %d and a time", got.RunCount, got.LastRunAt, n-n/10)
	}
	if st := w.Stats(); st.Written != n || st.Dropped != 0 || st.Buffered != 0 {
		t.Fatalf("writer stats %+v", st)
	}
}

// TestCreateRunsUnprepared: a store opened before another one migrated
// its file has not prepared its INSERT of usage records; CreateRuns
// prepares it for the batch, and counts as when it is prepared.
func TestCreateRunsUnprepared(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wasmwiz.db")
	early := openAt(t, path) // no schema yet: nothing prepared
	migrated := migrate(t, openAt(t, path))
	u, uctx := mustUser(t, migrated, "u@example.com")
	m := &wasmwiz.Module{Name: "m", Wasm: []byte("\x00asm\x01\x00\x00\x00")}
	if err := migrated.CreateModule(uctx, m); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	var runs []*wasmwiz.UsageRecord
	for i := range 120 {
		r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), UserID: u.ID, Tier: wasmwiz.TierFree, Status: wasmwiz.StatusOK, CreatedAt: at}
		if i%2 == 0 {
			r.ModuleID, r.ModuleSHA256 = m.ID, m.SHA256
		}
		runs = append(runs, r)
	}
	ctx := context.Background()
	for _, batch := range [][]*wasmwiz.UsageRecord{runs[:70], runs} {
		if err := early.CreateRuns(ctx, batch); err != nil {
			t.Fatalf("CreateRuns of %d runs: %v", len(batch), err)
		}
	}
	_, total, err := migrated.FindRuns(uctx, wasmwiz.RunFilter{})
	if err != nil || total.Count != len(runs) {
		t.Fatalf("FindRuns: %d runs, %v; want %d", total.Count, err, len(runs))
	}
	got, err := migrated.FindModuleByID(uctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RunCount != int64(len(runs)/2) {
		t.Fatalf("module run count %d, want %d", got.RunCount, len(runs)/2)
	}
}

func TestNewDatabaseFilesArePrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "private.db")
	migrate(t, openAt(t, path))
	files, _ := filepath.Glob(path + "*")
	if len(files) < 2 {
		t.Fatalf("want the database and its WAL files, found %v", files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Fatalf("%s has mode %v: others may read key digests and modules", filepath.Base(f), perm)
		}
	}
}

// TestUsageWriterWhileTheDatabaseIsLocked: another connection holds the
// file's write lock (as a stuck process would), so every write of the
// usage writer fails EUNAVAILABLE at its timeout; records are kept, and all
// are written once the lock is released.
func TestUsageWriterWhileTheDatabaseIsLocked(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	release := lockFile(t, ctx, db)
	defer release()

	w := usage.New(db, usage.Options{BatchSize: 5, FlushInterval: time.Millisecond,
		WriteTimeout: 20 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	const n = 23
	for i := range n {
		w.Record(&wasmwiz.UsageRecord{UserID: 1, Tier: wasmwiz.TierFree, Status: wasmwiz.StatusOK, DurationMS: float64(i)})
	}
	for w.Stats().Failures < 3 { // wait for the writer to have failed a few times
		time.Sleep(time.Millisecond)
	}
	if st := w.Stats(); st.Written != 0 || st.Buffered != n || st.Dropped != 0 {
		t.Fatalf("while locked: %+v, want all %d buffered", st, n)
	}
	release()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close after the lock was released: %v", err)
	}
	_, total, err := db.FindRuns(wasmwiz.NewContextWithUser(ctx, &wasmwiz.User{ID: 1, Role: wasmwiz.RoleUser}), wasmwiz.RunFilter{})
	if err != nil || total.Count != n {
		t.Fatalf("after the lock: %d runs stored, %v; want %d", total.Count, err, n)
	}
}

// TestOpenOddPaths: data directories may hold spaces and URL characters
// (macOS's "Application Support"); the file opened is the file named.
func TestOpenOddPaths(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"with space/x y.db", "hash#and?query%41/db", "ünïcode/wasmwiz.db"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), name)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			db, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != filepath.Base(path) {
				t.Fatalf("the directory holds %v, want only %s", entries, filepath.Base(path))
			}
			db, err = sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if v, err := db.MigrationVersions(context.Background()); err != nil || len(v) == 0 {
				t.Fatalf("reopened %q: versions %v, %v; want the migrated schema", path, v, err)
			}
		})
	}
}

// allVersions lists every embedded migration's version: 1, 2, ….
func allVersions() []int {
	var v []int
	for i := range sqlite.MigrationCount() {
		v = append(v, i+1)
	}
	return v
}

// TestWhileBusy: Open's first connection asks again while SQLite answers
// SQLITE_BUSY (a real one: a connection without a busy timeout meets
// another's write transaction), and only then; an error of another kind,
// or a busy database past the wait, is returned as it is.
func TestWhileBusy(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "busy.db")
	migrate(t, openAt(t, path))
	ctx := context.Background()
	conn, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = -1`); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	busyOnce := func() error {
		_, err := other.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = -3`)
		return err
	}
	busy := busyOnce()
	if busy == nil {
		t.Fatal("a second writer beside an open write transaction was not refused")
	}

	calls := 0
	if err := sqlite.WhileBusy(ctx, time.Minute, func() error {
		if calls++; calls < 3 {
			return busy
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("WhileBusy over two busy answers: %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	other2 := errors.New("not busy")
	if err := sqlite.WhileBusy(ctx, time.Minute, func() error { calls++; return other2 }); err != other2 || calls != 1 {
		t.Fatalf("WhileBusy over another error: %v after %d calls, want it after 1", err, calls)
	}
	calls = 0
	if err := sqlite.WhileBusy(ctx, 50*time.Millisecond, func() error { calls++; return busy }); err != busy || calls < 2 {
		t.Fatalf("WhileBusy past its wait: %v after %d calls, want the busy error after several", err, calls)
	}
	// Once the write transaction ends, the bare connection writes.
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.WhileBusy(ctx, time.Minute, busyOnce); err != nil {
		t.Fatalf("after the transaction ended: %v", err)
	}
}

// TestQueriesReadTheirIndexes: the queries a caller makes at will read its
// runs from runs (user_id, created_at, id) in the order they are listed (no
// sort of all of them: a page, and the rows an offset skips, cost only
// those rows), their count from the index alone, and a tier's retention
// reads runs (tier, created_at) rather than every older run of every tier
// (migration 0018). SQLite plans without statistics here (the store never
// runs ANALYZE), so a plan is the same on every machine.
func TestQueriesReadTheirIndexes(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	page, pageArgs, count, countArgs := sqlite.RunsPageForTest(1, wasmwiz.RunFilter{})
	filteredPage, filteredArgs, filteredCount, filteredCountArgs := sqlite.RunsPageForTest(1, wasmwiz.RunFilter{
		Status: wasmwiz.StatusTrap, Until: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	tierBatch, tierArgs := sqlite.RetentionBatchForTest(wasmwiz.TierFree)
	allBatch, allArgs := sqlite.RetentionBatchForTest("")
	tests := []struct {
		name, query string
		args        []any
		want        []string // lines of the plan
	}{
		{"a page of runs", page, pageArgs, []string{"SEARCH runs USING INDEX runs_user_id_created_at_id (user_id=?)"}},
		{"a page of runs by status, until", filteredPage, filteredArgs,
			[]string{"SEARCH runs USING INDEX runs_user_id_created_at_id (user_id=? AND created_at<?)"}},
		{"the count of runs", count, countArgs,
			[]string{"CO-ROUTINE (subquery-1)", "SEARCH runs USING COVERING INDEX runs_user_id_created_at_id (user_id=?)", "SCAN (subquery-1)"}},
		{"the count of runs by status, until", filteredCount, filteredCountArgs,
			[]string{"CO-ROUTINE (subquery-1)", "SEARCH runs USING COVERING INDEX runs_user_id_created_at_id (user_id=? AND created_at<?)", "SCAN (subquery-1)"}},
		{"retention of a tier", tierBatch, tierArgs, []string{
			"SEARCH runs USING INDEX runs_tier_created_at (tier=? AND created_at>? AND created_at<?)",
			"SCALAR SUBQUERY 1", "SEARCH runs USING COVERING INDEX runs_tier_created_at (tier=?)"}},
		{"retention of every tier", allBatch, allArgs, []string{"SEARCH runs USING INDEX runs_created_at (created_at<?)"}},
	}
	for _, tt := range tests {
		plan, err := db.QueryPlanForTest(ctx, tt.query, tt.args...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if want := strings.Join(tt.want, "\n") + "\n"; plan != want {
			t.Errorf("%s: plan\n%s\nwant\n%s\nof %s", tt.name, plan, want, tt.query)
		}
	}
}
