package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeHostMemoryAttacks: issue 9's guests that make the host allocate
// outside linear memory (a 61-byte loop on table.grow took a worker to
// 1.7–3.9 GB under a 128 MiB cap and was answered timeout), sent through
// serve on PostgreSQL and Redis by a tenant whose cap is 16 MiB, one after
// another, while another tenant runs hello worlds. Each ends as the cap
// says (a failed growth the guest traps on, memory_limit, or the timeout of
// a guest that ignores the failure); each worker's memory stays within a
// bound far below the attack's gigabytes; the other tenant's runs complete
// meanwhile.
func TestServeHostMemoryAttacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[1].serve(t)
	const memCap = 16 * wasmwiz.MiB
	attacker, _, _ := s.newTierUser("tight-memory", func(tr *wasmwiz.Tier) {
		tr.MaxMemoryBytes, tr.Timeout = memCap, time.Minute // a wall time the race detector's slowness does not reach
	})
	other, _, _ := s.newUser(wasmwiz.TierPro)
	hello := testmodule.Read(t, "hello.wasm")
	if _, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("hello before the attacks: %v", err)
	}
	attacks := []struct {
		name    string
		wasm    []byte
		timeout time.Duration // 0: the tier's
		want    api.Status
	}{
		{"table growth the guest traps on", hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Trap), 0, api.StatusTrap},
		{"table growth that ignores failure", hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Ignore), 2 * time.Second, api.StatusTimeout},
		{"ref.func allocating host memory", hostiletest.RefFuncLoop(), 0, api.StatusMemoryLimit},
	}

	stopRSS := testenv.PeakRSS(t)
	before := stopRSS() // the tree at rest (other tests' processes too: a figure, not a bound)
	stopRSS = testenv.PeakRSS(t)
	// The bound is this server's workers', each sampled on its own.
	var workerPeak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, pid := range s.srv.pool.PIDs() {
				if r := testenv.RSS(pid); r > workerPeak.Load() {
					workerPeak.Store(r)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		for _, a := range attacks {
			res, err := attacker.Execute(ctx, &client.ExecuteRequest{Wasm: a.wasm, Timeout: a.timeout})
			switch {
			case err != nil:
				done <- fmt.Errorf("%s: %w", a.name, err)
				return
			case res.Status != a.want:
				done <- fmt.Errorf("%s: status %s, trap %q; want %s", a.name, res.Status, res.Trap, a.want)
				return
			}
		}
		done <- nil
	}()
	var helloTook testenv.Latencies
	var attackErr error
	ended := false
	for !ended {
		start := time.Now()
		res, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		helloTook.Since(start)
		if err != nil || res.Status != api.StatusOK {
			t.Fatalf("the other tenant's hello during the attacks: %+v, %v", res, err)
		}
		select {
		case attackErr = <-done:
			ended = true
		case <-time.After(20 * time.Millisecond):
		}
	}
	peak := stopRSS()
	close(stopSampling)
	<-sampled
	if attackErr != nil {
		t.Fatal(attackErr)
	}
	// A worker's memory is bounded from the run's cap (a few times it, plus
	// the runtime), a fraction of the gigabytes one such guest took before
	// (and five times that under the race detector).
	if bound := raceOverhead * (memCap*8 + 64*wasmwiz.MiB); workerPeak.Load() > bound {
		t.Errorf("a worker peaked at %s, over %s", testenv.MiB(workerPeak.Load()), testenv.MiB(bound))
	}
	testenv.Prove(t, "host memory through serve: table growth (trapping, and ignoring failure) and ref.func allocation, one after another, by a tenant capped at 16MiB (PostgreSQL and Redis)",
		"trap, timeout and memory_limit as the cap says; every worker within 8x the cap plus 64MiB; another tenant's hello worlds complete meanwhile",
		"peak RSS", "a worker "+testenv.MiB(workerPeak.Load())+"; the test's process tree "+testenv.MiB(peak)+" ("+testenv.MiB(before)+" at rest)",
		"other tenant's latency", helloTook.String())
}
