package http_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/sqlite/sqlitetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestStoredRunQuotaOverHTTP: a user whose tier keeps 20 bytes of run
// output, 8 a record, on the SQLite store through the API. Synchronous
// runs answer their whole output while their records keep 8, 8, 4 and then
// nothing (truncated, the message naming the quota); /api/v1/usage shows
// the figures; a background run is then 413 ETOOLARGE, with nothing queued
// and no rate quota spent. Once retention deletes the records and the
// replica's count is older than its age, the user runs in the background
// again.
func TestStoredRunQuotaOverHTTP(t *testing.T) {
	ctx := context.Background()
	db := sqlitetest.Open(t)
	clock := testenv.NewClock(time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC))
	db.SetNow(clock.Now)
	u, uctx := sqlitetest.TierUser(t, db, "tiny", func(t *wasmwiz.Tier) {
		t.MaxStoredOutputBytes, t.MaxStoredRunBytes = 8, 20
		t.RunsPerMinute, t.RunsPerDay, t.MaxConcurrent = 1000, 1000, 10
	})
	_, key, err := db.CreateAPIKey(uctx, u.ID, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := "0123456789abcdef\n" // more than a record keeps
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte(out)}, nil
	}}
	jobs := &mock.RunQueue{}
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Users: db, Keys: db, Tiers: db, Modules: db, Runs: db,
		Engine: eng, Limiter: inmem.New(inmem.Options{}), Usage: sqlitetest.Recorder(t, db), Queue: jobs,
		Auth: true, Logger: slog.New(slog.DiscardHandler), Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Executor().StoredRunsMaxAge = time.Minute
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	wasm := base64.StdEncoding.EncodeToString([]byte("\x00asm\x01\x00\x00\x00"))
	remaining := func(h http.Header) string { return h.Get("X-RateLimit-Remaining") }
	var left string
	for i, want := range []string{"01234567", "01234567", "0123", "", ""} {
		code, body, h := testenv.DoJSON(t, "POST", ts.URL+"/api/v1/execute", key, map[string]any{"wasm_base64": wasm}, nil)
		var res struct {
			RunID  string `json:"id"`
			Stdout string `json:"stdout"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &res) != nil || res.Stdout != out {
			t.Fatalf("run %d: %d %s, want 200 with the whole output", i, code, body)
		}
		left = remaining(h)
		code, body, _ = testenv.DoJSON(t, "GET", ts.URL+"/api/v1/runs/"+res.RunID, key, nil, nil)
		var rec api.Run
		if code != http.StatusOK || json.Unmarshal(body, &rec) != nil {
			t.Fatalf("run %d's record: %d %s", i, code, body)
		}
		if string(rec.Stdout) != want || !rec.StdoutTruncated {
			t.Fatalf("run %d's record keeps %q (truncated %v), want %q, truncated", i, rec.Stdout, rec.StdoutTruncated, want)
		}
		if cut := i >= 2; strings.Contains(rec.Message, "max_stored_run_bytes") != cut {
			t.Fatalf("run %d's record message %q; naming the quota: want %v", i, rec.Message, cut)
		}
	}
	code, body, _ := testenv.DoJSON(t, "GET", ts.URL+"/api/v1/usage", key, nil, nil)
	var usage api.Usage
	if code != http.StatusOK || json.Unmarshal(body, &usage) != nil || usage.StoredRunBytes != 20 || usage.MaxStoredRunBytes != 20 {
		t.Fatalf("usage: %d %s, want 20 of 20 stored run bytes", code, body)
	}

	async := map[string]any{"wasm_base64": wasm, "async": true}
	code, body, _ = testenv.DoJSON(t, "POST", ts.URL+"/api/v1/execute", key, async, nil)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), `"ETOOLARGE"`) ||
		!strings.Contains(string(body), "max_stored_run_bytes") || !strings.Contains(string(body), "retention") {
		t.Fatalf("background run with the quota full: %d %s, want 413 ETOOLARGE naming the quota", code, body)
	}
	if jobs.Runs.Load() != 0 {
		t.Fatalf("a refused background run queued %d jobs", jobs.Runs.Load())
	}
	if counts, _, _ := db.CountRuns(ctx); counts[wasmwiz.RunQueued] != 0 {
		t.Fatal("a refused background run is stored as queued")
	}
	// The next run's quota decision shows what was spent: one more, not two.
	_, _, h := testenv.DoJSON(t, "POST", ts.URL+"/api/v1/execute", key, map[string]any{"wasm_base64": wasm}, nil)
	before, err := strconv.Atoi(left)
	if err != nil {
		t.Fatalf("X-RateLimit-Remaining %q", left)
	}
	if after, err := strconv.Atoi(remaining(h)); err != nil || after != before-1 {
		t.Fatalf("X-RateLimit-Remaining went from %d to %q over a refused background run and one run, want %d", before, remaining(h), before-1)
	}

	// Retention frees the records; the replica reads the count again once
	// it is older than StoredRunsMaxAge.
	clock.Add(time.Second)
	if _, err := db.DeleteRunsBefore(ctx, clock.Now(), "", 100); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	code, body, _ = testenv.DoJSON(t, "POST", ts.URL+"/api/v1/execute", key, async, nil)
	if code != http.StatusAccepted {
		t.Fatalf("background run after retention: %d %s, want 202", code, body)
	}
	if jobs.Runs.Load() != 1 {
		t.Fatalf("%d jobs queued, want 1", jobs.Runs.Load())
	}
}
