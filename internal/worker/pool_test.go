package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/metrictest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

func TestPoolRunOutcomes(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 2, 0))
	type want struct {
		status   wasmwiz.Status
		exitCode int
		stdout   string
		stderr   string
		trap     string
		results  []string
		code     string // error code; "" means a result
	}
	tests := []struct {
		name string
		req  *wasmwiz.RunRequest
		want want
	}{
		{"hello", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm")},
			want{status: wasmwiz.StatusOK, stdout: "Hello, World!\n"}},
		{"echo with stdin", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "echo.wasm"), Stdin: []byte("  hi there \n")},
			want{status: wasmwiz.StatusOK, stdout: "hi there"}},
		{"exit code", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "exit_code.wasm"), Args: []string{"7"}},
			want{status: wasmwiz.StatusExit, exitCode: 7, stdout: "before exit\n", stderr: "to stderr\n"}},
		{"trap", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "traps.wasm"), Function: "unreachable"},
			want{status: wasmwiz.StatusTrap, trap: "unreachable"}},
		{"memory limit", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "memory_bomb.wasm"),
			Limits: wasmwiz.Limits{MaxMemoryBytes: 4 * wasmwiz.MiB}},
			want{status: wasmwiz.StatusMemoryLimit}},
		{"plain function", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "add.wasm"), Function: "add", Params: []string{"5", "3"}},
			want{status: wasmwiz.StatusOK, results: []string{"8"}}},
		{"unknown function", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "add.wasm"), Function: "nope"},
			want{code: wasmwiz.EINVALID}},
		{"not wasm", &wasmwiz.RunRequest{Wasm: []byte("hello, I am text")},
			want{code: wasmwiz.EINVALID}},
		{"module too large", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: wasmwiz.Limits{MaxModuleBytes: 10}},
			want{code: wasmwiz.ETOOLARGE}},
		{"stdin too large", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "echo.wasm"), Stdin: make([]byte, 100),
			Limits: wasmwiz.Limits{MaxStdinBytes: 10}},
			want{code: wasmwiz.ETOOLARGE}},
		{"no timeout", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: wasmwiz.Limits{Timeout: -1}},
			want{code: wasmwiz.EINVALID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := *tt.req
			req.Limits = req.Limits.Clamp(testmodule.Limits())
			if tt.req.Limits.Timeout < 0 {
				req.Limits.Timeout = 0
			}
			res, err := pl.Run(context.Background(), &req)
			if tt.want.code != "" {
				if got := wasmwiz.ErrorCode(err); got != tt.want.code {
					t.Fatalf("error code = %q (%v), want %s", got, err, tt.want.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != tt.want.status {
				t.Errorf("status = %s (trap %q), want %s", res.Status, res.Trap, tt.want.status)
			}
			if res.ExitCode != tt.want.exitCode {
				t.Errorf("exit code = %d, want %d", res.ExitCode, tt.want.exitCode)
			}
			if string(res.Stdout) != tt.want.stdout {
				t.Errorf("stdout = %q, want %q", res.Stdout, tt.want.stdout)
			}
			if string(res.Stderr) != tt.want.stderr {
				t.Errorf("stderr = %q, want %q", res.Stderr, tt.want.stderr)
			}
			if !strings.Contains(res.Trap, tt.want.trap) {
				t.Errorf("trap = %q, want it to mention %q", res.Trap, tt.want.trap)
			}
			var got []string
			for _, v := range res.Results {
				got = append(got, v.String())
			}
			if strings.Join(got, ",") != strings.Join(tt.want.results, ",") {
				t.Errorf("results = %v, want %v", got, tt.want.results)
			}
			if res.Module.SHA256 != moduleSHA("", req.Wasm) || res.Module.SizeBytes != int64(len(req.Wasm)) {
				t.Errorf("module = %+v, want the module's sha256 and size", res.Module)
			}
		})
	}
}

// TestPoolTimeoutKillsWorker runs guests that never return: a tight loop and
// a loop-free doubly recursive fib(60), which wazero's in-guest cancellation
// cannot stop. Each must end at its deadline with status timeout, by killing
// its worker: the process is gone (reaped) when Run returns, and a spare
// serves the next run.
func TestPoolTimeoutKillsWorker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		module       string
		inspectFirst bool // the worker holds the module before the run
	}{
		{"tight loop", "loop.wasm", false},
		{"loop-free recursion", "fib_recursive.wasm", false},
		{"held module", "fib_recursive.wasm", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pl := newTestPool(t, testOptions(t, 1, 1))
			before := pl.PIDs()
			l := testmodule.Limits()
			l.Timeout = 300 * time.Millisecond
			if !tt.inspectFirst {
				l.Timeout = time.Second // the compile is inside it
			}
			wasm := testmodule.Read(t, tt.module)
			if tt.inspectFirst {
				if _, err := pl.Inspect(context.Background(), wasm, l); err != nil {
					t.Fatalf("Inspect: %v", err)
				}
			}
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: l})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != wasmwiz.StatusTimeout {
				t.Fatalf("status = %s, want timeout", res.Status)
			}
			if res.Duration+res.CompileDuration < l.Timeout {
				t.Errorf("duration %v and compile %v are shorter than the timeout %v", res.Duration, res.CompileDuration, l.Timeout)
			}
			if res.CPUTime <= 0 {
				t.Errorf("CPU time %v: a guest that spun until it was killed used CPU", res.CPUTime)
			}
			if res.Module.SHA256 != moduleSHA("", wasm) || res.Module.Entry != "_start" {
				t.Errorf("module = %+v, want its sha256 and entry _start", res.Module)
			}
			var gone []int
			after := pl.PIDs()
			for _, pid := range before {
				if !contains(after, pid) {
					gone = append(gone, pid)
				}
			}
			if len(gone) != 1 {
				t.Fatalf("workers before %v, after %v: want exactly one gone", before, after)
			}
			if processExists(gone[0]) {
				t.Errorf("killed worker %d still exists", gone[0])
			}
			s := pl.Stats()
			if s.Timeouts != 1 || s.Kills != 1 {
				t.Errorf("stats = %+v, want one timeout and one kill", s)
			}
			if tt.inspectFirst && (s.ModuleSends != 1 || s.ModuleHits != 1) {
				t.Errorf("stats = %+v, want the run routed to the worker that inspected the module", s)
			}
			// The spare answers at once; the pool returns to full strength.
			res, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
			if err != nil || res.Status != wasmwiz.StatusOK {
				t.Fatalf("hello after the timeout: %v, %+v", err, res)
			}
			testenv.WaitFor(t, "a replacement worker", func() bool { return pl.Stats().Workers == 2 })
		})
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestPoolHostileGuestsDoNotStallOthers: while two loop-free recursive guests
// run until their deadline, hello-world runs on the same pool keep
// completing. The assertion is about order: every hello finished while both
// hostile runs were still running.
func TestPoolHostileGuestsDoNotStallOthers(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 3, 0))
	hostile := testmodule.Limits()
	hostile.Timeout = 5 * time.Second
	// Outside make prove the hostile runs end when the hello runs are done,
	// their callers leaving (the worker killed all the same): waiting out
	// their wall time only burnt 10 s of processor time. With make prove
	// they run to their deadline, for the figure.
	hostileCtx, leave := context.WithCancel(context.Background())
	defer leave()
	var hostileDone atomic.Int32
	var wg sync.WaitGroup
	results := make([]*wasmwiz.Result, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			results[i], errs[i] = pl.Run(hostileCtx, &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "fib_recursive.wasm"), Limits: hostile})
			hostileDone.Add(1)
		})
	}
	testenv.WaitFor(t, "both hostile guests to run", func() bool { return len(busyPIDs(pl)) == 2 })
	hello := testmodule.Read(t, "hello.wasm")
	var helloTook testenv.Latencies
	for i := range 20 {
		start := time.Now()
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, Limits: testmodule.Limits()})
		helloTook.Since(start)
		if err != nil || res.Status != wasmwiz.StatusOK || string(res.Stdout) != "Hello, World!\n" {
			t.Fatalf("hello %d: %v, %+v", i, err, res)
		}
		if n := hostileDone.Load(); n != 0 {
			t.Fatalf("hello %d finished after %d hostile runs ended: it waited for them", i, n)
		}
	}
	if !testenv.Proving() {
		leave()
	}
	testenv.Wait(t, "the hostile runs", wg.Wait)
	for i := range 2 {
		switch {
		case testenv.Proving() && (errs[i] != nil || results[i].Status != wasmwiz.StatusTimeout):
			t.Errorf("hostile run %d: %v, %+v; want status timeout", i, errs[i], results[i])
		case !testenv.Proving() && wasmwiz.ErrorCode(errs[i]) != wasmwiz.EUNAVAILABLE && (errs[i] != nil || results[i].Status != wasmwiz.StatusTimeout):
			t.Errorf("hostile run %d: %v, %+v; want EUNAVAILABLE (its caller left) or status timeout", i, errs[i], results[i])
		}
	}
	if s := pl.Stats(); s.Kills < 2 {
		t.Errorf("stats = %+v, want both hostile guests' workers killed", s)
	}
	testenv.Prove(t, "two loop-free recursive guests on a pool of 3 workers (wall time 5s)",
		"both killed at their deadline (timeout); 20 hello worlds complete on the third worker before either ends",
		"other tenant's latency", helloTook.String())
}

// TestPoolCrashRecovery kills a worker from outside in the middle of a run:
// that run answers EINTERNAL, or, for a SIGKILL the pool did not send (what
// the kernel's out-of-memory killer sends for the host's memory),
// EUNAVAILABLE with a hint to retry, neither memory_limit nor anything the
// pool remembers of the module; and the pool replaces the worker.
func TestPoolCrashRecovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		signal syscall.Signal
		code   string // the run's error code
	}{
		{"a crash is EINTERNAL", syscall.SIGTERM, wasmwiz.EINTERNAL},
		{"a SIGKILL from outside is EUNAVAILABLE", syscall.SIGKILL, wasmwiz.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pl := newTestPool(t, testOptions(t, 1, 1))
			compileFirst(t, pl, testmodule.Read(t, "loop.wasm")) // killed while the guest runs, not while it compiles
			type answer struct {
				res *wasmwiz.Result
				err error
			}
			done := make(chan answer, 1)
			go func() {
				res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "loop.wasm"), Limits: testmodule.Limits()})
				done <- answer{res, err}
			}()
			testenv.WaitFor(t, "the run to start", func() bool { return len(busyPIDs(pl)) == 1 })
			pid := busyPIDs(pl)[0]
			if err := syscall.Kill(pid, tt.signal); err != nil {
				t.Fatalf("kill: %v", err)
			}
			a := testenv.Recv(t, done, "the killed worker's run")
			if got := wasmwiz.ErrorCode(a.err); got != tt.code {
				t.Fatalf("error code = %q (%v), want %q", got, a.err, tt.code)
			}
			if _, retry := wasmwiz.RetryAfter(a.err); retry != (tt.code == wasmwiz.EUNAVAILABLE) {
				t.Errorf("retry hint %v with %v", retry, a.err)
			}
			if processExists(pid) {
				t.Errorf("crashed worker %d was not reaped", pid)
			}
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
			if err != nil || res.Status != wasmwiz.StatusOK {
				t.Fatalf("hello after the crash: %v, %+v", err, res)
			}
			testenv.WaitFor(t, "a replacement worker", func() bool { return pl.Stats().Workers == 2 })
			if s := pl.Stats(); s.Crashes != 1 || s.Restarts < 1 {
				t.Errorf("stats = %+v, want one crash and a restart", s)
			}
		})
	}
}

// TestPoolIdleWorkerDeath: a worker that dies while idle is reaped and
// replaced, and never handed a run.
func TestPoolIdleWorkerDeath(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	pid := pl.PIDs()[0]
	// The kernel's OOM killer is told to prefer workers to the server.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid)); err != nil || strings.TrimSpace(string(b)) != "1000" {
		t.Errorf("worker oom_score_adj = %q (%v), want 1000", b, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	testenv.WaitFor(t, "the dead worker to be replaced", func() bool {
		pids := pl.PIDs()
		return len(pids) == 1 && pids[0] != pid
	})
	if processExists(pid) {
		t.Errorf("dead worker %d was not reaped", pid)
	}
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("hello: %v, %+v", err, res)
	}
}

// TestPoolKilledIdleWorkersLeaveNoVerdict: a run handed a worker that was
// killed while idle (SIGKILL from outside, as the kernel's out-of-memory
// killer's) runs, on a worker that was not dead yet, or answers
// EUNAVAILABLE with a hint to retry, and is no verdict against its module:
// the module runs once the workers are replaced (a compile that seemed to
// die of memory would be refused for an hour, compile.go).
func TestPoolKilledIdleWorkersLeaveNoVerdict(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 2, 1))
	for round := range 5 {
		testenv.WaitFor(t, "the pool at full strength", func() bool {
			s := pl.Stats()
			return s.Idle == 3 && s.Starting == 0
		})
		killed := pl.PIDs()
		for _, pid := range killed {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		// A new module each round: its compile is the one a verdict would
		// name.
		wasm := hostiletest.Const(int32(round))
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Function: "get", Limits: testmodule.Limits()})
		if _, retry := wasmwiz.RetryAfter(err); err != nil && (wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !retry) || err == nil && res.Status != wasmwiz.StatusOK {
			t.Fatalf("round %d: the run beside the killed workers: %v, %s (want success, or EUNAVAILABLE to retry)", round, err, statusOf(res))
		}
		testenv.WaitFor(t, "the killed workers to be reaped", func() bool {
			return !slices.ContainsFunc(pl.PIDs(), func(p int) bool { return slices.Contains(killed, p) })
		})
		res, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Function: "get", Limits: testmodule.Limits()})
		if err != nil || res.Status != wasmwiz.StatusOK {
			t.Fatalf("round %d: the module after the kills: %v, %s", round, err, statusOf(res))
		}
	}
}

// TestPoolPassesOverWorkersThatDiedIdle: a request handed workers that had
// died while idle, before the pool saw them go (their reaping held back
// here; in the server, a kill from outside a moment before), reaches not a
// byte of them: the pool passes them over to a live worker, and the caller
// gets its answer, not an error to retry. For runs and inspections.
func TestPoolPassesOverWorkersThatDiedIdle(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 1))
	hello := testmodule.Read(t, "hello.wasm")
	requests := map[string]func() error{
		"run": func() error {
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, Limits: testmodule.Limits()})
			if err == nil && string(res.Stdout) != "Hello, World!\n" {
				err = fmt.Errorf("status %s, stdout %q", res.Status, res.Stdout)
			}
			return err
		},
		"inspect": func() error {
			_, err := pl.Inspect(context.Background(), hello, testmodule.Limits())
			return err
		},
	}
	for _, what := range []string{"run", "inspect"} {
		testenv.WaitFor(t, "the pool at full strength", func() bool {
			s := pl.Stats()
			return s.Idle == 2 && s.Starting == 0
		})
		killed := pl.PIDs()
		release := make(chan struct{})
		held := make(chan int, len(killed))
		hook := func(pid int) {
			if slices.Contains(killed, pid) {
				held <- pid
				<-release
			}
		}
		beforeReap.Store(&hook)
		released := sync.OnceFunc(func() { close(release); beforeReap.Store(nil) })
		t.Cleanup(released) // a failure below must not leave the workers unreaped
		for _, pid := range killed {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for range killed {
			testenv.Recv(t, held, "a killed worker marked dead")
		}
		done := make(chan error, 1)
		go func() { done <- requests[what]() }()
		testenv.WaitFor(t, "the "+what+" to take a dead worker", func() bool {
			return slices.ContainsFunc(busyPIDs(pl), func(pid int) bool { return slices.Contains(killed, pid) })
		})
		released()
		if err := testenv.Recv(t, done, "the "+what); err != nil {
			t.Fatalf("%s handed dead workers: %v", what, err)
		}
	}
}

// TestPoolCancelKillsWorker: when the caller goes away mid-run, the worker
// is killed and the run answers EUNAVAILABLE, with a Result that says how
// long it ran (for its usage record).
func TestPoolCancelKillsWorker(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	compileFirst(t, pl, testmodule.Read(t, "fib_recursive.wasm")) // cancelled while the guest runs, not while it compiles
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		res *wasmwiz.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := pl.Run(ctx, &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "fib_recursive.wasm"), Limits: testmodule.Limits()})
		done <- answer{res, err}
	}()
	testenv.WaitFor(t, "the run to start", func() bool { return len(busyPIDs(pl)) == 1 })
	pid := busyPIDs(pl)[0]
	cancel()
	a := testenv.Recv(t, done, "the cancelled run")
	if got := wasmwiz.ErrorCode(a.err); got != wasmwiz.EUNAVAILABLE {
		t.Fatalf("error code = %q (%v), want EUNAVAILABLE", got, a.err)
	}
	if a.res == nil || a.res.Duration <= 0 || a.res.CPUTime <= 0 {
		t.Errorf("a cancelled run's result %+v, want one with the time and the CPU it used", a.res)
	}
	if processExists(pid) {
		t.Errorf("worker %d of the cancelled run still exists", pid)
	}
}

// TestPoolConcurrency: more parallel runs than workers all answer.
func TestPoolConcurrency(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 2, 0))
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			in := strings.Repeat("x", i+1)
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "echo.wasm"), Stdin: []byte(in), Limits: testmodule.Limits()})
			switch {
			case err != nil:
				errs <- err
			case string(res.Stdout) != in:
				errs <- &wasmwiz.Error{Code: "TEST", Message: "run " + in + " got " + string(res.Stdout)}
			}
		})
	}
	testenv.Wait(t, "the concurrent runs", wg.Wait)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := pl.Stats(); s.Runs != n || s.Busy != 0 || s.Idle != 2 {
		t.Errorf("stats = %+v, want %d runs and both workers idle", s, n)
	}
}

// TestPoolModuleRouting: module bytes cross once per worker; later runs of
// the same module go to a worker that holds it.
func TestPoolModuleRouting(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 2, 0))
	hello, add := testmodule.Read(t, "hello.wasm"), testmodule.Read(t, "add.wasm")
	run := func(req *wasmwiz.RunRequest) {
		t.Helper()
		req.Limits = testmodule.Limits()
		if _, err := pl.Run(context.Background(), req); err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	for range 5 {
		run(&wasmwiz.RunRequest{Wasm: hello})
		run(&wasmwiz.RunRequest{Wasm: add, Function: "add", Params: []string{"1", "2"}})
	}
	// One at a time, each run finds an idle worker holding its module after
	// the first of each: two sends, eight hits.
	if s := pl.Stats(); s.ModuleSends != 2 || s.ModuleHits != 8 {
		t.Errorf("stats = %+v, want 2 module sends and 8 hits", s)
	}
	// A trusted digest that the worker does not hold is asked for again.
	pl.mu.Lock()
	for p := range pl.procs {
		p.mods.add("0000", 1, nil) // the mirror believes in a module the child never got
	}
	pl.mu.Unlock()
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, SHA256: "0000", Limits: testmodule.Limits()})
	if err != nil || string(res.Stdout) != "Hello, World!\n" {
		t.Fatalf("run after a need-module answer: %v, %+v", err, res)
	}
}

func TestPoolInspect(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	tests := []struct {
		name  string
		wasm  []byte
		entry string
		wasi  bool
		code  string
	}{
		{"wasi command", testmodule.Read(t, "hello.wasm"), "_start", true, ""},
		{"plain module", testmodule.Read(t, "plain_main.wasm"), "main", false, ""},
		{"not wasm", []byte("text"), "", false, wasmwiz.EINVALID},
		{"memory above the limit", testmodule.Read(t, "big_memory.wasm"), "", false, wasmwiz.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := pl.Inspect(context.Background(), tt.wasm, testmodule.Limits())
			if tt.code != "" {
				if got := wasmwiz.ErrorCode(err); got != tt.code {
					t.Fatalf("error code = %q (%v), want %s", got, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if in.Entry != tt.entry || in.WASI != tt.wasi || in.SHA256 != moduleSHA("", tt.wasm) {
				t.Errorf("inspection = %+v, want entry %q, wasi %v", in, tt.entry, tt.wasi)
			}
		})
	}
}

// TestPoolClose: Close lets a run in flight finish, refuses new requests and
// leaves no worker process.
func TestPoolClose(t *testing.T) {
	t.Parallel()
	pl := startPool(t, testOptions(t, 2, 1))
	pids := pl.PIDs()
	compileFirst(t, pl, testmodule.Read(t, "loop.wasm"))
	l := testmodule.Limits()
	l.Timeout = 500 * time.Millisecond
	done := make(chan *wasmwiz.Result, 1)
	go func() {
		res, _ := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "loop.wasm"), Limits: l})
		done <- res
	}()
	testenv.WaitFor(t, "the run to start", func() bool { return len(busyPIDs(pl)) == 1 })
	if err := pl.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if res := testenv.Recv(t, done, "the run in flight during Close"); res == nil || res.Status != wasmwiz.StatusTimeout {
		t.Errorf("run in flight during Close = %+v, want it to finish with its own outcome", res)
	}
	if _, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()}); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Errorf("Run after Close: %v, want EUNAVAILABLE", err)
	}
	wantGone(t, pids)
}

// TestPoolCloseDeadline: when ctx ends first, Close kills the runs in flight.
func TestPoolCloseDeadline(t *testing.T) {
	t.Parallel()
	pl := startPool(t, testOptions(t, 1, 0))
	done := make(chan error, 1)
	go func() {
		_, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "loop.wasm"), Limits: testmodule.Limits()})
		done <- err
	}()
	testenv.WaitFor(t, "the run to start", func() bool { return len(busyPIDs(pl)) == 1 })
	pid := busyPIDs(pl)[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pl.Close(ctx); err == nil {
		t.Errorf("Close with an ended ctx = nil, want its error")
	}
	if got := wasmwiz.ErrorCode(testenv.Recv(t, done, "the killed run")); got != wasmwiz.EUNAVAILABLE {
		t.Errorf("killed run's error code = %q, want EUNAVAILABLE", got)
	}
	if processExists(pid) {
		t.Errorf("worker %d exists after Close", pid)
	}
}

func TestNewFailsWithBrokenCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		code string
	}{
		{"no command", Options{Size: 1}, wasmwiz.EINVALID},
		{"missing program", Options{Size: 1, Command: []string{"/nonexistent/wasmwiz"}}, wasmwiz.EINTERNAL},
		{"not a worker", Options{Size: 1, Command: []string{"/bin/true"}}, wasmwiz.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(context.Background(), tt.opts)
			if got := wasmwiz.ErrorCode(err); got != tt.code {
				t.Fatalf("error code = %q (%v), want %s", got, err, tt.code)
			}
		})
	}
}

// TestPoolCacheStats: the workers' compiled-code cache figures reach the
// pool; counters survive the death of the worker that made them, and a
// replacement worker finds compiled code in the shared disk cache.
func TestPoolCacheStats(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	hello := &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()}
	run := func(req *wasmwiz.RunRequest) *wasmwiz.Result {
		t.Helper()
		res, err := pl.Run(context.Background(), req)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return res
	}
	if res := run(hello); res.CompileCached {
		t.Errorf("first run of hello reports compile_cached, but the worker compiled it")
	} else if res.CPUTime <= 0 {
		t.Errorf("a run that compiled its module reports %v of CPU time", res.CPUTime)
	}
	first := pl.CacheStats()
	if first.Misses != 1 || first.Entries != 1 || first.Bytes <= 0 || first.CompileSeconds <= 0 {
		t.Fatalf("after the first run: %+v, want one compile held", first)
	}
	if res := run(hello); !res.CompileCached {
		t.Errorf("second run of hello was not served from the cache")
	}
	if st := pl.CacheStats(); st.Misses != 1 || st.Hits <= first.Hits {
		t.Errorf("after the second run: %+v, want no new compile and more hits than %+v", st, first)
	}
	compileFirst(t, pl, testmodule.Read(t, "loop.wasm")) // the second compile, outside the short wall time
	l := testmodule.Limits()
	l.Timeout = 50 * time.Millisecond
	if res := run(&wasmwiz.RunRequest{Wasm: testmodule.Read(t, "loop.wasm"), Limits: l}); res.Status != wasmwiz.StatusTimeout {
		t.Fatalf("loop status = %s, want timeout", res.Status)
	}
	testenv.WaitFor(t, "a replacement worker", func() bool { return pl.Stats().Idle == 1 })
	killed := pl.CacheStats()
	if killed.Misses != 2 || killed.Entries != 0 {
		t.Errorf("after the worker was killed: %+v, want its two compiles kept and no entries", killed)
	}
	if res := run(hello); !res.CompileCached {
		t.Errorf("hello on the replacement worker did not find its compiled code in the disk cache")
	}
	st := pl.CacheStats()
	if st.DiskHits < 1 || st.Misses <= killed.Misses {
		t.Errorf("after hello on the replacement: %+v, want a disk hit", st)
	}
	// The pool's collector exports its counters and the cache figures.
	m := metrictest.Values(t, pl)
	ps := pl.Stats()
	for name, want := range map[string]float64{
		`wasmwiz_workers{state="idle"}`: float64(ps.Idle),
		`wasmwiz_worker_timeouts_total`: 1,
		`wasmwiz_worker_kills_total`:    float64(ps.Kills),
		`wasmwiz_compiles_total`:        float64(st.Misses),
		`wasmwiz_compile_seconds_total`: st.CompileSeconds,
		`wasmwiz_compile_cache_entries`: float64(st.Entries),
		`wasmwiz_worker_restarts_total`: float64(ps.Restarts),
		`wasmwiz_worker_crashes_total`:  0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (exported %v), want %v", name, got, ok, want)
		}
	}
}

// TestPoolDeadlineWithoutKill: a guest that waits in a host sleep is ended
// at the deadline by the engine inside the worker, within the kill grace,
// so the worker answers by itself and survives; the other guest outcomes
// that end a run early come back through the pool unchanged.
func TestPoolDeadlineWithoutKill(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		req       *wasmwiz.RunRequest
		status    wasmwiz.Status
		truncated bool
	}{
		{"nanosleep", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"60000"}}, wasmwiz.StatusTimeout, false},
		{"poll_oneoff", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "poll_sleep.wasm")}, wasmwiz.StatusTimeout, false},
		{"output flood", &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "flood.wasm")}, wasmwiz.StatusOutputLimit, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(t, 1, 0)
			// A grace far above any scheduling delay: the engine must be
			// the one that stops these guests.
			opts.KillGrace = 10 * time.Second
			pl := newTestPool(t, opts)
			pid := pl.PIDs()[0]
			compileFirst(t, pl, tt.req.Wasm)
			req := *tt.req
			req.Limits = testmodule.Limits()
			req.Limits.Timeout = 200 * time.Millisecond
			req.Limits.MaxOutputBytes = 64 * wasmwiz.KiB
			res, err := pl.Run(context.Background(), &req)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != tt.status || res.StdoutTruncated != tt.truncated {
				t.Fatalf("status %s, stdout truncated %v; want %s, %v", res.Status, res.StdoutTruncated, tt.status, tt.truncated)
			}
			if tt.truncated && int64(len(res.Stdout)) != req.Limits.MaxOutputBytes {
				t.Errorf("stdout is %d bytes, want the cap %d", len(res.Stdout), req.Limits.MaxOutputBytes)
			}
			if s := pl.Stats(); s.Kills != 0 || !contains(pl.PIDs(), pid) {
				t.Errorf("stats %+v, workers %v: want worker %d alive and no kill", s, pl.PIDs(), pid)
			}
		})
	}
}

// TestPoolHostCallLoop: a guest busy calling the host forever ends at its
// deadline too.
func TestPoolHostCallLoop(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 1))
	compileFirst(t, pl, testmodule.Read(t, "hostcall_loop.wasm"))
	l := testmodule.Limits()
	l.Timeout = 200 * time.Millisecond
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hostcall_loop.wasm"), Limits: l})
	if err != nil || res.Status != wasmwiz.StatusTimeout {
		t.Fatalf("Run: %v, %+v; want status timeout", err, res)
	}
}

// TestPoolCloseUnderLoad: callers that keep running while the pool closes
// get a result or EUNAVAILABLE, never anything else, and no worker is left.
func TestPoolCloseUnderLoad(t *testing.T) {
	t.Parallel()
	pl := startPool(t, testOptions(t, 2, 1))
	pids := pl.PIDs()
	hello := testmodule.Read(t, "hello.wasm")
	var wg sync.WaitGroup
	var ran atomic.Int64
	stop := make(chan struct{})
	for range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, Limits: testmodule.Limits()})
				switch {
				case err == nil && res.Status == wasmwiz.StatusOK:
					ran.Add(1)
				case wasmwiz.ErrorCode(err) == wasmwiz.EUNAVAILABLE:
				default:
					t.Errorf("Run during Close: %v, %+v", err, res)
					return
				}
			}
		})
	}
	testenv.WaitFor(t, "some runs", func() bool { return ran.Load() >= 20 })
	if err := pl.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	close(stop)
	testenv.Wait(t, "the callers", wg.Wait)
	for _, pid := range pl.PIDs() {
		t.Errorf("worker %d still listed after Close", pid)
	}
	wantGone(t, pids)
}

// TestPoolStartFailures: a worker that never says hello is killed at
// StartTimeout and New fails without leaving a process; a pool whose
// replacements cannot start keeps retrying and recovers once they can.
func TestPoolStartFailures(t *testing.T) {
	t.Parallel()
	t.Run("no hello", func(t *testing.T) {
		t.Parallel()
		before := len(children(t))
		_, err := New(context.Background(), Options{Size: 1, Command: []string{"/bin/sleep", "600"}, StartTimeout: 200 * time.Millisecond})
		if got := wasmwiz.ErrorCode(err); got != wasmwiz.EINTERNAL {
			t.Fatalf("New = %v, want EINTERNAL", err)
		}
		// Parallel tests start their own workers; ours must not be among
		// the children left: none is a sleep.
		for _, pid := range children(t) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.HasPrefix(string(b), "/bin/sleep") {
				t.Errorf("the worker that never answered (%d) is still there; children before: %d", pid, before)
			}
		}
	})
	t.Run("replacements fail, then recover", func(t *testing.T) {
		t.Parallel()
		gate := filepath.Join(t.TempDir(), "may-start")
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		opts := testOptions(t, 1, 0)
		opts.Command = []string{"/bin/sh", "-c", `test -e "$1" && exec "$2" -test.run='^$'`, "sh", gate, os.Args[0]}
		opts.NoLandlock = true // the domain would let the shell execute only itself
		pl := newTestPool(t, opts)
		if err := os.Remove(gate); err != nil {
			t.Fatal(err)
		}
		compileFirst(t, pl, testmodule.Read(t, "loop.wasm"))
		l := testmodule.Limits()
		l.Timeout = 50 * time.Millisecond
		if res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "loop.wasm"), Limits: l}); err != nil || res.Status != wasmwiz.StatusTimeout {
			t.Fatalf("loop: %v, %+v", err, res)
		}
		testenv.WaitFor(t, "failed restarts", func() bool { return pl.Stats().StartFails >= 2 })
		// With no worker to be had, a run waits until its caller leaves.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := pl.Run(ctx, &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
		cancel()
		if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !strings.Contains(wasmwiz.ErrorMessage(err), "waiting for a worker") {
			t.Errorf("run with no worker: %v, want EUNAVAILABLE while waiting for a worker", err)
		}
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
		if err != nil || res.Status != wasmwiz.StatusOK {
			t.Fatalf("hello once workers can start again: %v, %+v", err, res)
		}
	})
}

// TestPoolInspectTimeout: an inspection whose compile passes its bound (the
// limits' wall time, or InspectTimeout when they set none) is refused
// ETOOLARGE with its worker killed, and the refusal is remembered: the
// same module again is refused without a worker.
func TestPoolInspectTimeout(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 1, 0)
	opts.InspectTimeout = time.Nanosecond
	pl := newTestPool(t, opts)
	pid := pl.PIDs()[0]
	_, err := pl.Inspect(context.Background(), testmodule.Read(t, "hello.wasm"), wasmwiz.Limits{})
	if got := wasmwiz.ErrorCode(err); got != wasmwiz.ETOOLARGE || !strings.Contains(wasmwiz.ErrorMessage(err), "did not compile within 1ns") {
		t.Fatalf("Inspect = %v, want ETOOLARGE", err)
	}
	if processExists(pid) {
		t.Errorf("worker %d of the timed-out inspection still exists", pid)
	}
	before := pl.Stats()
	_, err = pl.Inspect(context.Background(), testmodule.Read(t, "hello.wasm"), wasmwiz.Limits{})
	if got := wasmwiz.ErrorCode(err); got != wasmwiz.ETOOLARGE {
		t.Fatalf("Inspect again = %v, want ETOOLARGE", err)
	}
	if after := pl.Stats(); after.Inspections != before.Inspections || after.Kills != before.Kills {
		t.Errorf("the remembered refusal reached a worker: stats %+v, then %+v", before, after)
	}
	// A wall time longer than the one that failed may try again.
	if _, err := pl.Inspect(context.Background(), testmodule.Read(t, "hello.wasm"), testmodule.Limits()); err != nil {
		t.Fatalf("Inspect with a longer wall time: %v", err)
	}
}

// TestPoolWorkerOutlivesTheThreadsAround: a worker's parent-death signal
// (Pdeathsig) is tied to the thread that started it, and a thread ends
// when a goroutine locked to it returns, as the Landlock start's does once
// its worker is reaped. Workers started without Landlock are started from
// a thread of their own too, so threads ending around them (here 400, by
// goroutines that lock one and return) kill none.
func TestPoolWorkerOutlivesTheThreadsAround(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 2, 0)
	opts.NoLandlock = true
	pl := newTestPool(t, opts)
	before := pl.PIDs()
	for range 20 {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
				time.Sleep(time.Millisecond)
			})
		}
		wg.Wait()
	}
	for i := range 3 {
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
		if err != nil || res.Status != wasmwiz.StatusOK {
			t.Fatalf("hello %d after threads ended: %v, %s", i, err, statusOf(res))
		}
	}
	if s := pl.Stats(); s.Crashes != 0 || s.Kills != 0 || !slices.Equal(slices.Sorted(slices.Values(pl.PIDs())), slices.Sorted(slices.Values(before))) {
		t.Fatalf("workers %v then %v, stats %+v: a worker died with a thread", before, pl.PIDs(), s)
	}
}
