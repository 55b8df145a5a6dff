package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// helpTopics are every command and subcommand a user can ask help for.
func helpTopics() [][]string {
	var topics [][]string
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for name := range cmds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		topics = append(topics, []string{name})
		for _, sub := range cmds[name].subcommands {
			topics = append(topics, []string{name, sub})
		}
	}
	return topics
}

// TestHelpOnStdout: help asked for goes to stdout with exit status 0 and
// lists every command; `help CMD` and `CMD --help` (and -h) print the same.
func TestHelpOnStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		code, out, errOut := runMain(args, "", nil)
		if code != 0 || errOut != "" {
			t.Fatalf("wasmwiz %s: exit %d, stderr %q", args[0], code, errOut)
		}
		for name, c := range commands() {
			listed := strings.Contains(out, "\n  "+name+" ")
			if listed == c.hidden {
				t.Errorf("wasmwiz %s: command %s listed %v, hidden %v:\n%s", args[0], name, listed, c.hidden, out)
			}
		}
	}
	// Without a command it is a usage error: the same list, on stderr.
	if code, out, errOut := runMain(nil, "", nil); code != 2 || out != "" || !strings.Contains(errOut, "  healthcheck ") {
		t.Fatalf("bare wasmwiz: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, topic := range helpTopics() {
		t.Run(strings.Join(topic, " "), func(t *testing.T) {
			t.Parallel()
			code, viaHelp, errOut := runMain(append([]string{"help"}, topic...), "", nil)
			if code != 0 || errOut != "" {
				t.Fatalf("help %s: exit %d, stderr %q", strings.Join(topic, " "), code, errOut)
			}
			if !strings.HasPrefix(viaHelp, "usage:") || !strings.Contains(viaHelp, "wasmwiz "+strings.Join(topic, " ")) {
				t.Fatalf("help %s does not start with the command's usage:\n%s", strings.Join(topic, " "), viaHelp)
			}
			for _, flagWord := range []string{"--help", "-h"} {
				code, viaFlag, errOut := runMain(append(append([]string{}, topic...), flagWord), "", nil)
				if code != 0 || errOut != "" || viaFlag != viaHelp {
					t.Fatalf("%s %s: exit %d, stderr %q\n%s\nwant what help printed:\n%s",
						strings.Join(topic, " "), flagWord, code, errOut, viaFlag, viaHelp)
				}
			}
		})
	}
}

// TestUsageErrorsAreOneLine: a bad flag, a missing or extra argument, an
// unknown command or subcommand is one line naming the problem, then a
// hint where the help is; exit status 2, nothing on stdout.
func TestUsageErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string // in the first line
		hint string // the help topic of the second
	}{
		{[]string{"run", "--nope", "x.wasm"}, "wasmwiz run: flag provided but not defined: -nope", "run"},
		{[]string{"healthcheck", "--timeout", "soon"}, `wasmwiz healthcheck: invalid value "soon" for flag -timeout`, "healthcheck"},
		{[]string{"users", "list", "--limit", "x"}, `wasmwiz users list: invalid value "x" for flag -limit`, "users list"},
		{[]string{"run"}, "wasmwiz run: no module", "run"},
		{[]string{"exec", "--nope"}, "wasmwiz exec: flag provided but not defined: -nope", "exec"},
		{[]string{"exec"}, "wasmwiz exec: no module", "exec"},
		{[]string{"serve", "--nope"}, "wasmwiz serve: flag provided but not defined: -nope", "serve"},
		{[]string{"serve", "now"}, `wasmwiz serve: unexpected argument "now"`, "serve"},
		{[]string{"migrate", "--nope"}, "wasmwiz migrate: flag provided but not defined: -nope", "migrate"},
		{[]string{"config", "--nope"}, "wasmwiz config: flag provided but not defined: -nope", "config"},
		{[]string{"version", "x"}, `wasmwiz version: unexpected argument "x"`, "version"},
		{[]string{"healthcheck", "--nope"}, "wasmwiz healthcheck: flag provided but not defined: -nope", "healthcheck"},
		{[]string{"bench", "--requests", "0"}, "wasmwiz bench: --requests", "bench"},
		{[]string{"users", "create", "--nope"}, "wasmwiz users create: flag provided but not defined: -nope", "users create"},
		{[]string{"users", "create"}, "wasmwiz users create: --email is required", "users create"},
		{[]string{"users", "disable"}, "wasmwiz users disable: want 1 argument(s), got 0", "users disable"},
		{[]string{"users", "frob"}, `wasmwiz users: unknown subcommand "frob"`, "users"},
		{[]string{"keys", "list", "--nope"}, "wasmwiz keys list: flag provided but not defined: -nope", "keys list"},
		{[]string{"keys", "create"}, "wasmwiz keys create: --user is required", "keys create"},
		{[]string{"keys", "frob"}, `wasmwiz keys: unknown subcommand "frob"`, "keys"},
		{[]string{"tiers", "list", "--nope"}, "wasmwiz tiers list: flag provided but not defined: -nope", "tiers list"},
		{[]string{"tiers", "set", "team", "--nope"}, "wasmwiz tiers set: flag provided but not defined: -nope", "tiers set"},
		{[]string{"tiers", "set", "--memory", "1MiB"}, "wasmwiz tiers set: name one tier", "tiers set"},
		{[]string{"tiers", "frob"}, `wasmwiz tiers: unknown subcommand "frob"`, "tiers"},
		{[]string{"frob"}, `wasmwiz: unknown command "frob"`, ""},
		{[]string{"help", "frob"}, `wasmwiz help: unknown command "frob"`, ""},
		{[]string{"help", "users", "frob"}, `wasmwiz help: users has no subcommand "frob"`, "users"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runMain(tt.args, "", nil)
			lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			hint := "Run 'wasmwiz help' for the list of commands."
			if tt.hint != "" {
				hint = "Run 'wasmwiz help " + tt.hint + "' for usage."
			}
			if code != 2 || out != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], tt.want) || lines[1] != hint {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2, nothing on stdout, and two lines: %q…, %q", code, out, errOut, tt.want, hint)
			}
		})
	}
}

// TestRunInterrupted: a signal while a guest runs ends `wasmwiz run` with
// 128+signal (130 for Ctrl-C), not the timeout's 124, and says so.
func TestRunInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	var stdout, stderr testenv.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, env, []string{"run", "--timeout", "10m", testmodule.Path(t, "loop.wasm")}) }()
	// The guest loops until stopped; give it a moment to be running, then
	// interrupt. The status must not depend on when the signal lands.
	time.Sleep(100 * time.Millisecond)
	cancel(signalError{os.Interrupt})
	select {
	case code := <-done:
		if code != 130 || !strings.Contains(stderr.String(), "wasmwiz run: interrupted") || strings.Contains(stderr.String(), "timeout") {
			t.Fatalf("exit %d, stderr %q; want 130 and \"interrupted\"", code, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not end after the interrupt")
	}
}

// TestBinarySignals: the real binary exits 130 on Ctrl-C (SIGINT) during a
// run and 143 on SIGTERM, as shells report a process a signal stopped.
func TestBinarySignals(t *testing.T) {
	t.Parallel()
	bin := testenv.WasmwizBinary(t)
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		// The guest prints, then recurses until stopped: once it printed,
		// the process handles signals.
		cmd := testenv.Command(t, bin, "run", "--timeout", "10m", testmodule.Path(t, "print_then_recurse.wasm"))
		stdout, stderr := &testenv.Buffer{}, &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		testenv.WaitFor(t, "the guest to start", func() bool { return stdout.String() == "started\n" })
		_ = cmd.Process.Signal(tt.sig)
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tt.code || !strings.Contains(stderr.String(), "wasmwiz run: interrupted") {
				t.Fatalf("%v: %v, want exit status %d\nstderr %s", tt.sig, err, tt.code, stderr.String())
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Fatalf("%v: run did not end", tt.sig)
		}
	}
}

// TestRunModuleFromStdin: "-" reads the module from stdin; the guest then
// gets an empty stdin and "module.wasm" as argv[0].
func TestRunModuleFromStdin(t *testing.T) {
	t.Parallel()
	wasm := string(testmodule.Read(t, "args_env.wasm"))
	code, out, errOut := runMain([]string{"run", "--env", "K=v", "-", "one"}, wasm, nil)
	if code != 0 || !strings.Contains(out, "argv[0]=module.wasm\nargv[1]=one\nenv K=v\n") {
		t.Fatalf("run -: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runMain([]string{"run", "-"}, "", nil)
	if code != 2 || !strings.Contains(errOut, "the module on stdin is empty") {
		t.Fatalf("run - with nothing on stdin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestMessagesCarryUnits: sizes and durations in messages say their unit.
func TestMessagesCarryUnits(t *testing.T) {
	t.Parallel()
	code, _, errOut := runMain([]string{"run", "--max-output", "5", testmodule.Path(t, "flood.wasm")}, "", nil)
	if code != exitOutputLimit || !strings.Contains(errOut, "passed 5B") {
		t.Fatalf("exit %d, stderr %q; want the cap with its unit", code, errOut)
	}
	code, _, errOut = runMain([]string{"run", "--timeout", "0.2", testmodule.Path(t, "loop.wasm")}, "", nil)
	if code != exitTimeout || !strings.Contains(errOut, "limit of 200ms") {
		t.Fatalf("exit %d, stderr %q; want the wall time with its unit", code, errOut)
	}
}
