package main

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// benchClients is how many callers the run benchmarks use at once.
const benchClients = 16

// runsBenchServer starts serve on a backend for benchmarks, with a tier that
// never refuses: every figure is about the work, not about quotas.
func runsBenchServer(b *testing.B, backend string, stored int64) (*e2eServer, string) {
	b.Helper()
	env := map[string]string{"WASMWIZ_DATABASE_URL": b.TempDir() + "/wasmwiz.db"}
	if backend == "postgres" {
		env = postgresEnv(b, testenv.RedisURL(b))
	}
	env["WASMWIZ_ADDR"] = "127.0.0.1:0"
	env["WASMWIZ_DATA_DIR"] = b.TempDir()
	env["WASMWIZ_WORKERS"] = "2"
	env["WASMWIZ_ASYNC_WORKERS"] = "2"
	env["WASMWIZ_LOG_LEVEL"] = "error"
	env["WASMWIZ_QUEUE_SIZE"] = "1000"
	env["WASMWIZ_QUEUE_TIMEOUT"] = "60s"
	s := startServe(b, env, testServeOptions())
	_, _, key := s.newTierUser("benchruns", func(t *wasmwiz.Tier) {
		t.RunsPerMinute, t.RunsPerDay, t.MaxConcurrent = 1<<40, 1<<40, 10000
		t.MaxStoredOutputBytes = stored
	})
	return s, key
}

// benchCallers has benchClients callers make b.N calls of call between them
// (a caller stops at its call's error, which fails the benchmark), reports
// the calls per second as runs/s, and returns the figures in ms the calls
// recorded, sorted.
func benchCallers(b *testing.B, call func(record func(ms float64)) error) []float64 {
	var next atomic.Int64
	var mu sync.Mutex
	var figures []float64
	record := func(ms float64) {
		mu.Lock()
		figures = append(figures, ms)
		mu.Unlock()
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range benchClients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := call(record); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(figures)
	b.ReportMetric(float64(b.N)/el.Seconds(), "runs/s")
	return figures
}

// BenchmarkAsyncRuns: 16 callers each admit a background run of hello and
// wait for its end (polling its record); reports runs per second and the
// queued-to-running latency (started_at − created_at) percentiles.
func BenchmarkAsyncRuns(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			s, key := runsBenchServer(b, backend, 64<<10)
			hello := b64(testmodule.Read(b, "hello.wasm"))
			waits := benchCallers(b, func(record func(ms float64)) error {
				id := startAsync(b, s.url, key, map[string]any{"wasm_base64": hello})
				for {
					rec := getRun(b, s.url, key, id)
					if rec.State.Final() {
						if rec.StartedAt != nil {
							record(float64(rec.StartedAt.Sub(rec.CreatedAt).Microseconds()) / 1000)
						}
						return nil
					}
					time.Sleep(20 * time.Millisecond)
				}
			})
			b.ReportMetric(wasmwiz.Percentile(waits, 50), "start-p50-ms")
			b.ReportMetric(wasmwiz.Percentile(waits, 95), "start-p95-ms")
			b.ReportMetric(wasmwiz.Percentile(waits, 99), "start-p99-ms")
		})
	}
}

// BenchmarkSyncStoredOutput: 16 callers run echo synchronously with 32 KiB
// of stdin (so 32 KiB of stdout), with the output kept in the record (a
// 64 KiB cap) and not kept (a cap of 0): what storing output adds.
func BenchmarkSyncStoredOutput(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, c := range []struct {
			name   string
			stored int64
		}{{"not-stored", 0}, {"stored", 64 << 10}} {
			b.Run(backend+"/"+c.name, func(b *testing.B) {
				s, key := runsBenchServer(b, backend, c.stored)
				body := map[string]any{"wasm_base64": b64(testmodule.Read(b, "echo.wasm")), "stdin": string(bytes.Repeat([]byte("x"), 32<<10))}
				lat := benchCallers(b, func(record func(ms float64)) error {
					t0 := time.Now()
					code, _, _ := testenv.DoJSON(b, "POST", s.url+"/api/v1/execute", key, body, nil)
					d := float64(time.Since(t0).Microseconds()) / 1000
					if code != http.StatusOK {
						return fmt.Errorf("execute: %d", code)
					}
					record(d)
					return nil
				})
				b.ReportMetric(wasmwiz.Percentile(lat, 50), "p50-ms")
				b.ReportMetric(wasmwiz.Percentile(lat, 99), "p99-ms")
			})
		}
	}
}
