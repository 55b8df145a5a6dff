package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// serveProcess is `wasmwiz serve` running as a child process.
type serveProcess struct {
	cmd    *exec.Cmd
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	url    string
	done   chan error
}

var listeningRE = regexp.MustCompile(`listening on (http://[0-9.]+:[0-9]+)`)

// startServeProcess starts the binary's serve with exactly vars (plus PATH
// and HOME) and waits until it prints its address.
func startServeProcess(t *testing.T, vars map[string]string) *serveProcess {
	t.Helper()
	p := &serveProcess{stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(testenv.WasmwizBinary(t), "serve")
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range vars {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		testenv.Recv(t, p.done, "serve to end after SIGKILL")
	})
	testenv.WaitFor(t, "serve to print its address", func() bool {
		m := listeningRE.FindStringSubmatch(p.stdout.String())
		if m != nil {
			p.url = m[1]
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("serve exited: %v\nstdout: %s\nstderr: %s", err, p.stdout, p.stderr)
		default:
		}
		return m != nil
	})
	return p
}

// terminate sends SIGTERM and returns the exit error (nil for status 0).
func (p *serveProcess) terminate(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not exit after SIGTERM\nstderr: %s", p.stderr)
		return nil
	}
}

// TestServeProcess runs the real binary: serve prints its key and address,
// runs guests in `wasmwiz worker` processes it starts from itself, and
// exits 0 on SIGTERM after answering the run in flight.
func TestServeProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := startServeProcess(t, map[string]string{
		"WASMWIZ_ADDR": "127.0.0.1:0", "WASMWIZ_DATA_DIR": t.TempDir(), "WASMWIZ_WORKERS": "1",
	})
	key := keyPattern.FindString(p.stdout.String())
	c, err := client.New(p.url, key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
	if err != nil || string(res.Stdout) != "Hello, World!\n" {
		t.Fatalf("execute on the real binary: %+v, %v\nstderr: %s", res, err, p.stderr)
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
	if err := p.terminate(t); err != nil {
		t.Fatalf("serve after SIGTERM: %v\nstderr: %s", err, p.stderr)
	}
	if err := testenv.Recv(t, inflight, "the run in flight at SIGTERM"); err != nil {
		t.Fatalf("the run in flight at SIGTERM: %v", err)
	}
	if !regexp.MustCompile(`msg="shut down" usage_written=2 usage_dropped=0`).MatchString(p.stderr.String()) {
		t.Fatalf("shutdown did not flush both usage records:\n%s", p.stderr)
	}
}

// TestServeProcessesShareRedis: two serve processes on one PostgreSQL and
// one Redis share one user's per-minute quota.
func TestServeProcessesShareRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	redisURL := emptyRedisDB(t, 11)
	db := pgtest.Schema(t)
	vars := func() map[string]string {
		return map[string]string{"WASMWIZ_ADDR": "127.0.0.1:0", "WASMWIZ_DATA_DIR": t.TempDir(), "WASMWIZ_WORKERS": "1",
			"WASMWIZ_DATABASE_URL": db, "WASMWIZ_REDIS_URL": redisURL,
			"WASMWIZ_REDIS_TIMEOUT": "5s"} // about sharing: no fallback on a loaded machine
	}
	a := startServeProcess(t, vars())
	b := startServeProcess(t, vars())
	key := keyPattern.FindString(a.stdout.String() + b.stdout.String())
	admin, _ := client.New(a.url, key)
	if _, err := admin.AdminPutTier(ctx, testTier("shared", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 4 })); err != nil {
		t.Fatal(err)
	}
	cu, err := admin.AdminCreateUser(ctx, api.UserRequest{Email: "shared@example.com", Tier: "shared", CreateKey: true})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := client.New(a.url, cu.Secret)
	cb, _ := client.New(b.url, cu.Secret)
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
	for _, p := range []*serveProcess{a, b} {
		if err := p.terminate(t); err != nil {
			t.Fatalf("SIGTERM: %v\nstderr: %s", err, p.stderr)
		}
	}
}
