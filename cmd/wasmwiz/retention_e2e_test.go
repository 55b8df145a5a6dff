package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestServeRetention: runs older than WASMWIZ_RETENTION are deleted by the
// server's retention loop; newer ones stay.
func TestServeRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[0].env(t)
	var runs []*wasmwiz.UsageRecord
	for i := 0; i < 2500; i++ {
		runs = append(runs, pastRun(48*time.Hour))
	}
	fresh := pastRun(time.Hour)
	seedRuns(t, db, append(runs, fresh))

	s := startServe(t, serveEnv(t, db, map[string]string{"WASMWIZ_RETENTION": "24h"}), ServeOptions{RetentionInterval: 50 * time.Millisecond})
	sys := wasmwiz.SystemContext(ctx)
	testenv.WaitFor(t, "old runs to be deleted", func() bool {
		st, err := s.srv.Store().Stats(sys, time.Now())
		if err != nil {
			return false
		}
		var total int64
		for _, d := range st.RunsPerDay {
			total += d.Runs
		}
		return total == 1
	})
	if _, err := s.srv.Store().FindRunByID(sys, fresh.ID); err != nil {
		t.Fatalf("the fresh run: %v", err)
	}
	_, err := s.srv.Store().FindRunByID(sys, runs[0].ID)
	wantCode(t, "an old run", err, wasmwiz.ENOTFOUND)
}

// TestServeRetentionZeroKeeps: WASMWIZ_RETENTION=0 keeps every run ("older
// than 0s" would be all of them).
func TestServeRetentionZeroKeeps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[0].env(t)
	old := pastRun(365 * 24 * time.Hour)
	seedRuns(t, db, []*wasmwiz.UsageRecord{old})
	s := startServe(t, serveEnv(t, db, map[string]string{"WASMWIZ_RETENTION": "0", "WASMWIZ_LOG_LEVEL": "info"}), ServeOptions{RetentionInterval: time.Millisecond})
	testenv.WaitFor(t, "the retention loop to decide", func() bool { return strings.Contains(s.stderr.String(), "retention off") })
	if _, err := s.srv.Store().FindRunByID(wasmwiz.SystemContext(ctx), old.ID); err != nil {
		t.Fatalf("a year-old run with retention 0: %v", err)
	}
}

// TestServeRetentionPerTier: a run is kept for its tier's run_retention_ms
// (free 7 days, basic 30) under the default WASMWIZ_RETENTION.
func TestServeRetentionPerTier(t *testing.T) {
	t.Parallel()
	db := backends[0].env(t)
	oldFree, youngFree, oldBasic := pastRun(8*24*time.Hour), pastRun(6*24*time.Hour), pastRun(8*24*time.Hour)
	oldBasic.Tier = wasmwiz.TierBasic
	seedRuns(t, db, []*wasmwiz.UsageRecord{oldFree, youngFree, oldBasic})
	s := startServe(t, serveEnv(t, db), ServeOptions{RetentionInterval: 50 * time.Millisecond})
	sys := wasmwiz.SystemContext(context.Background())
	testenv.WaitFor(t, "the free tier's 8-day-old run to be deleted", func() bool {
		_, err := s.srv.Store().FindRunByID(sys, oldFree.ID)
		return wasmwiz.ErrorCode(err) == wasmwiz.ENOTFOUND
	})
	for _, r := range []*wasmwiz.UsageRecord{youngFree, oldBasic} {
		if _, err := s.srv.Store().FindRunByID(sys, r.ID); err != nil {
			t.Errorf("a %s run %v old, within its tier's retention: %v", r.Tier, time.Since(r.CreatedAt).Round(time.Hour), err)
		}
	}
}

// pastRun is a run record made age ago.
func pastRun(age time.Duration) *wasmwiz.UsageRecord {
	return &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), UserID: 1, Tier: "free", Status: wasmwiz.StatusOK,
		ModuleSHA256: strings.Repeat("a", 64), CreatedAt: time.Now().UTC().Add(-age)}
}

// seedRuns writes runs into the database of db (backend variables) before a
// server starts on it.
func seedRuns(t *testing.T, db map[string]string, runs []*wasmwiz.UsageRecord) {
	t.Helper()
	ctx := context.Background()
	cfg, err := LoadConfig(func(k string) string { return db[k] })
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateRuns(ctx, runs); err != nil {
		t.Fatal(err)
	}
}
