package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
	"github.com/wasmwiz/wasmwiz/internal/wasisuite"
)

func TestRunCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		stdin      string
		code       int
		stdout     string // exact unless empty and stdoutHas set
		stdoutHas  []string
		stderrHas  []string
		jsonStatus api.Status
	}{
		{name: "hello", args: []string{"run", testmodule.Path(t, "hello.wasm")}, stdout: "Hello, World!\n"},
		{name: "echo", args: []string{"run", testmodule.Path(t, "echo.wasm")}, stdin: "  padded  \n", stdout: "padded"},
		{name: "calc_add", args: []string{"run", testmodule.Path(t, "calc_add.wasm")}, stdin: "5 3", stdout: "8\n"},
		{name: "guest exit status is ours", args: []string{"run", testmodule.Path(t, "calc_add.wasm")}, stdin: "5",
			code: 1, stderrHas: []string{"expected two integers"}},
		{name: "args env and argv0", args: []string{"run", "--env", "A=1", "--env", "B=x=y", testmodule.Path(t, "args_env.wasm"), "--not-a-flag", "z"},
			stdoutHas: []string{"argv[0]=args_env.wasm\nargv[1]=--not-a-flag\nargv[2]=z\nenv A=1\nenv B=x=y\n"}},
		{name: "call with params", args: []string{"run", "--call", "add64", "--params", "40, 2", testmodule.Path(t, "add.wasm")}, stdout: "42\n"},
		{name: "timeout", args: []string{"run", "--timeout", "100ms", testmodule.Path(t, "loop.wasm")},
			code: exitTimeout, stderrHas: []string{"timeout", "100ms"}},
		{name: "memory cap", args: []string{"run", "--memory", "2MiB", testmodule.Path(t, "memory_bomb.wasm")},
			code: exitTrap, stderrHas: []string{"memory_limit", "2MiB"}},
		{name: "output cap", args: []string{"run", "--max-output", "16", testmodule.Path(t, "flood.wasm")},
			code: exitOutputLimit, stdout: "flood!!\nflood!!\n", stderrHas: []string{"output_limit"}},
		{name: "trap", args: []string{"run", "--call", "div_by_zero", testmodule.Path(t, "traps.wasm")},
			code: exitTrap, stderrHas: []string{"trap: ", "integer divide by zero"}},
		{name: "json result", args: []string{"run", "--json", testmodule.Path(t, "calc_add.wasm")}, stdin: "1 2",
			jsonStatus: api.StatusOK, stdoutHas: []string{`"stdout":"3\n"`, `"stdout_encoding":"utf-8"`, `"wasi":true`, `"entry":"_start"`, `"compile_cached":false`}},
		{name: "json exit", args: []string{"run", "--json", testmodule.Path(t, "exit_code.wasm"), "9"},
			code: 9, jsonStatus: api.StatusExit, stdoutHas: []string{`"exit_code":9`, `"stdout":"before exit\n"`}},
		{name: "json refused module", args: []string{"run", "--json", testmodule.Path(t, "bad_imports.wasm")},
			code: 2, stdoutHas: []string{`{"error":{"code":"EINVALID","message":"the module needs imports`, "env.console_log"}},
		{name: "refused module", args: []string{"run", testmodule.Path(t, "add.wat")},
			code: 2, stderrHas: []string{"EINVALID", "wat2wasm"}},
		{name: "bad size", args: []string{"run", "--memory", "lots", testmodule.Path(t, "hello.wasm")},
			code: 2, stderrHas: []string{"invalid size"}},
		{name: "bad duration", args: []string{"run", "--json", "--timeout", "soon", testmodule.Path(t, "hello.wasm")},
			code: 2, stdoutHas: []string{`"code":"EINVALID"`, "invalid duration"}},
		{name: "missing file", args: []string{"run", filepath.Join(t.TempDir(), "nope.wasm")},
			code: 2, stderrHas: []string{"cannot read the module"}},
		{name: "no module", args: []string{"run"}, code: 2, stderrHas: []string{"wasmwiz run: no module", "wasmwiz help run"}},
		{name: "args over the cap", args: append([]string{"run", testmodule.Path(t, "hello.wasm")}, make([]string, wasmwiz.MaxArgs+1)...),
			code: 2, stderrHas: []string{"ETOOLARGE", "more than 4096 arguments"}},
		{name: "env over the cap", args: []string{"run", "--json", "--env", "K=" + strings.Repeat("v", wasmwiz.MaxArgBytes), testmodule.Path(t, "hello.wasm")},
			code: 2, stdoutHas: []string{`"code":"ETOOLARGE"`, `environment variable \"K\" is`, "128KiB limit of one variable"}},
		{name: "inspect", args: []string{"run", "--inspect", testmodule.Path(t, "reactor.wasm")},
			stdoutHas: []string{`"wasi": true`, `"name": "_initialize"`}},
		{name: "inspect refused", args: []string{"run", "--inspect", "--memory", "1MiB", testmodule.Path(t, "big_memory.wasm")},
			code: 2, stderrHas: []string{"over the memory limit of 1MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runMain(tt.args, tt.stdin, nil)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %q\nstderr %q", code, tt.code, stdout, stderr)
			}
			if tt.stdout != "" && stdout != tt.stdout {
				t.Errorf("stdout %q, want %q", stdout, tt.stdout)
			}
			for _, s := range tt.stdoutHas {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout %q\nwant it to contain %q", stdout, s)
				}
			}
			for _, s := range tt.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q\nwant it to contain %q", stderr, s)
				}
			}
			if tt.jsonStatus != "" {
				if n := strings.Count(strings.TrimSpace(stdout), "\n"); n != 0 {
					t.Errorf("--json printed %d lines, want one object", n+1)
				}
				var r api.Result
				if err := json.Unmarshal([]byte(stdout), &r); err != nil {
					t.Fatalf("--json output does not parse: %v", err)
				}
				if r.Status != tt.jsonStatus || len(r.Module.SHA256) != 64 {
					t.Errorf("status %s module %+v, want %s", r.Status, r.Module, tt.jsonStatus)
				}
			}
		})
	}
}

// TestRunHelperProcess is not a test: TestRunStopsLoopFreeRecursion runs
// the test binary as `wasmwiz` through it.
func TestRunHelperProcess(t *testing.T) {
	if os.Getenv("WASMWIZ_RUN_HELPER") != "1" {
		t.Skip("helper process for TestRunStopsLoopFreeRecursion")
	}
	var args []string
	_ = json.Unmarshal([]byte(os.Getenv("WASMWIZ_RUN_ARGS")), &args)
	os.Exit(Main(context.Background(), &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, args))
}

// TestRunStopsLoopFreeRecursion: a loop-free recursive guest ignores the
// in-guest checks, so `wasmwiz run` must end the process itself, with the
// timeout status, instead of running for days.
func TestRunStopsLoopFreeRecursion(t *testing.T) {
	t.Parallel()
	for _, asJSON := range []bool{false, true} {
		args := []string{"run", "--timeout", "200ms", testmodule.Path(t, "print_then_recurse.wasm")}
		if asJSON {
			args = []string{"run", "--json", "--timeout", "200ms", testmodule.Path(t, "print_then_recurse.wasm")}
		}
		a, _ := json.Marshal(args)
		cmd := testenv.Command(t, os.Args[0], "-test.run=^TestRunHelperProcess$")
		cmd.Env = append(os.Environ(), "WASMWIZ_RUN_HELPER=1", "WASMWIZ_RUN_ARGS="+string(a))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitTimeout {
			t.Fatalf("json %v: %v, want exit status %d\nstdout %s\nstderr %s", asJSON, err, exitTimeout, stdout.String(), stderr.String())
		}
		if asJSON {
			var r api.Result
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Status != api.StatusTimeout || string(r.Stdout) != "started\n" {
				t.Fatalf("stdout %q: %v", stdout.String(), err)
			}
		} else if !strings.Contains(stderr.String(), "timeout") || stdout.String() != "started\n" {
			t.Fatalf("stdout %q stderr %q, want the guest's output and a timeout", stdout.String(), stderr.String())
		}
	}
}

// TestRunDirWASISuite runs every preview1 test of the WASI test suite
// (72; the engine runs them too) through `wasmwiz run --json`, each of the
// 49 filesystem tests with a fresh copy of its root given by --dir ROOT:/.
// A test still failing is in wasisuite.KnownFailures with its reason.
func TestRunDirWASISuite(t *testing.T) {
	t.Parallel()
	cache := wasisuite.CacheDir(t)
	wasisuite.RunAll(t, "wasmwiz run --dir", func(t *testing.T, c wasisuite.Case) wasisuite.Outcome {
		args := []string{"run", "--json", "--timeout", "60s", "--memory", "512MiB", "--cache-dir", cache}
		for k, v := range c.Spec.Env {
			args = append(args, "--env", k+"="+v)
		}
		if c.Spec.Root != "" {
			args = append(args, "--dir", c.FreshRoot(t)+":/")
		}
		args = append(args, c.Wasm)
		args = append(args, c.Spec.Args...)
		_, stdout, stderr := runMain(args, "", nil)
		var res api.Result
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("stdout is not a result: %v\n%s\nstderr: %s", err, stdout, stderr)
		}
		return suiteOutcome(&res)
	})
}

// suiteOutcome is a result as the WASI suite judges it.
func suiteOutcome(res *api.Result) wasisuite.Outcome {
	return wasisuite.Outcome{Exited: res.Status.Exited(), ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr,
		Detail: string(res.Status) + " " + res.Trap}
}

// An escape fixture: a host directory with a secret beside the tree a
// guest gets, and links in the tree that lead out.
func escapeFixture(t *testing.T) (host, tree string) {
	t.Helper()
	host = t.TempDir()
	tree = filepath.Join(host, "tree")
	for _, d := range []string{tree, filepath.Join(host, "outside"), filepath.Join(tree, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{filepath.Join(host, "secret"): "secret", filepath.Join(tree, "in.txt"): "hello"}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"abs": "/etc/passwd", "up": "../secret", "updir": "../outside"} {
		if err := os.Symlink(target, filepath.Join(tree, link)); err != nil {
			t.Fatal(err)
		}
	}
	return host, tree
}

// checkUntouched fails when anything beside the tree changed.
func checkUntouched(t *testing.T, host string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(host, "secret")); err != nil || string(b) != "secret" {
		t.Fatalf("the secret beside the tree: %q %v", b, err)
	}
	entries, _ := os.ReadDir(host)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "outside secret tree" {
		t.Fatalf("beside the tree: %v", names)
	}
	if entries, _ := os.ReadDir(filepath.Join(host, "outside")); len(entries) != 0 {
		t.Fatalf("written outside the tree: %v", entries)
	}
}

// escapeAttempts are fsprobe operations (internal/testmodule/testdata/fsprobe.c)
// that try to leave the directory a guest was given, with the answer each
// must get: none reaches the host.
var escapeAttempts = []struct{ args, want string }{
	{"cat ../secret", "cat ../secret: ENOTCAPABLE"},
	{"cat /../secret", "cat /../secret: ENOTCAPABLE"},
	{"cat sub/../../secret", "cat sub/../../secret: ENOTCAPABLE"},
	{"cat /etc/passwd", "cat /etc/passwd: ENOENT"}, // "/" is the tree: no etc in it
	{"cat abs", "cat abs: ENOTCAPABLE"},
	{"cat up", "cat up: ENOTCAPABLE"},
	{"ls ..", "ls ..: ENOTCAPABLE"},
	{"ls updir", "ls updir: ENOTCAPABLE"},
	{"stat up", "stat up: ENOTCAPABLE"},
	{"touch up", "touch up: ENOTCAPABLE"},
	{"write ../outside/x data", "write ../outside/x data: ENOTCAPABLE"},
	{"write updir/x data", "write updir/x data: ENOTCAPABLE"},
	{"mkdir ../outside/d", "mkdir ../outside/d: ENOTCAPABLE"},
	{"rename in.txt ../outside/in.txt", "rename in.txt ../outside/in.txt: ENOTCAPABLE"},
	{"rename in.txt updir/in.txt", "rename in.txt updir/in.txt: ENOTCAPABLE"},
	{"rename ../secret mine", "rename ../secret mine: ENOTCAPABLE"},
	{"link ../secret mine", "link ../secret mine: ENOTCAPABLE"},
	{"unlink ../secret", "unlink ../secret: ENOTCAPABLE"},
	{"symlink /etc etc", "symlink /etc etc: EPERM"},
	{"symlink ../secret mine cat mine", "symlink ../secret mine: ok\ncat mine: ENOTCAPABLE"},
	{"symlink ../outside out write out/x data", "symlink ../outside out: ok\nwrite out/x data: ENOTCAPABLE"},
}

// TestRunDirEscapes runs every escape attempt through `wasmwiz run --dir`.
func TestRunDirEscapes(t *testing.T) {
	t.Parallel()
	probe := testmodule.Path(t, "fsprobe.wasm")
	cache := t.TempDir()
	for _, tt := range escapeAttempts {
		t.Run(tt.args, func(t *testing.T) {
			t.Parallel()
			host, tree := escapeFixture(t)
			args := append([]string{"run", "--cache-dir", cache, "--dir", tree + ":/", probe}, strings.Fields(tt.args)...)
			code, stdout, stderr := runMain(args, "", nil)
			if code != 0 || strings.TrimSpace(stdout) != tt.want {
				t.Fatalf("exit %d\nstdout %q\nwant   %q\nstderr %s", code, stdout, tt.want, stderr)
			}
			checkUntouched(t, host)
		})
	}
}

func TestRunDirFlag(t *testing.T) {
	t.Parallel()
	_, tree := escapeFixture(t)
	probe := testmodule.Path(t, "fsprobe.wasm")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "guest path defaults to /BASENAME", args: []string{"--dir", tree, probe, "cat", "/tree/in.txt", "ls", "/"},
			stdout: "cat /tree/in.txt: ok hello\nls /: ENOTCAPABLE\n"},
		{name: "read and write", args: []string{"--dir", tree + ":/data", probe, "write", "/data/out.txt", "made", "cat", "/data/out.txt"},
			stdout: "write /data/out.txt made: ok 4\ncat /data/out.txt: ok made\n"},
		{name: "read-only", args: []string{"--dir", tree + ":/:ro", probe, "cat", "in.txt", "write", "in.txt", "x", "mkdir", "d", "unlink", "in.txt"},
			stdout: "cat in.txt: ok hello\nwrite in.txt x: EROFS\nmkdir d: EROFS\nunlink in.txt: EROFS\n"},
		{name: "two directories", args: []string{"--dir", tree + ":/a:ro", "--dir", filepath.Join(tree, "sub") + ":/b", probe, "copy", "/a/in.txt", "/b/copy.txt", "cat", "/b/copy.txt"},
			stdout: "copy /a/in.txt /b/copy.txt: ok 5\ncat /b/copy.txt: ok hello\n"},
		{name: "no directory", args: []string{probe, "cat", "in.txt"}, stdout: "cat in.txt: ENOTCAPABLE\n"},
		{name: "missing host directory", args: []string{"--dir", filepath.Join(tree, "nope"), probe}, code: 2, stderr: "no such file or directory"},
		{name: "a file", args: []string{"--dir", filepath.Join(tree, "in.txt"), probe}, code: 2, stderr: "is not a directory"},
		{name: "relative guest path", args: []string{"--dir", tree + ":data", probe}, code: 2, stderr: "no such file or directory"},
		{name: "same guest path twice", args: []string{"--dir", tree + ":/x", "--dir", tree + ":/x/", probe}, code: 2, stderr: "two directories are mounted at /x"},
	}
	t.Cleanup(func() {
		if b, _ := os.ReadFile(filepath.Join(tree, "out.txt")); string(b) != "made" {
			t.Errorf("out.txt in the host directory holds %q", b)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runMain(append([]string{"run"}, tt.args...), "", nil)
			if code != tt.code || (tt.stdout != "" && stdout != tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q\nwant   %q\nstderr %q (want it to contain %q)", code, tt.code, stdout, tt.stdout, stderr, tt.stderr)
			}
		})
	}
}

func TestParseDirFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	colon := filepath.Join(dir, "a:b")
	if err := os.Mkdir(colon, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in   string
		want wasmwiz.Mount
	}{
		{dir, wasmwiz.Mount{HostDir: dir, GuestDir: "/" + filepath.Base(dir)}},
		{dir + ":/", wasmwiz.Mount{HostDir: dir, GuestDir: "/"}},
		{dir + ":/x/../y:ro", wasmwiz.Mount{HostDir: dir, GuestDir: "/y", ReadOnly: true}},
		{dir + ":ro", wasmwiz.Mount{HostDir: dir, GuestDir: "/" + filepath.Base(dir), ReadOnly: true}},
		{colon, wasmwiz.Mount{HostDir: colon, GuestDir: "/a:b"}},
		{colon + ":/c", wasmwiz.Mount{HostDir: colon, GuestDir: "/c"}},
	}
	for _, tt := range tests {
		got, err := parseDirFlag(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseDirFlag(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", ":/x", filepath.Join(dir, "missing")} {
		if _, err := parseDirFlag(bad); err == nil {
			t.Errorf("parseDirFlag(%q) succeeded", bad)
		}
	}
}

// TestRunDirJSONShape: `wasmwiz run --json` answers the same fields with
// --dir as without.
func TestRunDirJSONShape(t *testing.T) {
	t.Parallel()
	_, tree := escapeFixture(t)
	probe := testmodule.Path(t, "fsprobe.wasm")
	keys := func(args ...string) []string {
		t.Helper()
		code, stdout, stderr := runMain(append([]string{"run", "--json"}, args...), "", nil)
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(stdout), &m); code != 0 || err != nil {
			t.Fatalf("exit %d, %v\nstdout %s\nstderr %s", code, err, stdout, stderr)
		}
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	without := keys(probe, "cat", "in.txt")
	with := keys("--dir", tree+":/", "--dir", tree+":/ro:ro", probe, "cat", "in.txt", "write", "out.txt", "x")
	if !slices.Equal(without, with) {
		t.Fatalf("fields without --dir %v, with %v", without, with)
	}
}
