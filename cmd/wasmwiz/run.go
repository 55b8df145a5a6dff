package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/engine"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
)

// Exit statuses of `wasmwiz run` for outcomes that are not a guest exit
// code: the guest's own code is passed through unchanged.
const (
	exitUsage       = 2   // bad flags, or a module refused before running
	exitTrap        = 134 // the guest trapped or died of the memory cap (like abort)
	exitTimeout     = 124 // the wall-time limit passed (like timeout(1))
	exitOutputLimit = 141 // stdout or stderr passed its cap (like SIGPIPE)
)

// runGrace is how long `wasmwiz run` waits past the deadline for the engine
// to stop the guest before it reports a timeout itself and lets the process
// exit, which stops any guest (loop-free recursion ignores in-guest checks).
const runGrace = 500 * time.Millisecond

const runHelp = `usage: wasmwiz run [flags] module.wasm [args...]
       wasmwiz run [flags] - [args...]        (the module from stdin)

Runs a WASI preview1 command on this machine, no server needed: our stdin is
its stdin, its stdout and stderr are ours, its exit code is our exit status;
args after the module are the guest's (argv[0] is the module's file name).
Or calls a plain module's function: --call NAME --params 1,2. Flags come
before the module. Nothing of the host reaches the guest but what --dir
gives it: no other files, no network, no environment but --env.`

const runAfter = `exit status: the guest's own exit code (0-255); 124 timeout; 134 trap or
memory_limit; 141 output_limit; 2 for bad flags or a refused module; 1 for
other failures; 130 when interrupted (Ctrl-C). Note that go run reports any
non-zero status of the program it ran as 1: build the binary (go build
./cmd/wasmwiz) to see these.`

func cmdRun(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "run", runHelp)
	fs.after = runAfter
	var (
		timeout   = fs.String("timeout", "0", "wall-time limit, e.g. 3s or 500ms; 0: none")
		memory    = fs.String("memory", "4GiB", "linear memory limit, e.g. 256MiB or 16MB")
		maxOutput = fs.String("max-output", "64MiB", "cap for stdout and for stderr, each, e.g. 1MiB; 0: none")
		call      = fs.String("call", "", "export to call instead of the default entry point")
		params    = fs.String("params", "", "comma-separated numeric params for --call, e.g. 1,2")
		cacheDir  = fs.String("cache-dir", "", "directory for compiled code shared between runs")
		inspect   = fs.Bool("inspect", false, "print what the module imports and exports, and do not run it")
		asJSON    = fs.Bool("json", false, "print one JSON object with the result instead of the guest's output")
		envVars   = map[string]string{}
		mounts    []wasmwiz.Mount
	)
	envFlag(fs.FlagSet, envVars, "set a guest environment variable `K=V` (repeatable); nothing comes from the host")
	fs.Func("dir", "give the guest a host directory: `HOSTDIR[:GUESTDIR][:ro]` (repeatable); GUESTDIR defaults to\n"+
		"/BASENAME, :ro makes it read-only; nothing reaches outside HOSTDIR (no .., absolute path or symbolic link)", func(s string) error {
		m, err := parseDirFlag(s)
		if err == nil {
			mounts = append(mounts, m)
		}
		return err
	})
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fs.usageError("no module: name a .wasm file, or - to read it from stdin")
	}
	fail := func(err error) error { return runFailure(env, *asJSON, err) }

	var lim wasmwiz.Limits
	var err error
	if lim.Timeout, err = wasmwiz.ParseDuration(*timeout); err != nil {
		return fail(err)
	}
	if lim.MaxMemoryBytes, err = wasmwiz.ParseSize(*memory); err != nil {
		return fail(err)
	}
	if lim.MaxOutputBytes, err = wasmwiz.ParseSize(*maxOutput); err != nil {
		return fail(err)
	}
	wasm, name, err := readModule(env, fs.Arg(0))
	if err != nil {
		return fail(err)
	}

	// Without a deadline the in-guest checks only cost time (up to 15x on
	// CPU-bound guests, docs/PERFORMANCE.md); an interrupt (Ctrl-C) ends
	// the process, which stops any guest.
	eng, err := engine.New(ctx, engine.Options{CacheDir: *cacheDir, NoGuestInterrupt: lim.Timeout == 0})
	if err != nil {
		return err
	}
	// A guest the engine could not stop is left to the process's exit:
	// Close would wait for it.
	abandoned := false
	defer func() {
		if !abandoned {
			_ = eng.Close(context.WithoutCancel(ctx))
		}
	}()

	if *inspect {
		in, err := eng.Inspect(ctx, wasm, lim)
		if err != nil {
			return fail(err)
		}
		out, _ := json.MarshalIndent(wwhttp.APIInspection(in), "", "  ")
		fmt.Fprintf(env.Stdout, "%s\n", out)
		return nil
	}

	req := &wasmwiz.RunRequest{
		Wasm: wasm, Name: name, Args: fs.Args()[1:], Env: envVars,
		Function: *call, Limits: lim, Mounts: mounts,
	}
	if *params != "" {
		req.Params = strings.Split(*params, ",")
	}
	if fs.Arg(0) != "-" {
		if req.Stdin, err = readStdin(env.Stdin); err != nil {
			return fail(wasmwiz.WrapError(wasmwiz.EINVALID, err, "reading stdin: %v", err))
		}
	}

	// Without --json the guest's output goes to ours as it is written; with
	// it, to buffers the watchdog can still read if it has to give up.
	liveOut, liveErr := &lockedBuffer{}, &lockedBuffer{}
	if !*asJSON {
		liveOut.w, liveErr.w = env.Stdout, env.Stderr
	}
	res, abandoned, err := runWithWatchdog(ctx, eng, req, liveOut, liveErr)
	if ctx.Err() != nil {
		return context.Cause(ctx) // interrupted: Main says so, whatever the guest's end looked like
	}
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		return printJSONResult(env, wwhttp.APIResult("", res), res)
	}
	return finishRun(env, "run", res, lim)
}

// printJSONResult prints v, the JSON form of res, on one line and returns
// the process's exit for res.
func printJSONResult(env *Env, v any, res *wasmwiz.Result) error {
	out, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s\n", out)
	return runExit(res)
}

// finishRun prints a plain function's results, one per line, after the
// guest's output; says on stderr how the run ended when it did not simply
// finish (cmd names the command, lim the limits it hit); and returns the
// process's exit for res.
func finishRun(env *Env, cmd string, res *wasmwiz.Result, lim wasmwiz.Limits) error {
	for _, v := range res.Results {
		fmt.Fprintln(env.Stdout, v.String())
	}
	if msg := outcomeMessage(res, lim); msg != "" {
		fmt.Fprintf(env.Stderr, "wasmwiz %s: %s\n", cmd, msg)
	}
	return runExit(res)
}

// runWithWatchdog runs req and, when the engine has not stopped the guest
// runGrace after the deadline (or after ctx ends), reports a timeout itself:
// the process then exits, which ends the guest.
func runWithWatchdog(ctx context.Context, eng *engine.Engine, req *wasmwiz.RunRequest, stdout, stderr *lockedBuffer) (res *wasmwiz.Result, abandoned bool, err error) {
	type outcome struct {
		res *wasmwiz.Result
		err error
	}
	compiledNow := false
	if req.Limits.Timeout > 0 {
		// Guest code that never reaches a safe point (loop-free recursion)
		// stalls a garbage collection of this process, and with it the timer
		// below: the process would not end at the deadline. So compile first
		// (Inspect caches the compiled code), then run the guest with the
		// collector off and a second P for the watchdog. A one-shot run
		// allocates little once compiled.
		before := eng.CacheStats()
		if _, err := eng.Inspect(ctx, req.Wasm, req.Limits); err != nil {
			return nil, false, err
		}
		after := eng.CacheStats()
		compiledNow = after.Misses > before.Misses && after.DiskHits == before.DiskHits
		// Both are undone only when the guest has returned: turning the
		// collector back on (and GOMAXPROCS, which stops the world) while an
		// abandoned guest still runs would let the next allocation start a
		// collection that waits for that guest forever, and the process
		// would never print its result or exit.
		if procs := runtime.GOMAXPROCS(0); procs < 2 {
			runtime.GOMAXPROCS(2)
			defer func() {
				if !abandoned {
					runtime.GOMAXPROCS(procs)
				}
			}()
		} else {
			// Set, so that the runtime stops updating it from the CPUs and
			// the cgroup's quota: an update stops the world.
			runtime.GOMAXPROCS(procs)
		}
		gcPercent := debug.SetGCPercent(-1)
		defer func() {
			if !abandoned {
				debug.SetGCPercent(gcPercent)
			}
		}()
		// SetGCPercent waits for a running collection's mark phase only:
		// the collection then has every P flush its caches, and a guest
		// that started meanwhile never lets its P do so. That held the
		// collection, the timer below and the process for good (CI saw a
		// `wasmwiz run` spin for 20 minutes). A stop of the world waits
		// for the collection's very end; none starts after it.
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		res, err := eng.RunStreaming(ctx, req, stdout, stderr)
		if res != nil && compiledNow {
			res.CompileCached = false // the compile was Inspect's, for this run
		}
		done <- outcome{res, err}
	}()
	var deadline <-chan time.Time
	if req.Limits.Timeout > 0 {
		t := time.NewTimer(req.Limits.Timeout + runGrace)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case o := <-done:
		return o.res, false, o.err
	case <-deadline:
	case <-ctx.Done():
		select {
		case o := <-done:
			return o.res, false, o.err
		case <-time.After(runGrace):
		}
		return nil, true, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "interrupted")
	}
	sum := sha256Hex(req.Wasm)
	return &wasmwiz.Result{
		Status:   wasmwiz.StatusTimeout,
		Duration: time.Since(start),
		Trap:     "the guest did not stop at the deadline (loop-free recursion ignores in-process checks); the process ends it",
		Stdout:   stdout.bytes(),
		Stderr:   stderr.bytes(),
		Module:   wasmwiz.ModuleInfo{SHA256: sum, SizeBytes: int64(len(req.Wasm))},
	}, true, nil
}

// readModule reads the module a command line names: a file, or stdin for
// "-". It returns the module and its name for argv[0]: the file's base name,
// or "module.wasm" for stdin, as the server names an upload without one.
func readModule(env *Env, path string) ([]byte, string, error) {
	if path == "-" {
		wasm, err := io.ReadAll(env.Stdin)
		if err != nil {
			return nil, "", wasmwiz.WrapError(wasmwiz.EINVALID, err, "cannot read the module from stdin: %v", err)
		}
		if len(wasm) == 0 {
			return nil, "", wasmwiz.Errorf(wasmwiz.EINVALID, "the module on stdin is empty")
		}
		return wasm, "module.wasm", nil
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, "", wasmwiz.WrapError(wasmwiz.EINVALID, err, "cannot read the module: %v", err)
	}
	return wasm, filepath.Base(path), nil
}

// parseDirFlag reads --dir HOSTDIR[:GUESTDIR][:ro], the convention of
// wasmtime and wazero. A GUESTDIR is absolute, so a colon in HOSTDIR stays
// part of it unless what follows the last one starts with a slash.
func parseDirFlag(s string) (wasmwiz.Mount, error) {
	var m wasmwiz.Mount
	if rest, ok := strings.CutSuffix(s, ":ro"); ok {
		s, m.ReadOnly = rest, true
	}
	m.HostDir = s
	if i := strings.LastIndexByte(s, ':'); i > 0 && strings.HasPrefix(s[i+1:], "/") {
		m.HostDir, m.GuestDir = s[:i], s[i+1:]
	}
	if m.HostDir == "" {
		return m, fmt.Errorf("want HOSTDIR[:GUESTDIR][:ro], got %q", s)
	}
	st, err := os.Stat(m.HostDir)
	if err != nil {
		return m, err
	}
	if !st.IsDir() {
		return m, fmt.Errorf("%s is not a directory", m.HostDir)
	}
	if m.GuestDir == "" {
		abs, err := filepath.Abs(m.HostDir)
		if err != nil {
			return m, err
		}
		m.GuestDir = "/" + filepath.Base(abs)
	}
	guest, err := wasmwiz.CleanGuestDir(m.GuestDir)
	if err != nil {
		return m, fmt.Errorf("%s", wasmwiz.ErrorMessage(err))
	}
	m.GuestDir = guest
	return m, nil
}

// readStdin reads all of stdin, except from a terminal, where a guest gets
// an empty stdin rather than waiting for the user to type end-of-file.
func readStdin(r io.Reader) ([]byte, error) {
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return nil, nil
		}
	}
	if r == nil {
		return nil, nil
	}
	return io.ReadAll(r)
}

// runFailure prints an error the way the output mode asks and picks the
// exit status: 2 for the caller's mistakes, 1 for anything else.
func runFailure(env *Env, asJSON bool, err error) error {
	return commandFailure(env, "run", asJSON, true, err)
}

// commandFailure prints an error of `wasmwiz <command>`: a JSON error body
// on stdout with --json (asJSON), else a line on stderr; and picks the exit
// status: 2 for the caller's mistakes, 1 for anything else. With operator,
// an internal error's JSON message is the error itself, for a command whose
// user is the operator.
func commandFailure(env *Env, command string, asJSON, operator bool, err error) error {
	code := wasmwiz.ErrorCode(err)
	if asJSON {
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		body.Error.Code, body.Error.Message = code, wasmwiz.ErrorMessage(err)
		if operator && code == wasmwiz.EINTERNAL {
			body.Error.Message = err.Error()
		}
		out, _ := json.Marshal(body)
		fmt.Fprintf(env.Stdout, "%s\n", out)
	} else {
		fmt.Fprintf(env.Stderr, "wasmwiz %s: %s\n", command, errorText(err))
	}
	switch code {
	case wasmwiz.EINVALID, wasmwiz.ETOOLARGE:
		return exitError{exitUsage}
	}
	return exitError{1}
}

func outcomeMessage(res *wasmwiz.Result, lim wasmwiz.Limits) string {
	switch res.Status {
	case wasmwiz.StatusTrap:
		return "trap: " + res.Trap
	case wasmwiz.StatusTimeout:
		return fmt.Sprintf("timeout: stopped after the wall-time limit of %s", lim.Timeout)
	case wasmwiz.StatusMemoryLimit:
		return fmt.Sprintf("memory_limit: the guest ran out of its %s of memory: %s", wasmwiz.FormatSize(lim.MaxMemoryBytes), res.Trap)
	case wasmwiz.StatusOutputLimit:
		return fmt.Sprintf("output_limit: stopped when its output passed %s", wasmwiz.FormatSize(lim.MaxOutputBytes))
	}
	return ""
}

// runExit is the process's exit for a result: nil for status 0, else an
// exitError with runExitStatus.
func runExit(res *wasmwiz.Result) error {
	if code := runExitStatus(res); code != 0 {
		return exitError{code}
	}
	return nil
}

// runExitStatus is the process exit status for a result: the guest's own
// exit code, or a fixed status per outcome.
func runExitStatus(res *wasmwiz.Result) int {
	switch res.Status {
	case wasmwiz.StatusOK:
		return 0
	case wasmwiz.StatusExit:
		return res.ExitCode
	case wasmwiz.StatusTimeout:
		return exitTimeout
	case wasmwiz.StatusOutputLimit:
		return exitOutputLimit
	}
	return exitTrap
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// lockedBuffer receives a guest's live output: it writes through to w when
// set, else keeps it, under a lock, since a guest the watchdog gave up on
// may still be writing while the result is built.
type lockedBuffer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.w != nil {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// envFlag defines the repeatable --env K=V flag of run and exec, filling m.
func envFlag(fs *flag.FlagSet, m map[string]string, usage string) {
	fs.Func("env", usage, func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want K=V, got %q", s)
		}
		m[k] = v
		return nil
	})
}
