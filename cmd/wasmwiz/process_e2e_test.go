package main

import (
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeProcess runs the real binary: serve prints its key and address,
// runs guests in `wasmwiz worker` processes it starts from itself, and
// exits 0 on SIGTERM after answering the run in flight.
func TestServeProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := testenv.StartServe(t, map[string]string{"WASMWIZ_WORKERS": "1"})
	c := processAPI(t, p).admin()
	res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
	if err != nil || string(res.Stdout) != "Hello, World!\n" {
		t.Fatalf("execute on the real binary: %+v, %v\nstderr: %s", res, err, p.Stderr)
	}
	// A run in flight at SIGTERM is answered before the process exits.
	inflight := make(chan error, 1)
	go func() {
		res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"1000"}})
		if err == nil && string(res.Stdout) != "slept\n" {
			err = errors.New("wrong output: " + string(res.Stdout))
		}
		inflight <- err
	}()
	testenv.WaitFor(t, "the run to be in flight", func() bool {
		m, err := c.Metrics(ctx)
		return err == nil && regexp.MustCompile(`(?m)^wasmwiz_http_requests_in_flight 2$`).MatchString(m)
	})
	if err := p.Terminate(t); err != nil {
		t.Fatalf("serve after SIGTERM: %v\nstderr: %s", err, p.Stderr)
	}
	if err := testenv.Recv(t, inflight, "the run in flight at SIGTERM"); err != nil {
		t.Fatalf("the run in flight at SIGTERM: %v", err)
	}
	if !regexp.MustCompile(`msg="shut down" usage_written=2 usage_dropped=0`).MatchString(p.Stderr.String()) {
		t.Fatalf("shutdown did not flush both usage records:\n%s", p.Stderr)
	}
}

// TestServeProcessesShareRedis: two serve processes on one PostgreSQL and
// one Redis share one user's per-minute quota.
func TestServeProcessesShareRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	vars := postgresEnv(t, emptyRedisDB(t, 11))
	vars["WASMWIZ_WORKERS"] = "1"
	a := testenv.StartServe(t, vars)
	b := testenv.StartServe(t, vars)
	sa := processAPI(t, a) // the first to start bootstrapped the admin
	ca, _, key := sa.newTierUser("shared", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 4 })
	cb := processAPI(t, b).client(key)
	hello := testmodule.Read(t, "hello.wasm")
	for i, c := range []*client.Client{ca, cb, ca, cb} {
		ex, err := c.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: hello})
		if err != nil || ex.RateLimit.Remaining != int64(3-i) {
			t.Fatalf("run %d: %+v, %v", i+1, ex, err)
		}
	}
	for _, c := range []*client.Client{ca, cb} {
		_, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		wantCode(t, "fifth run", err, wasmwiz.ERATELIMIT)
	}
	for _, p := range []*testenv.ServeProcess{a, b} {
		if err := p.Terminate(t); err != nil {
			t.Fatalf("SIGTERM: %v\nstderr: %s", err, p.Stderr)
		}
	}
}
