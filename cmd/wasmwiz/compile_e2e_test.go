package main

import (
	"context"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeCompilesAreCounted: compiling is work paid for. An upload counts
// against the caller's run quota (as a run does), a missing module id costs
// none of it, and a run's answer and usage record report its compile apart
// from its guest.
func TestServeCompilesAreCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	user, _, _ := s.newTierUser("two", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 2 })
	for range 3 {
		_, err := user.Execute(ctx, &client.ExecuteRequest{ModuleID: wasmwiz.NewModuleID()})
		wantCode(t, "a missing module", err, wasmwiz.ENOTFOUND)
	}
	if _, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "hello.wasm")}); err != nil {
		t.Fatalf("the first upload, after three missing modules cost nothing: %v", err)
	}
	res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "fib.wasm"), Args: []string{"10"}})
	if err != nil {
		t.Fatalf("a run, the quota's second event: %v", err)
	}
	if res.CompileCached || res.CompileDuration <= 0 {
		t.Errorf("the first run of fib: compile_cached %v, compile_ms %v; want its compile reported", res.CompileCached, res.CompileDuration)
	}
	_, err = user.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "add.wasm")})
	wantCode(t, "an upload past the quota", err, wasmwiz.ERATELIMIT)

	var runs []*api.Run
	testenv.WaitFor(t, "the run to be written", func() bool {
		runs, _, err = user.ListRuns(ctx, client.RunQuery{})
		return err == nil && len(runs) == 1
	})
	if runs[0].CompileMS <= 0 || runs[0].CompileMS != float64(res.CompileDuration.Microseconds())/1000 {
		t.Errorf("usage record compile_ms %v, the answer's %v", runs[0].CompileMS, res.CompileDuration)
	}
}

// TestServeCompileBombDoesNotMakeOthersWait: with two workers, while one
// user's compile bomb (90 KB of nested loops, tens of seconds to compile)
// compiles in one, another user's hello world runs at once in the other,
// and a third user's bomb meanwhile is answered 503 with Retry-After
// instead of taking the last worker. The bomb itself ends with its caller.
func TestServeCompileBombDoesNotMakeOthersWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	bomber, _, _ := s.newTierUser("patient", func(tr *wasmwiz.Tier) { tr.Timeout = 2 * time.Minute }) // the server's maximum
	second, _, _ := s.newUser("patient")
	hello, _, _ := s.newUser(wasmwiz.TierFree)
	helloWasm := testmodule.Read(t, "hello.wasm")
	if _, err := hello.Execute(ctx, &client.ExecuteRequest{Wasm: helloWasm}); err != nil {
		t.Fatalf("hello before the bomb: %v", err)
	}

	stopRSS := testenv.PeakRSS(t)
	bombCtx, stopBomb := context.WithCancel(ctx)
	defer stopBomb()
	bombDone := make(chan error, 1)
	go func() {
		_, err := bomber.CreateModule(bombCtx, client.ModuleUpload{Wasm: hostiletest.DeepLoops(30_000)})
		bombDone <- err
	}()
	testenv.WaitFor(t, "the bomb to compile in a worker", func() bool {
		return s.srv.pool.Stats().Busy == 1
	})

	refusedAt := time.Now()
	_, err := second.CreateModule(ctx, client.ModuleUpload{Wasm: hostiletest.DeepLoops(30_001)})
	refused := time.Since(refusedAt)
	wantCode(t, "a second bomb", err, wasmwiz.EUNAVAILABLE)
	if d, ok := client.RetryAfter(err); !ok || d <= 0 {
		t.Errorf("the second bomb's 503 has no Retry-After (%v %v)", d, ok)
	}
	var helloTook testenv.Latencies
	if err := timedHellos(ctx, hello, helloWasm, 3, &helloTook); err != nil {
		t.Fatalf("beside the bomb: %v", err)
	}
	select {
	case err := <-bombDone:
		t.Fatalf("the bomb ended before the hello worlds (%v): the test proves nothing", err)
	default:
	}
	stopBomb()
	<-bombDone
	testenv.Prove(t, "compile bomb: 30,000 nested loops (tens of seconds of wazero's compiler), uploaded",
		"the bomb compiles in one worker; a second bomb is refused 503 with Retry-After; another tenant's hello worlds run meanwhile",
		"time to answer", "the second bomb's 503 in "+testenv.Ms(refused),
		"other tenant's latency", helloTook.String(),
		"peak RSS", testenv.MiB(stopRSS()))
}
