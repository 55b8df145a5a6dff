package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

var (
	sharedOnce sync.Once
	sharedEng  *Engine
)

// sharedEngine is one engine for the tests that do not inspect its cache.
func sharedEngine(t testing.TB) *Engine {
	t.Helper()
	sharedOnce.Do(func() {
		e, err := New(context.Background(), Options{})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		sharedEng = e
	})
	return sharedEng
}

func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	type want struct {
		status       wasmwiz.Status
		exitCode     int
		stdout       string // exact, unless stdoutPrefix
		stdoutPrefix bool
		stderr       string // substring
		trap         []string
		results      []string // Value.String of each
		stdoutTrunc  bool
		stderrTrunc  bool
		entry        string
		minPeak      int64
	}
	tests := []struct {
		name string
		file string
		req  func(r *wasmwiz.RunRequest)
		want want
	}{
		{"hello", "hello.wasm", nil, want{status: wasmwiz.StatusOK, stdout: "Hello, World!\n", entry: "_start"}},
		{"echo trims stdin", "echo.wasm", func(r *wasmwiz.RunRequest) { r.Stdin = []byte("  hi there \n\n") },
			want{status: wasmwiz.StatusOK, stdout: "hi there"}},
		{"calc_add", "calc_add.wasm", func(r *wasmwiz.RunRequest) { r.Stdin = []byte("5 3") },
			want{status: wasmwiz.StatusOK, stdout: "8\n"}},
		{"calc_add with one integer", "calc_add.wasm", func(r *wasmwiz.RunRequest) { r.Stdin = []byte("5") },
			want{status: wasmwiz.StatusExit, exitCode: 1, stderr: "expected two integers"}},
		{"non-zero exit keeps output", "exit_code.wasm", func(r *wasmwiz.RunRequest) { r.Args = []string{"7"} },
			want{status: wasmwiz.StatusExit, exitCode: 7, stdout: "before exit\n", stderr: "to stderr"}},
		{"args and env come only from the caller", "args_env.wasm", func(r *wasmwiz.RunRequest) {
			r.Name, r.Args, r.Env = "prog.wasm", []string{"a b", "c"}, map[string]string{"GREETING": "hi", "Z": "last"}
		}, want{status: wasmwiz.StatusOK, stdout: "argv[0]=prog.wasm\nargv[1]=a b\nargv[2]=c\nenv GREETING=hi\nenv Z=last\nwall_after_2020=1\nmonotonic_ok=1\nrandom_differs=1\n"}},
		{"wasi_unstable maps onto preview1", "unstable.wasm", nil, want{status: wasmwiz.StatusOK, stdout: "unstable ok\n"}},
		{"tight loop times out", "loop.wasm", func(r *wasmwiz.RunRequest) { r.Limits.Timeout = 100 * time.Millisecond },
			want{status: wasmwiz.StatusTimeout}},
		{"loop in the start section times out", "loop_start.wasm", func(r *wasmwiz.RunRequest) { r.Limits.Timeout = 100 * time.Millisecond },
			want{status: wasmwiz.StatusTimeout}},
		{"busy host calls time out", "hostcall_loop.wasm", func(r *wasmwiz.RunRequest) { r.Limits.Timeout = 100 * time.Millisecond },
			want{status: wasmwiz.StatusTimeout}},
		{"poll_oneoff sleep times out", "poll_sleep.wasm", func(r *wasmwiz.RunRequest) { r.Limits.Timeout = 100 * time.Millisecond },
			want{status: wasmwiz.StatusTimeout}},
		{"poll_oneoff returns ready fds at once", "poll_ready.wasm", nil,
			want{status: wasmwiz.StatusOK, stdout: "events 2, types 2 1\n"}},
		{"libc nanosleep times out", "sleep.wasm", func(r *wasmwiz.RunRequest) { r.Limits.Timeout = 100 * time.Millisecond },
			want{status: wasmwiz.StatusTimeout}},
		{"short sleep completes", "sleep.wasm", func(r *wasmwiz.RunRequest) { r.Args = []string{"5"} },
			want{status: wasmwiz.StatusOK, stdout: "slept\n"}},
		{"memory bomb hits the cap", "memory_bomb.wasm", func(r *wasmwiz.RunRequest) { r.Limits.MaxMemoryBytes = 4 * wasmwiz.MiB },
			// The instance's own footprint (account.go) takes its page of the cap.
			want{status: wasmwiz.StatusMemoryLimit, trap: []string{"unreachable"}, minPeak: 4*wasmwiz.MiB - 64*wasmwiz.KiB}},
		{"malloc bomb hits the cap", "malloc_bomb.wasm", func(r *wasmwiz.RunRequest) { r.Limits.MaxMemoryBytes = 8 * wasmwiz.MiB },
			want{status: wasmwiz.StatusMemoryLimit, exitCode: 1, stderr: "out of memory", minPeak: 7 * wasmwiz.MiB}},
		{"stdout flood", "flood.wasm", func(r *wasmwiz.RunRequest) { r.Limits.MaxOutputBytes = 1000 },
			want{status: wasmwiz.StatusOutputLimit, stdout: "flood!!\n", stdoutPrefix: true, stdoutTrunc: true}},
		{"stderr flood", "flood_stderr.wasm", func(r *wasmwiz.RunRequest) { r.Limits.MaxOutputBytes = 1000 },
			want{status: wasmwiz.StatusOutputLimit, stderr: "oops!!!", stderrTrunc: true}},
		// 1001 = 100 × (5 + 5) + 1: the cap is passed on stdout, by both
		// streams together.
		{"flood on both streams", "flood_both.wasm", func(r *wasmwiz.RunRequest) { r.Limits.MaxOutputBytes = 1001 },
			want{status: wasmwiz.StatusOutputLimit, stdout: "out!\n", stdoutPrefix: true, stderr: "err!\n", stdoutTrunc: true}},
		{"unreachable", "traps.wasm", func(r *wasmwiz.RunRequest) { r.Function = "unreachable" },
			want{status: wasmwiz.StatusTrap, trap: []string{"unreachable", "wasm stack trace"}}},
		{"integer divide by zero", "traps.wasm", func(r *wasmwiz.RunRequest) { r.Function = "div_by_zero" },
			want{status: wasmwiz.StatusTrap, trap: []string{"integer divide by zero"}}},
		{"out of bounds", "traps.wasm", func(r *wasmwiz.RunRequest) { r.Function = "out_of_bounds" },
			want{status: wasmwiz.StatusTrap, trap: []string{"out of bounds memory access"}}},
		// Exhausting the stack takes seconds under -race: a wall time a loaded
		// machine never comes near.
		{"stack exhausted", "traps.wasm", func(r *wasmwiz.RunRequest) {
			r.Function, r.Params, r.Limits.Timeout = "stack_exhausted", []string{"1"}, 2*time.Minute
		},
			want{status: wasmwiz.StatusTrap, trap: []string{"stack overflow"}}},
		{"trap in start section", "trap_start.wasm", nil,
			want{status: wasmwiz.StatusTrap, trap: []string{"unreachable"}}},
		{"add i32", "add.wasm", func(r *wasmwiz.RunRequest) { r.Function, r.Params = "add", []string{"5", "-8"} },
			want{status: wasmwiz.StatusOK, results: []string{"-3"}, entry: "add"}},
		{"add i32 wraps", "add.wasm", func(r *wasmwiz.RunRequest) { r.Function, r.Params = "add", []string{"2147483647", "1"} },
			want{status: wasmwiz.StatusOK, results: []string{"-2147483648"}}},
		{"add i64", "add.wasm", func(r *wasmwiz.RunRequest) { r.Function, r.Params = "add64", []string{"9007199254740993", "1"} },
			want{status: wasmwiz.StatusOK, results: []string{"9007199254740994"}}},
		{"add f64", "add.wasm", func(r *wasmwiz.RunRequest) { r.Function, r.Params = "addf", []string{"0.5", "inf"} },
			want{status: wasmwiz.StatusOK, results: []string{"inf"}}},
		{"halve f32", "add.wasm", func(r *wasmwiz.RunRequest) { r.Function, r.Params = "halve", []string{"3"} },
			want{status: wasmwiz.StatusOK, results: []string{"1.5"}}},
		{"two results", "add.wasm", func(r *wasmwiz.RunRequest) { r.Function = "pair" },
			want{status: wasmwiz.StatusOK, results: []string{"-1", "9007199254740993"}}},
		{"memory of zero pages grows", "zero_memory.wasm", nil,
			want{status: wasmwiz.StatusOK, results: []string{"7"}, minPeak: 65536}},
		{"default entry main", "plain_main.wasm", nil,
			want{status: wasmwiz.StatusOK, results: []string{"42"}, entry: "main"}},
		{"reactor runs _initialize first", "reactor.wasm", func(r *wasmwiz.RunRequest) { r.Function = "answer" },
			want{status: wasmwiz.StatusOK, results: []string{"42"}, entry: "answer"}},
		{"reactor prints", "reactor.wasm", func(r *wasmwiz.RunRequest) { r.Function = "greet" },
			want{status: wasmwiz.StatusOK, stdout: "hi from reactor\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wasm := testmodule.Read(t, tt.file)
			req := &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()}
			if tt.req != nil {
				tt.req(req)
			}
			// Compile first: the wall time covers the compile, and the short
			// limits here are about the guest.
			_, _ = e.Inspect(context.Background(), wasm, wasmwiz.Limits{})
			res, err := e.Run(context.Background(), req)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			w := tt.want
			if res.Status != w.status || res.ExitCode != w.exitCode {
				t.Fatalf("status %s exit %d, want %s exit %d (trap %q, stderr %q)", res.Status, res.ExitCode, w.status, w.exitCode, res.Trap, res.Stderr)
			}
			if w.stdoutPrefix {
				if !strings.HasPrefix(string(res.Stdout), w.stdout) {
					t.Errorf("stdout %q, want prefix %q", res.Stdout, w.stdout)
				}
			} else if w.stdout != "" || len(res.Stdout) > 0 && w.status == wasmwiz.StatusOK && w.results == nil {
				if string(res.Stdout) != w.stdout {
					t.Errorf("stdout %q, want %q", res.Stdout, w.stdout)
				}
			}
			if !strings.Contains(string(res.Stderr), w.stderr) {
				t.Errorf("stderr %q, want it to contain %q", res.Stderr, w.stderr)
			}
			for _, s := range w.trap {
				if !strings.Contains(res.Trap, s) {
					t.Errorf("trap %q, want it to contain %q", res.Trap, s)
				}
			}
			var got []string
			for _, v := range res.Results {
				got = append(got, v.String())
			}
			if strings.Join(got, ",") != strings.Join(w.results, ",") {
				t.Errorf("results %v, want %v", got, w.results)
			}
			if res.StdoutTruncated != w.stdoutTrunc || res.StderrTruncated != w.stderrTrunc {
				t.Errorf("truncated stdout %v stderr %v, want %v %v", res.StdoutTruncated, res.StderrTruncated, w.stdoutTrunc, w.stderrTrunc)
			}
			if (w.stdoutTrunc || w.stderrTrunc) && int64(len(res.Stdout)+len(res.Stderr)) != req.Limits.MaxOutputBytes {
				t.Errorf("stdout and stderr are %d bytes, want exactly the cap %d", len(res.Stdout)+len(res.Stderr), req.Limits.MaxOutputBytes)
			}
			if w.entry != "" && res.Module.Entry != w.entry {
				t.Errorf("entry %q, want %q", res.Module.Entry, w.entry)
			}
			if res.MemoryPeakBytes < w.minPeak || res.MemoryPeakBytes > req.Limits.MaxMemoryBytes {
				t.Errorf("peak memory %d, want between %d and the cap %d", res.MemoryPeakBytes, w.minPeak, req.Limits.MaxMemoryBytes)
			}
			if res.Module.SHA256 == "" || res.Module.SizeBytes != int64(len(wasm)) {
				t.Errorf("module info %+v", res.Module)
			}
		})
	}
}

// TestSleepHonoursDeadlineWithoutInterrupt: with the in-guest checks off
// (worker processes), a guest blocked in a host sleep still ends at its
// deadline, since the sleep is the engine's own.
func TestSleepHonoursDeadlineWithoutInterrupt(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{NoGuestInterrupt: true})
	for _, file := range []string{"poll_sleep.wasm", "sleep.wasm"} {
		lim := testmodule.Limits()
		lim.Timeout = 100 * time.Millisecond
		if _, err := e.Inspect(context.Background(), testmodule.Read(t, file), wasmwiz.Limits{}); err != nil { // compile outside the wall time
			t.Fatal(err)
		}
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, file), Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != wasmwiz.StatusTimeout || len(res.Stdout) != 0 {
			t.Fatalf("%s: status %s stdout %q, want a timeout before it printed", file, res.Status, res.Stdout)
		}
	}
	// Without a deadline the sleep runs to its end.
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"20"}, Limits: wasmwiz.Limits{}})
	if err != nil || res.Status != wasmwiz.StatusOK || string(res.Stdout) != "slept\n" {
		t.Fatalf("Run without limits: %v %+v", err, res)
	}
}

// TestCancelledCallerIsNotATimeout: a caller that goes away gets
// EUNAVAILABLE, not a guest outcome it never waited for.
func TestCancelledCallerIsNotATimeout(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Run(ctx, &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "loop.wasm"), Limits: testmodule.Limits()})
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("Run with a cancelled context: %v", err)
	}
}

// TestCloseGivesUpWhenItsContextEnds: a guest that does not stop must not
// hang Close forever; once it has stopped, Close frees everything.
func TestCloseGivesUpWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	e, err := New(context.Background(), Options{NoGuestInterrupt: true})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	done := make(chan error, 1)
	go func() {
		// Blocks in a one-hour poll_oneoff: no deadline, only runCtx.
		_, err := e.Run(runCtx, &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "poll_sleep.wasm")})
		done <- err
	}()
	testenv.WaitFor(t, "the guest to run", func() bool { return e.active.Load() != 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Close(ctx); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("Close: %v, want EUNAVAILABLE while a guest runs", err)
	}
	if _, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm")}); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("Run after Close: %v", err)
	}
	stopRun()
	if err := testenv.Recv(t, done, "the cancelled run"); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("the cancelled run: %v", err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRunStreamingCopiesOutputLive(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	tests := []struct {
		name   string
		file   string
		cap    int64
		status wasmwiz.Status
	}{
		{"exit keeps both streams", "exit_code.wasm", 1 << 20, wasmwiz.StatusExit},
		{"capped flood", "flood.wasm", 100, wasmwiz.StatusOutputLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut strings.Builder
			lim := testmodule.Limits()
			lim.MaxOutputBytes = tt.cap
			res, err := e.RunStreaming(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, tt.file), Limits: lim}, &out, &errOut)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status || out.String() != string(res.Stdout) || errOut.String() != string(res.Stderr) {
				t.Fatalf("status %s; live stdout %q stderr %q; result stdout %q stderr %q", res.Status, out.String(), errOut.String(), res.Stdout, res.Stderr)
			}
			if len(res.Stdout) == 0 {
				t.Fatal("no output")
			}
		})
	}
}

// TestLoopFreeRecursionPastTheDeadlineIsATimeout: in-process, loop-free
// recursion is not stopped at the deadline (the worker pool kills it), but
// a run that ends after its limit is still reported as a timeout.
func TestLoopFreeRecursionPastTheDeadlineIsATimeout(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	lim := testmodule.Limits()
	// Long enough to start the call (a call that starts after the deadline
	// is refused by wazero at once), far too short for fib(38).
	lim.Timeout = 50 * time.Millisecond
	if _, err := e.Inspect(context.Background(), testmodule.Read(t, "fib_recursive.wasm"), wasmwiz.Limits{}); err != nil { // compile outside the wall time
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{
		Wasm: testmodule.Read(t, "fib_recursive.wasm"), Function: "fib", Params: []string{"38"}, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmwiz.StatusTimeout || len(res.Results) != 0 {
		t.Fatalf("status %s results %v after %v, want timeout", res.Status, res.Results, res.Duration)
	}
}

// TestWallTimeCoversTheCompile: the wall time is compile plus guest. A
// module whose compile takes longer than the whole limit is refused
// (ETOOLARGE, saying so); with room, the result reports the compile apart
// from the guest's duration, and a second run finds it compiled.
func TestWallTimeCoversTheCompile(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{})
	wasm := hostiletest.DeepLoops(6000) // about half a second to compile here
	lim := testmodule.Limits()
	lim.Timeout = time.Millisecond
	_, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: lim})
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE || !strings.Contains(wasmwiz.ErrorMessage(err), "past the wall-time limit of 1ms") {
		t.Fatalf("a compile longer than the wall time: %v, want ETOOLARGE", err)
	}
	wasm = hostiletest.DeepLoops(6001) // not compiled yet
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("Run: %v %+v", err, res)
	}
	if res.CompileCached || res.CompileDuration <= 0 {
		t.Errorf("first run: compile_cached %v, compile %v; want a compile reported", res.CompileCached, res.CompileDuration)
	}
	first := res.CompileDuration
	res, err = e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()})
	if err != nil || !res.CompileCached || res.CompileDuration >= first {
		t.Errorf("second run: %v, compile_cached %v, compile %v (first %v)", err, res.CompileCached, res.CompileDuration, first)
	}
}
