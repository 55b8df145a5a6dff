package wasmwiz_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/sqlite/sqlitetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// tinyRunQuota returns a change of a tier that keeps each bytes of each
// stream a record and quota bytes of run output together, and runs
// without a rate quota in the way.
func tinyRunQuota(each, quota int64) func(*wasmwiz.Tier) {
	return func(t *wasmwiz.Tier) {
		t.MaxStoredOutputBytes, t.MaxStoredRunBytes = each, quota
		t.RunsPerMinute, t.RunsPerDay, t.MaxConcurrent = 1000, 1000, 10
	}
}

// admitAll is a limiter that admits every run, counting them in n (when
// set).
func admitAll(n *atomic.Int64) *mock.RateLimiter {
	return &mock.RateLimiter{AdmitFn: func(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error) {
		if n != nil {
			n.Add(1)
		}
		return wasmwiz.Admitted{Decision: wasmwiz.RateDecision{Allowed: true}, Release: func(bool) {}}, nil
	}}
}

// TestStoredRunQuota: on a real store, a tier whose max_stored_run_bytes
// holds 20 bytes and whose records keep 8 bytes a stream. Synchronous runs
// answer their whole output while their records keep 8, 8, then the 4
// left (the record says why), then nothing; once the quota is full a
// background run is refused with ETOOLARGE before anything is queued or
// spent. Retention frees the records, and once this replica's count is
// older than StoredRunsMaxAge the user runs in the background again.
func TestStoredRunQuota(t *testing.T) {
	ctx := context.Background()
	db := sqlitetest.Open(t)
	clock := testenv.NewClock(time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC))
	db.SetNow(clock.Now)
	u, uctx := sqlitetest.TierUser(t, db, "tiny", tinyRunQuota(8, 20))
	out := []byte("0123456789abcdef\x00\xff") // 18 bytes, more than a record keeps
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: out}, nil
	}}
	var admits atomic.Int64
	limiter := admitAll(&admits)
	queue := &mock.RunQueue{}
	ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Limiter: limiter, Usage: sqlitetest.Recorder(t, db), Runs: db, Queue: queue,
		Now: clock.Now, StoredRunsMaxAge: time.Minute}
	req := &wasmwiz.RunRequest{Wasm: []byte("\x00asm\x01\x00\x00\x00")}

	for i, want := range []struct {
		kept    string
		message bool
	}{{"01234567", false}, {"01234567", false}, {"0123", true}, {"", true}, {"", true}} {
		res, err := ex.Execute(uctx, nil, req)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if !bytes.Equal(res.Result.Stdout, out) {
			t.Fatalf("run %d answered %q, want the whole output %q", i, res.Result.Stdout, out)
		}
		rec, err := db.FindRunByID(uctx, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(rec.Stdout) != want.kept || !rec.StdoutTruncated {
			t.Fatalf("run %d: record keeps %q (truncated %v), want %q, truncated", i, rec.Stdout, rec.StdoutTruncated, want.kept)
		}
		if got := strings.Contains(rec.Message, "max_stored_run_bytes"); got != want.message {
			t.Fatalf("run %d: record message %q, want one naming the quota: %v", i, rec.Message, want.message)
		}
	}
	if n, _ := db.StoredRunBytes(ctx, u.ID); n != 20 {
		t.Fatalf("the user keeps %d bytes, want the quota's 20", n)
	}

	asyncRun := func() error {
		_, err := ex.ExecuteAsync(uctx, nil, req, "")
		return err
	}
	before := admits.Load()
	err := asyncRun()
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Fatalf("background run with the quota full: %v, want ETOOLARGE", err)
	}
	for _, part := range []string{"max_stored_run_bytes", "tiny", "20B", "retention"} {
		if !strings.Contains(wasmwiz.ErrorMessage(err), part) {
			t.Errorf("refusal %q does not say %q", wasmwiz.ErrorMessage(err), part)
		}
	}
	if admits.Load() != before || queue.Runs.Load() != 0 {
		t.Fatalf("a refused background run spent %d admissions and queued %d runs", admits.Load()-before, queue.Runs.Load())
	}
	if counts, _, _ := db.CountRuns(ctx); counts[wasmwiz.RunQueued] != 0 {
		t.Fatalf("a refused background run is stored as queued")
	}

	// Retention frees the records; until this replica reads the count
	// again (StoredRunsMaxAge) it still refuses.
	clock.Add(time.Second)
	if _, err := db.DeleteRunsBefore(ctx, clock.Now(), "", 100); err != nil {
		t.Fatal(err)
	}
	if err := asyncRun(); wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Fatalf("within the count's age: %v, want the refusal it still knows", err)
	}
	clock.Add(time.Minute)
	if err := asyncRun(); err != nil {
		t.Fatalf("after retention freed the records: %v", err)
	}
	if queue.Runs.Load() != 1 {
		t.Fatalf("%d runs queued, want 1", queue.Runs.Load())
	}
}

// TestStoredRunQuotaOfNoTier: a tier that keeps no run output
// (max_stored_run_bytes 0) refuses every background run and keeps no
// output of synchronous ones; a replica without a count (no store of
// runs) keeps the tier's per-run cap.
func TestStoredRunQuotaOfNoTier(t *testing.T) {
	db := sqlitetest.Open(t)
	_, uctx := sqlitetest.TierUser(t, db, "none", func(t *wasmwiz.Tier) { t.MaxStoredRunBytes = 0 })
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("out")}, nil
	}}
	limiter := admitAll(nil)
	usage := &mock.UsageRecorder{}
	req := &wasmwiz.RunRequest{Wasm: []byte("\x00asm\x01\x00\x00\x00")}
	for _, tc := range []struct {
		name string
		runs wasmwiz.RunStore
		kept string
	}{{"Counted", db, ""}, {"NoCount", nil, "out"}} {
		ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Limiter: limiter, Usage: usage, Runs: tc.runs, Queue: &mock.RunQueue{}}
		res, err := ex.Execute(uctx, nil, req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(res.Record.Stdout) != tc.kept || string(res.Result.Stdout) != "out" {
			t.Fatalf("%s: record keeps %q, answer %q; want %q and the whole output", tc.name, res.Record.Stdout, res.Result.Stdout, tc.kept)
		}
		if tc.runs != nil {
			if _, err := ex.ExecuteAsync(uctx, nil, req, ""); wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
				t.Fatalf("background run of a tier that keeps nothing: %v, want ETOOLARGE", err)
			}
		}
	}
}

// TestStoredRunQuotaAtStart: a background run decides what its record
// keeps when its guest starts, not when it was admitted. Two runs admitted
// with the quota empty: the first keeps the tier's 8 bytes of each stream
// and of its files; by the time the second starts that filled the quota, so
// its record keeps nothing and says why.
func TestStoredRunQuotaAtStart(t *testing.T) {
	ctx := context.Background()
	db := sqlitetest.Open(t)
	_, uctx := sqlitetest.TierUser(t, db, "tiny", tinyRunQuota(8, 12))
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("0123456789abcdef"), Stderr: []byte("EEEEEEEEEE"),
			Files: []wasmwiz.OutputFile{{Path: "out/a", Size: 4, SHA256: "aa", Data: []byte("1234")}}}, nil
	}}
	limiter := admitAll(nil)
	ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Limiter: limiter, Runs: db, Queue: &mock.RunQueue{}}
	req := &wasmwiz.RunRequest{Wasm: []byte("\x00asm\x01\x00\x00\x00")}
	var ids []string
	for range 2 {
		got, err := ex.ExecuteAsync(uctx, nil, req, "")
		if err != nil {
			t.Fatalf("ExecuteAsync with the quota empty: %v", err)
		}
		ids = append(ids, got.ID)
	}
	for i, want := range []struct {
		stdout, stderr string
		file           bool
		message        bool
	}{{"01234567", "EEEEEEEE", true, false}, {"", "", false, true}} {
		if err := ex.RunQueued(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
		rec, err := db.FindRunByID(uctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != wasmwiz.RunDone || string(rec.Stdout) != want.stdout || string(rec.Stderr) != want.stderr ||
			len(rec.Files) != 1 || rec.Files[0].Omitted == want.file {
			t.Fatalf("run %d's record: %s %q %q files %+v; want %q %q, file kept: %v", i, rec.State, rec.Stdout, rec.Stderr, rec.Files,
				want.stdout, want.stderr, want.file)
		}
		if got := strings.Contains(rec.Message, "max_stored_run_bytes"); got != want.message {
			t.Fatalf("run %d's message %q; naming the quota: want %v", i, rec.Message, want.message)
		}
	}
}

// TestStoredRunQuotaCutWhileStopped: a background run that ends before
// its result (cancelled by its owner, or its replica stopping) keeps the
// output its heartbeats kept, cut by the quota, and its record says both
// why it ended and that the quota cut its output.
func TestStoredRunQuotaCutWhileStopped(t *testing.T) {
	for _, tc := range []struct {
		name, ended string
		state       wasmwiz.RunState
	}{{"Cancelled", "cancelled while running", wasmwiz.RunCancelled}, {"ReplicaStopped", "the replica stopped", wasmwiz.RunFailed}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := sqlitetest.Open(t)
			// Records keep 8 bytes a stream, and 6 are left of the quota.
			_, uctx := sqlitetest.TierUser(t, db, "tiny", tinyRunQuota(8, 6))
			rec := sqlitetest.QueuedRun(t, uctx, db)
			written := make(chan struct{})
			eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
				req.OnOutput(false, []byte("0123456789abcdef"))
				close(written)
				<-ctx.Done()
				return nil, ctx.Err()
			}}
			ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Runs: db, HeartbeatInterval: 10 * time.Millisecond}
			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			go func() { done <- ex.RunQueued(runCtx, rec.ID) }()
			<-written
			if tc.state == wasmwiz.RunCancelled {
				if _, err := db.CancelRun(uctx, rec.ID, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				stop()
			}
			var err error
			testenv.Wait(t, "the run to end", func() { err = <-done })
			if err != nil {
				t.Fatal(err)
			}
			got, err := db.FindRunByID(uctx, rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.state || string(got.Stdout) != "012345" || !got.StdoutTruncated ||
				!strings.Contains(got.Message, tc.ended) || !strings.Contains(got.Message, "max_stored_run_bytes") {
				t.Fatalf("record: %s %q (truncated %v), message %q; want %s, the 6 bytes left of the quota, a message of %q and of the quota",
					got.State, got.Stdout, got.StdoutTruncated, got.Message, tc.state, tc.ended)
			}
		})
	}
}

// TestStoredRunQuotaStoreAway: while the count cannot be read, records
// keep the tier's per-run cap, background runs are not refused for want of
// a figure, and the failed read is not tried again by every run (once per
// StoredRunsMaxAge).
func TestStoredRunQuotaStoreAway(t *testing.T) {
	db := sqlitetest.Open(t)
	clock := testenv.NewClock(time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC))
	_, uctx := sqlitetest.TierUser(t, db, "none", func(t *wasmwiz.Tier) { t.MaxStoredRunBytes = 0 })
	var reads atomic.Int64
	away := &mock.RunService{StoredRunBytesFn: func(ctx context.Context, userID int64) (int64, error) {
		reads.Add(1)
		return 0, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database unavailable")
	}}
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("out")}, nil
	}}
	ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Limiter: admitAll(nil), Usage: &mock.UsageRecorder{}, Runs: db,
		Queue: &mock.RunQueue{}, StoredRuns: away, Now: clock.Now, StoredRunsMaxAge: time.Minute}
	req := &wasmwiz.RunRequest{Wasm: []byte("\x00asm\x01\x00\x00\x00")}
	for i := range 3 {
		res, err := ex.Execute(uctx, nil, req)
		if err != nil || string(res.Record.Stdout) != "out" {
			t.Fatalf("run %d with the count away: %v, record keeps %q; want the tier's cap", i, err, res.Record.Stdout)
		}
	}
	if _, err := ex.ExecuteAsync(uctx, nil, req, ""); err != nil {
		t.Fatalf("background run with the count away: %v", err)
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("the count was read %d times within its age, want once", n)
	}
	clock.Add(time.Minute)
	if _, err := ex.Execute(uctx, nil, req); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("the count was read %d times, want again once its age passed", n)
	}
}

// TestStoredRunQuotaConcurrentRuns: many runs of one user at once on one
// replica (run with -race) keep no more than the quota plus, for each run
// deciding at the same moment, its per-run cap; the count the store keeps
// is the bytes of the records.
func TestStoredRunQuotaConcurrentRuns(t *testing.T) {
	const callers, runs, each, quota = 16, 10, 8, 100
	db := sqlitetest.Open(t)
	u, uctx := sqlitetest.TierUser(t, db, "tiny", tinyRunQuota(each, quota))
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("0123456789abcdef")}, nil
	}}
	ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Limiter: admitAll(nil), Usage: sqlitetest.Recorder(t, db), Runs: db,
		Queue: &mock.RunQueue{}}
	req := &wasmwiz.RunRequest{Wasm: []byte("\x00asm\x01\x00\x00\x00")}
	var kept atomic.Int64
	testenv.AtOnce(t, callers, "Execute", func(int) {
		for range runs {
			res, err := ex.Execute(uctx, nil, req)
			if err != nil {
				t.Errorf("Execute: %v", err)
				return
			}
			kept.Add(int64(len(res.Record.Stdout)))
		}
	})
	stored, err := db.StoredRunBytes(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored != kept.Load() {
		t.Fatalf("the store counts %d bytes, the records keep %d", stored, kept.Load())
	}
	if stored < quota || stored > quota+callers*each {
		t.Fatalf("%d runs at once keep %d bytes, want between the quota %d and %d", callers, stored, quota, quota+callers*each)
	}
}
