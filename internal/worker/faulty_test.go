package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// faultyEnv makes a test worker run faultyEngine: the real engine, except
// for a few function names that make the worker misbehave in ways a guest
// cannot, to test how the pool copes.
const faultyEnv = "WASMWIZ_WORKER_TEST_FAULTY"

type faultyEngine struct{ GuestEngine }

func newFaultyEngine(ctx context.Context, s EngineSettings) (GuestEngine, error) {
	eng, err := NewEngine(ctx, s)
	if err != nil {
		return nil, err
	}
	return faultyEngine{eng}, nil
}

// ballast keeps memory resident in a worker for the retirement test.
var ballast []byte

func (e faultyEngine) Run(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
	switch req.Function {
	case "__noise": // a library writes to stdout: it must not reach the pipe
		fmt.Println("noise on stdout")
		fmt.Fprint(os.Stdout, "\x00\x00\x00\x05Rxxxx")
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("after noise")}, nil
	case "__oom": // what the Go runtime does when it runs out of memory
		fmt.Fprintln(os.Stderr, "fatal error: runtime: out of memory")
		os.Exit(2)
	case "__exit": // a crash without a word
		os.Exit(3)
	case "__escape": // what code that escaped the guest might try
		errText := func(err error) string {
			if err == nil {
				return "allowed"
			}
			return err.Error()
		}
		var out strings.Builder
		fmt.Fprintf(&out, "exec: %s\n", errText(syscall.Exec("/bin/true", []string{"true"}, nil)))
		_, err := syscall.ForkExec("/bin/true", []string{"true"}, nil)
		fmt.Fprintf(&out, "fork: %s\n", errText(err))
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err == nil {
			syscall.Close(fd)
		}
		fmt.Fprintf(&out, "socket: %s\n", errText(err))
		fmt.Fprintf(&out, "kill parent: %s\n", errText(syscall.Kill(os.Getppid(), 0)))
		fmt.Fprintf(&out, "kill group: %s\n", errText(syscall.Kill(0, 0)))
		fmt.Fprintf(&out, "ptrace parent: %s\n", errText(syscall.PtraceAttach(os.Getppid())))
		fmt.Fprintf(&out, "kill self: %s\n", errText(syscall.Kill(os.Getpid(), 0)))
		runtime.GC() // the runtime still stops its threads
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte(out.String())}, nil
	case "__files": // what code that escaped the guest might open: OP:PATH in Args
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte(fileProbe(req.Args))}, nil
	case "__rss": // a run that leaves the worker holding a lot of memory
		ballast = make([]byte, 256<<20)
		for i := 0; i < len(ballast); i += 4096 {
			ballast[i] = 1
		}
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, MemoryPeakBytes: 32 << 20}, nil
	}
	return e.GuestEngine.Run(ctx, req)
}

// RunStreaming makes faultyEngine a streaming engine, as the real one is.
// The faults that stream are here; the others answer through Run, whose
// output RunStreaming then copies, as the real engine does as it goes.
func (e faultyEngine) RunStreaming(ctx context.Context, req *wasmwiz.RunRequest, stdout, stderr io.Writer) (*wasmwiz.Result, error) {
	switch req.Function {
	case "__print_oom": // output, then a death from out of memory
		fmt.Fprint(stdout, "before the crash\n")
		fmt.Fprint(stderr, "last words\n")
		fmt.Fprintln(os.Stderr, "fatal error: runtime: out of memory")
		os.Exit(2)
	case "__overflow": // a worker that sends more output than the cap
		for range 3 {
			stdout.Write(bytes.Repeat([]byte("x"), int(req.Limits.MaxOutputBytes/2)))
		}
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}
	if st, ok := e.GuestEngine.(streamingEngine); ok && !strings.HasPrefix(req.Function, "__") {
		return st.RunStreaming(ctx, req, stdout, stderr)
	}
	res, err := e.Run(ctx, req)
	if err == nil {
		stdout.Write(res.Stdout)
		stderr.Write(res.Stderr)
	}
	return res, err
}

func faultyOptions(t testing.TB, size, spares int) Options {
	opts := testOptions(t, size, spares)
	opts.Env = append(opts.Env, faultyEnv+"=1")
	return opts
}

// TestWorkerFaults: how the pool answers when its worker misbehaves.
func TestWorkerFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		function string
		status   wasmwiz.Status // want this result...
		code     string         // ...or this error
		stdout   string
		replaced bool // the worker is gone afterwards
	}{
		{"stray stdout writes stay off the protocol", "__noise", wasmwiz.StatusOK, "", "after noise", false},
		{"death from out of memory is memory_limit", "__oom", wasmwiz.StatusMemoryLimit, "", "", true},
		{"a silent crash is EINTERNAL", "__exit", "", wasmwiz.EINTERNAL, "", true},
		{"a worker holding too much memory is retired", "__rss", wasmwiz.StatusOK, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := faultyOptions(t, 1, 0)
			opts.MaxIdleRSSBytes = 128 << 20
			pl := newTestPool(t, opts)
			pid := pl.PIDs()[0]
			lim := testmodule.Limits()
			if tt.function == "__rss" {
				// Its ballast is host memory the run may hold: under the
				// default cap the worker's own bound would end it.
				lim.MaxMemoryBytes = 512 << 20
			}
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Function: tt.function, Limits: lim})
			if tt.code != "" {
				if got := wasmwiz.ErrorCode(err); got != tt.code {
					t.Fatalf("error code = %q (%v), want %s", got, err, tt.code)
				}
			} else {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if res.Status != tt.status || string(res.Stdout) != tt.stdout {
					t.Fatalf("result = %s %q, want %s %q", res.Status, res.Stdout, tt.status, tt.stdout)
				}
			}
			if gone := !processExists(pid); gone != tt.replaced {
				t.Errorf("worker gone = %v, want %v", gone, tt.replaced)
			}
			// Either way, the pool still runs guests.
			wantHello(t, pl, "afterwards")
		})
	}
}

// TestWorkerSandbox: inside a worker, code that escaped the guest can start
// no program, open no socket, and neither signal nor trace the server, while
// the Go runtime keeps working.
func TestWorkerSandbox(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, faultyOptions(t, 1, 0))
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Function: "__escape", Limits: testmodule.Limits()})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]string{
		"exec":          "operation not permitted",
		"fork":          "operation not permitted",
		"socket":        "operation not permitted",
		"kill parent":   "operation not permitted",
		"kill group":    "operation not permitted",
		"ptrace parent": "operation not permitted",
		"kill self":     "allowed",
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	wantHello(t, pl, "after the escape attempts")
}

// fileProbe does each OP:PATH (read, list, write) from four threads of
// their own and prints "OP:PATH: RESULT", or every thread's result when
// they differ: a Landlock domain holds for every thread or it holds not.
func fileProbe(ops []string) string {
	var out strings.Builder
	for _, op := range ops {
		kind, path, _ := strings.Cut(op, ":")
		results := make(chan string, 4)
		for i := range 4 {
			go func() {
				runtime.LockOSThread() // a thread of its own, ended with the goroutine
				var err error
				switch kind {
				case "read":
					_, err = os.ReadFile(path)
				case "list":
					_, err = os.ReadDir(path)
				case "write":
					err = os.WriteFile(fmt.Sprintf("%s.%d", path, i), []byte("x"), 0o600)
				case "statm": // the worker's own statm, handed over by the pool
					if dataBytes() <= 0 {
						err = errors.New("no VmData")
					}
				}
				if err == nil {
					results <- "allowed"
				} else if errors.Is(err, os.ErrPermission) {
					results <- "denied"
				} else {
					results <- err.Error()
				}
			}()
		}
		seen := map[string]bool{}
		for range 4 {
			seen[<-results] = true
		}
		var got []string
		for r := range seen {
			got = append(got, r)
		}
		fmt.Fprintf(&out, "%s: %s\n", op, strings.Join(got, " and "))
	}
	return out.String()
}

// TestWorkerLandlock: inside a worker, on every thread, code that escaped
// the guest opens nothing but its compile cache and its own files
// directory: not a file the server's user owns (a stand-in for the
// database), not /etc or /proc, not another worker's files. Its memory
// bound still reads its VmData, through the statm the pool handed it.
func TestWorkerLandlock(t *testing.T) {
	t.Parallel()
	if landlockABI() < 2 {
		testenv.Skip(t, "no Landlock ABI 2 in this kernel", "run on Linux 5.19 or newer with Landlock enabled")
	}
	opts := faultyOptions(t, 1, 1)
	pl := newTestPool(t, opts)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "wasmwiz.db")
	if err := os.WriteFile(secret, []byte("users and keys"), 0o600); err != nil {
		t.Fatal(err)
	}
	pl.mu.Lock()
	var dirs []string
	for p := range pl.procs {
		dirs = append(dirs, p.filesDir)
	}
	pl.mu.Unlock()
	if len(dirs) != 2 {
		t.Fatalf("%d workers", len(dirs))
	}
	// The run lands on one worker; both its own directory and the other's
	// are probed, and exactly one may be written.
	ops := []string{
		"read:" + secret, "list:" + secretDir, "write:" + filepath.Join(secretDir, "planted"),
		"read:/etc/passwd", "list:/", "read:/proc/self/environ", "list:" + filepath.Dir(os.Args[0]),
		"write:" + filepath.Join(opts.CacheDir, "probe"), "read:" + opts.CacheDir + "/probe.0",
		"write:" + filepath.Join(dirs[0], "probe"), "write:" + filepath.Join(dirs[1], "probe"),
		"write:" + filepath.Join(os.TempDir(), "wasmwiz-landlock-probe"),
		"read:/proc/self/statm", "statm:",
	}
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Function: "__files", Args: ops, Limits: testmodule.Limits()})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		got[k] = v
	}
	for _, op := range ops[:7] {
		if got[op] != "denied" {
			t.Errorf("%s: %q, want denied", op, got[op])
		}
	}
	for _, op := range ops[7:9] {
		if got[op] != "allowed" {
			t.Errorf("%s: %q, want allowed (the compile cache)", op, got[op])
		}
	}
	own, other := got[ops[9]], got[ops[10]]
	if !(own == "allowed" && other == "denied" || own == "denied" && other == "allowed") {
		t.Errorf("writing in the two workers' files directories: %q and %q, want one allowed and one denied", own, other)
	}
	if got[ops[11]] != "denied" || got[ops[12]] != "denied" {
		t.Errorf("%s: %q, %s: %q, want denied", ops[11], got[ops[11]], ops[12], got[ops[12]])
	}
	if got[ops[13]] != "allowed" {
		t.Errorf("the worker's VmData through the statm the pool handed it: %q", got[ops[13]])
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "users and keys" {
		t.Fatalf("the secret: %q %v", b, err)
	}
	wantHello(t, pl, "after the probe")
}

// TestPoolOutputOfFailingWorkers: output frames are the one source of a
// run's output, and the parent bounds them itself: a worker that dies keeps
// both streams as far as they came, and a worker that sends more than the
// cap is cut to the cap and marked truncated.
func TestPoolOutputOfFailingWorkers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		function       string
		status         wasmwiz.Status
		stdout, stderr string
		truncated      bool
	}{
		{"out of memory after output", "__print_oom", wasmwiz.StatusMemoryLimit, "before the crash\n", "last words\n", false},
		{"output over the cap", "__overflow", wasmwiz.StatusOK, strings.Repeat("x", 100), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pl := newTestPool(t, faultyOptions(t, 1, 0))
			l := testmodule.Limits()
			l.MaxOutputBytes = 100
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Function: tt.function, Limits: l})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != tt.status || string(res.Stdout) != tt.stdout || string(res.Stderr) != tt.stderr ||
				res.StdoutTruncated != tt.truncated || res.StderrTruncated {
				t.Fatalf("result %s stdout %q (truncated %v) stderr %q (truncated %v); want %s %q (%v) %q",
					res.Status, res.Stdout, res.StdoutTruncated, res.Stderr, res.StderrTruncated, tt.status, tt.stdout, tt.truncated, tt.stderr)
			}
		})
	}
}
