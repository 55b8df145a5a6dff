package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
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
