package postgres_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

// TestUsageWriterKeepsRecordsThroughAnOutage feeds usage records through
// wasmwiz.UsageWriter into a store whose database goes away (a proxy in
// front of it stops) and comes back: records made during the outage are
// kept, none is dropped, and after it every one is in the database once.
func TestUsageWriterKeepsRecordsThroughAnOutage(t *testing.T) {
	t.Parallel()
	check, proxy, proxied := behindProxy(t) // check: straight to the database
	db := openURL(t, proxied, false)
	u, uctx := mustUser(t, check, "u@example.com", wasmwiz.RoleUser)

	w := usage.New(db, usage.Options{
		BatchSize: 50, FlushInterval: 10 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, WriteTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ids := map[string]bool{}
	record := func(n int) {
		for range n {
			r := &wasmwiz.UsageRecord{UserID: u.ID, Tier: "free", Status: wasmwiz.StatusOK, DurationMS: 1}
			w.Record(r)
			ids[r.ID] = true
		}
	}
	stored := func() int {
		_, total, err := check.FindRuns(uctx, wasmwiz.RunFilter{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		return total.Count
	}

	record(120)
	testenv.WaitFor(t, "the first records to be written", func() bool { return w.Stats().Written == 120 })

	proxy.Stop()
	failuresBefore := w.Stats().Failures
	record(300)
	testenv.WaitFor(t, "a failed write while the database is away", func() bool { return w.Stats().Failures > failuresBefore+2 })
	if s := w.Stats(); s.Written != 120 || s.Dropped != 0 || s.Buffered != 300 {
		t.Fatalf("during the outage: %+v; want 120 written, 300 buffered, none dropped", s)
	}
	if n := stored(); n != 120 {
		t.Fatalf("%d records in the database during the outage, want 120", n)
	}

	proxy.Start()
	record(30) // made after the database came back
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s := w.Stats(); s.Written != 450 || s.Dropped != 0 || s.Buffered != 0 {
		t.Fatalf("after the outage: %+v; want 450 written, none dropped or left", s)
	}
	runs, total, err := check.FindRuns(uctx, wasmwiz.RunFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if total.Count != 450 || len(runs) != 450 {
		t.Fatalf("%d records in the database, want 450", total.Count)
	}
	for _, r := range runs {
		if !ids[r.ID] {
			t.Fatalf("record %s in the database was never recorded", r.ID)
		}
		delete(ids, r.ID)
	}
	if len(ids) != 0 {
		t.Fatalf("%d recorded runs are missing from the database", len(ids))
	}
}
