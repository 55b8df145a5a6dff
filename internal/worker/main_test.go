package worker

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// workerChild is the test binary as a worker process: the pool's tests
// start real workers by re-executing the test binary, which then runs the
// same ServeProcess as `wasmwiz worker`, on the real engine.
const workerChild testenv.Child = "WASMWIZ_WORKER_TEST_CHILD"

func TestMain(m *testing.M) {
	serverStandIn.Become(serverStandInMain)
	pipeEchoChild.Become(pipeEchoMain)
	workerChild.Become(func() error {
		opts := ServeOptions{NewEngine: NewEngine}
		if os.Getenv(faultyEnv) == "1" {
			opts.NewEngine = newFaultyEngine
		}
		return ServeProcess(context.Background(), opts)
	})
	os.Exit(testenv.Run(m))
}

// testOptions are pool options that start workers from the test binary.
func testOptions(t testing.TB, size, spares int) Options {
	t.Helper()
	return Options{
		Size:     size,
		Spares:   spares,
		Command:  workerChild.Argv(),
		Env:      []string{workerChild.Env()},
		CacheDir: t.TempDir(),
	}
}

// newTestPool starts a pool and closes it when the test ends, checking that
// Close leaves no worker behind.
func newTestPool(t testing.TB, opts Options) *Pool {
	t.Helper()
	pl := startPool(t, opts)
	t.Cleanup(func() {
		pids := pl.PIDs()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pl.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		wantGone(t, pids)
	})
	return pl
}

// startPool starts a pool that the test closes itself.
func startPool(t testing.TB, opts Options) *Pool {
	t.Helper()
	pl, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return pl
}

// wantGone fails for every worker of pids whose process still exists after
// the pool's Close.
func wantGone(t testing.TB, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if processExists(pid) {
			t.Errorf("worker %d still exists after Close", pid)
		}
	}
}

// processExists reports whether pid names a process, zombies included (a
// zombie still has /proc/pid; kill(pid, 0) succeeds on it too).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// children returns the pids of this process's children, zombies included,
// read from /proc.
func children(t testing.TB) []int {
	t.Helper()
	procs, err := procfs.AllProcs()
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	me := os.Getpid()
	var pids []int
	for _, p := range procs {
		if st, err := p.Stat(); err == nil && st.PPID == me { // an error: gone meanwhile
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// busyPIDs returns the pids of the workers running a request.
func busyPIDs(pl *Pool) []int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var pids []int
	for p := range pl.procs {
		if p.state == stateBusy {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// wantHello runs hello.wasm in pl and fails unless it prints its greeting
// and nothing on stderr: the pool still serves a clean run after what the
// test did before (when names it, for the message).
func wantHello(t testing.TB, pl *Pool, when string) {
	t.Helper()
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
	if err != nil || string(res.Stdout) != "Hello, World!\n" || len(res.Stderr) != 0 {
		t.Fatalf("hello %s: %v, %+v", when, err, res)
	}
}

// compileFirst inspects modules in pl under generous limits, so that a
// test's short wall time is its guest's: the wall time covers compiling a
// module the pool has not compiled yet.
func compileFirst(t testing.TB, pl *Pool, wasm ...[]byte) {
	t.Helper()
	for _, w := range wasm {
		if _, err := pl.Inspect(context.Background(), w, testmodule.Limits()); err != nil {
			t.Fatalf("compiling a test module first: %v", err)
		}
	}
}
