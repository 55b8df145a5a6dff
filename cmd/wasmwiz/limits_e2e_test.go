package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeTierBodyLimits: a tier's module and stdin sizes, set through the
// admin API, bound what its callers send: 413 ETOOLARGE. (How every kind of
// body is bounded, declared or streamed, is internal/http's TestBodyLimits.)
func TestServeTierBodyLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	user, _, _ := s.newTierUser("tiny", func(tr *wasmwiz.Tier) { tr.MaxModuleBytes = 64 * wasmwiz.KiB; tr.MaxStdinBytes = 4 * wasmwiz.KiB })
	hello := testmodule.Read(t, "hello.wasm")
	big := append(bytes.Clone(hello), make([]byte, 3*wasmwiz.MiB)...)
	m, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "echo.wasm")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"module over the tier", func() error {
			_, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: big, Body: client.BodyMultipart})
			return err
		}},
		{"stdin over the tier", func() error {
			_, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello, Stdin: make([]byte, 5*wasmwiz.KiB), Body: client.BodyMultipart})
			return err
		}},
		{"stdin over the tier, stored module", func() error {
			_, err := user.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{Stdin: make([]byte, 5*wasmwiz.KiB), Body: client.BodyRaw})
			return err
		}},
		{"upload over the tier", func() error {
			_, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: big})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, tt.name, err, wasmwiz.ETOOLARGE)
			if client.StatusCode(err) != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", client.StatusCode(err))
			}
		})
	}
}

// TestServeTierLimits: each limit of a tier stops the guest, and a caller
// can lower a limit but never raise it.
func TestServeTierLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	// Two tiers, so that no outcome depends on how fast a loaded machine is:
	// "tight" has a short wall time for the guests that never end, "capped"
	// small memory and output caps under a wall time no cap test comes near.
	tight, _, _ := s.newTierUser("tight", func(tr *wasmwiz.Tier) {
		tr.Timeout = 500 * time.Millisecond
	})
	capped, _, _ := s.newTierUser("capped", func(tr *wasmwiz.Tier) {
		tr.Timeout = time.Minute
		tr.MaxMemoryBytes = 8 * wasmwiz.MiB
		tr.MaxOutputBytes = 64 * wasmwiz.KiB
	})
	tests := []struct {
		name    string
		user    *client.Client
		req     client.ExecuteRequest
		want    api.Status
		check   func(t *testing.T, r *api.Result)
		maxWall time.Duration
		prove   string // the attack, for the prove report; "" for none
	}{
		{"tight loop stops at the timeout", tight, client.ExecuteRequest{Wasm: testmodule.Read(t, "loop.wasm")}, api.StatusTimeout, nil, 0,
			"endless loop (wall time 500ms)"},
		{"loop-free recursion stops at the timeout", tight, client.ExecuteRequest{Wasm: testmodule.Read(t, "fib_recursive.wasm")}, api.StatusTimeout, nil, 0,
			"loop-free recursion, which in-guest cancellation misses (wall time 500ms)"},
		{"memory bomb hits the cap", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "memory_bomb.wasm")}, api.StatusMemoryLimit,
			func(t *testing.T, r *api.Result) {
				if r.MemoryPeakBytes > 8*wasmwiz.MiB {
					t.Errorf("peak memory %d over the 8MiB cap", r.MemoryPeakBytes)
				}
			}, 0, "linear memory bomb (cap 8MiB)"},
		{"a lower memory asked for applies", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "memory_bomb.wasm"), Memory: 2 * wasmwiz.MiB}, api.StatusMemoryLimit,
			func(t *testing.T, r *api.Result) {
				if r.MemoryPeakBytes > 2*wasmwiz.MiB {
					t.Errorf("peak memory %d over the 2MiB asked for", r.MemoryPeakBytes)
				}
			}, 0, ""},
		{"a higher memory asked for does not", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "memory_bomb.wasm"), Memory: wasmwiz.GiB}, api.StatusMemoryLimit,
			func(t *testing.T, r *api.Result) {
				if r.MemoryPeakBytes > 8*wasmwiz.MiB {
					t.Errorf("peak memory %d: the caller raised its 8MiB cap", r.MemoryPeakBytes)
				}
			}, 0, ""},
		{"output flood is cut at the cap", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "flood.wasm")}, api.StatusOutputLimit,
			func(t *testing.T, r *api.Result) {
				if !r.StdoutTruncated || int64(len(r.Stdout)) != 64*wasmwiz.KiB {
					t.Errorf("stdout %d bytes, truncated %v; want the 64KiB cap, truncated", len(r.Stdout), r.StdoutTruncated)
				}
			}, 0, "output flood (cap 64KiB)"},
		{"a higher timeout asked for does not apply", tight, client.ExecuteRequest{Wasm: testmodule.Read(t, "loop.wasm"), Timeout: time.Hour}, api.StatusTimeout, nil, 0, ""},
		{"a lower timeout asked for applies", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"2000"}, Timeout: 100 * time.Millisecond}, api.StatusTimeout, nil, 0, ""},
	}
	// The wall time covers the compile: compile every module first, under
	// the generous tier, so that the short wall times here are the guests'.
	compiled := map[string]bool{}
	for _, tt := range tests {
		if sum := string(tt.req.Wasm); !compiled[sum] {
			compiled[sum] = true
			if _, err := capped.CreateModule(ctx, client.ModuleUpload{Wasm: tt.req.Wasm}); err != nil {
				t.Fatalf("uploading a module to compile it: %v", err)
			}
		}
	}
	t.Run("limits", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				req := tt.req
				start := time.Now()
				res, err := tt.user.Execute(ctx, &req)
				took := time.Since(start)
				if err != nil {
					t.Fatalf("Execute: %v", err)
				}
				if res.Status != tt.want {
					t.Fatalf("status %s (trap %q), want %s", res.Status, res.Trap, tt.want)
				}
				if tt.check != nil {
					tt.check(t, res)
				}
				if tt.prove != "" {
					testenv.Prove(t, tt.prove, "the run ends "+string(res.Status)+" and the replica goes on",
						"time to answer", testenv.Ms(took), "guest's peak linear memory", testenv.MiB(res.MemoryPeakBytes),
						"answer's output", fmt.Sprintf("%d bytes", len(res.Stdout)+len(res.Stderr)))
				}
			})
		}
	})
	// The guests that ignored their deadline were stopped by killing their
	// worker, and the pool says so in its metrics.
	m, err := s.client("").Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kills := regexp.MustCompile(`(?m)^wasmwiz_worker_timeouts_total ([0-9]+)$`).FindStringSubmatch(m)
	if kills == nil || kills[1] == "0" {
		t.Fatalf("wasmwiz_worker_timeouts_total after guests ran past their deadline: %v", kills)
	}
}
