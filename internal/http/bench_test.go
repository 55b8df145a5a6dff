package http_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// benchServer is the full HTTP stack (middleware, auth, Executor, in-memory
// limiter, gate, metrics) with a mock key store and the given engine.
func benchServer(b *testing.B, eng wasmwiz.Engine) http.Handler {
	b.Helper()
	tier := &wasmwiz.Tier{Name: "bench", RunsPerMinute: 1 << 40, RunsPerDay: 1 << 40, MaxConcurrent: 1 << 20, Limits: wasmwiz.Limits{MaxMemoryBytes: 64 * wasmwiz.MiB, Timeout: 5 * time.Second, MaxModuleBytes: 10 * wasmwiz.MiB, MaxStdinBytes: wasmwiz.MiB, MaxOutputBytes: wasmwiz.MiB}}
	user := &wasmwiz.User{ID: 1, Role: wasmwiz.RoleUser, Tier: "bench"}
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Keys: &mock.APIKeyService{AuthenticateFn: func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
			return user, &wasmwiz.APIKey{ID: 1}, nil
		}},
		Tiers:   &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) { return tier, nil }},
		Engine:  eng,
		Limiter: inmem.New(inmem.Options{}),
		Usage:   &discardUsage{},
		Auth:    true, Logger: slog.New(slog.DiscardHandler),
		MaxConcurrentRuns: 64, QueueSize: 1024, QueueTimeout: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	return srv.Handler()
}

type discardUsage struct{}

func (discardUsage) Record(*wasmwiz.UsageRecord) {}

func benchExecute(b *testing.B, h http.Handler, wasm []byte) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest("POST", "/api/v1/execute", bytes.NewReader(wasm))
			r.Header.Set("Authorization", "Bearer "+userKey)
			r.Header.Set("Content-Type", "application/wasm")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
			}
			_, _ = io.Copy(io.Discard, w.Body)
		}
	})
}

// BenchmarkExecuteOverhead is the HTTP layer's own cost per execute: the
// engine is a mock that answers at once.
func BenchmarkExecuteOverhead(b *testing.B) {
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("Hello, World!\n")}, nil
	}}
	benchExecute(b, benchServer(b, eng), wasmHeader)
}

// BenchmarkExecuteInProcessEngine runs hello.wasm on the real in-process
// engine (warm compile cache) through the whole HTTP layer.
func BenchmarkExecuteInProcessEngine(b *testing.B) {
	benchExecute(b, benchServer(b, inProcessEngine(b)), testmodule.Read(b, "hello.wasm"))
}

// BenchmarkExecuteStoredWarm is the HTTP layer's cost per execute of a
// stored module on the warm path: key, tier and module from the cache
// (the mock stores fail the benchmark if they are read after warming up),
// the in-memory limiter, an engine that answers at once.
func BenchmarkExecuteStoredWarm(b *testing.B) {
	tier := &wasmwiz.Tier{Name: "bench", RunsPerMinute: 1 << 40, RunsPerDay: 1 << 40, MaxConcurrent: 1 << 20, Limits: wasmwiz.Limits{MaxMemoryBytes: 64 * wasmwiz.MiB, Timeout: 5 * time.Second, MaxModuleBytes: 10 * wasmwiz.MiB, MaxStdinBytes: wasmwiz.MiB, MaxOutputBytes: wasmwiz.MiB}}
	module := &wasmwiz.Module{ID: wasmwiz.NewModuleID(), OwnerID: 1, Name: "bench.wasm", SHA256: wasmwiz.ModuleDigest(wasmHeader), SizeBytes: int64(len(wasmHeader))}
	var reads atomic.Int64
	lim := inmem.New(inmem.Options{})
	if err := lim.PublishCacheEpoch(context.Background(), 1); err != nil {
		b.Fatal(err)
	}
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Keys: &mock.APIKeyService{AuthenticateFn: func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
			reads.Add(1)
			t := *tier
			return &wasmwiz.User{ID: 1, Role: wasmwiz.RoleUser, Tier: "bench", TierLimits: &t}, &wasmwiz.APIKey{ID: 1}, nil
		}},
		Modules: &mock.ModuleService{FindModuleByIDFn: func(ctx context.Context, id string) (*wasmwiz.Module, error) {
			reads.Add(1)
			m := *module
			return &m, nil
		}},
		Tiers:  &mock.TierService{},
		Epochs: &mock.CacheEpochService{CacheEpochFn: func(context.Context) (int64, error) { return 1, nil }},
		Engine: &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
			return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("hello\n")}, nil
		}},
		Limiter: lim,
		Usage:   &discardUsage{},
		Auth:    true, Logger: slog.New(slog.DiscardHandler),
		MaxConcurrentRuns: 64, QueueSize: 1024, QueueTimeout: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	do := func() {
		r := httptest.NewRequest("POST", "/api/v1/modules/"+module.ID+"/execute", http.NoBody)
		r.Header.Set("Authorization", "Bearer "+userKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
		}
	}
	for range 3 {
		do()
	}
	warm := reads.Load()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			do()
		}
	})
	b.StopTimer()
	if n := reads.Load(); n != warm {
		b.Fatalf("%d store reads on the warm path", n-warm)
	}
}
