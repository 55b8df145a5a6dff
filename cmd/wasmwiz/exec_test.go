package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestExecPrintsWhatRunPrints: `wasmwiz exec` against a running serve prints
// the same stdout, stderr and exit status as `wasmwiz run` on this machine.
func TestExecPrintsWhatRunPrints(t *testing.T) {
	t.Parallel()
	s := backends[0].serve(t)
	_, _, key := s.newUser(wasmwiz.TierBasic)
	tests := []struct {
		name  string
		flags []string // for both
		args  []string // module and its args
		stdin string
	}{
		{"hello", nil, []string{testmodule.Path(t, "hello.wasm")}, ""},
		{"echo", nil, []string{testmodule.Path(t, "echo.wasm")}, "  padded  \n"},
		{"calc_add", nil, []string{testmodule.Path(t, "calc_add.wasm")}, "5 3"},
		{"guest exit status", nil, []string{testmodule.Path(t, "calc_add.wasm")}, "5"},
		{"exit code and both streams", nil, []string{testmodule.Path(t, "exit_code.wasm"), "7"}, ""},
		{"args env and argv0", []string{"--env", "A=1", "--env", "B=x=y"}, []string{testmodule.Path(t, "args_env.wasm"), "--not-a-flag", "z"}, ""},
		{"call with params", []string{"--call", "add64", "--params", "40,2"}, []string{testmodule.Path(t, "add.wasm")}, ""},
		{"timeout", []string{"--timeout", "100ms"}, []string{testmodule.Path(t, "loop.wasm")}, ""},
		{"memory cap", []string{"--memory", "2MiB"}, []string{testmodule.Path(t, "memory_bomb.wasm")}, ""},
		{"refused module", nil, []string{testmodule.Path(t, "bad_imports.wasm")}, ""},
		{"trap", []string{"--call", "div_by_zero"}, []string{testmodule.Path(t, "traps.wasm")}, ""},
		{"plain module with params", []string{"--call", "add", "--params", "2,3"}, []string{testmodule.Path(t, "add.wasm")}, ""},
	}
	// The timeout case's 100 ms are the guest's: the server compiles
	// loop.wasm first (storing a module inspects it in a worker), so that
	// its runs only load it. Compiling it within those 100 ms on a loaded
	// machine would be refused as too costly to compile.
	if _, err := s.client(key).CreateModule(context.Background(), client.ModuleUpload{Wasm: testmodule.Read(t, "loop.wasm"), Name: "loop.wasm"}); err != nil {
		t.Fatalf("storing loop.wasm: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runArgs := append(append([]string{"run"}, tt.flags...), tt.args...)
			execArgs := append(append([]string{"exec", "--server", s.url, "--key", key}, tt.flags...), tt.args...)
			rc, rout, rerr := runMain(runArgs, tt.stdin, nil)
			ec, eout, eerr := runMain(execArgs, tt.stdin, nil)
			rerr = strings.ReplaceAll(rerr, "wasmwiz run:", "wasmwiz exec:")
			if ec != rc || eout != rout || !sameStderr(eerr, rerr) {
				t.Fatalf("exec: exit %d\nstdout %q\nstderr %q\nrun: exit %d\nstdout %q\nstderr %q", ec, eout, eerr, rc, rout, rerr)
			}
			// --follow prints the same, as it comes.
			followArgs := append(append([]string{"exec", "--follow", "--server", s.url, "--key", key}, tt.flags...), tt.args...)
			fc, fout, ferr := runMain(followArgs, tt.stdin, nil)
			if fc != rc || fout != rout || !sameStderr(ferr, rerr) {
				t.Fatalf("exec --follow: exit %d\nstdout %q\nstderr %q\nrun: exit %d\nstdout %q\nstderr %q", fc, fout, ferr, rc, rout, rerr)
			}
			// So does a background run followed to its end.
			asyncArgs := append(append([]string{"exec", "--async", "--follow", "--server", s.url, "--key", key}, tt.flags...), tt.args...)
			ac, aout, aerr := runMain(asyncArgs, tt.stdin, nil)
			if ac != rc || aout != rout || !sameStderr(aerr, rerr) {
				t.Fatalf("exec --async --follow: exit %d\nstdout %q\nstderr %q\nrun: exit %d\nstdout %q\nstderr %q", ac, aout, aerr, rc, rout, rerr)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		code, out, errOut := runMain([]string{"exec", "--json", "--server", s.url, testmodule.Path(t, "exit_code.wasm"), "9"}, "",
			map[string]string{"WASMWIZ_API_KEY": key})
		var res api.Result
		if code != 9 || json.Unmarshal([]byte(out), &res) != nil || res.Status != api.StatusExit ||
			string(res.Stdout) != "before exit\n" || !strings.HasPrefix(res.ID, "run_") {
			t.Fatalf("exec --json: exit %d, %q, %q", code, out, errOut)
		}
	})
	t.Run("module-id", func(t *testing.T) {
		t.Parallel()
		m, err := s.client(key).CreateModule(context.Background(), client.ModuleUpload{Wasm: testmodule.Read(t, "args_env.wasm"), Name: "stored.wasm"})
		if err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runMain([]string{"exec", "--server", s.url, "--key", key, "--env", "K=v", "--module-id", m.ID, "one"}, "", nil)
		if code != 0 || !strings.Contains(out, "argv[0]=stored.wasm\nargv[1]=one\nenv K=v\n") {
			t.Fatalf("exec --module-id: exit %d, %q, %q", code, out, errOut)
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name   string
			args   []string
			code   int
			stderr string
		}{
			{"bad key", []string{"exec", "--server", s.url, "--key", "ww_" + strings.Repeat("0", 40), testmodule.Path(t, "hello.wasm")}, 1, "EUNAUTHORIZED"},
			{"another user's module", []string{"exec", "--server", s.url, "--key", key, "--module-id", "mod_0K5smvRL1H5z3K7gzfJ1Cr"}, 1, "ENOTFOUND"},
			{"no server", []string{"exec", "--server", "http://127.0.0.1:1", "--key", key, testmodule.Path(t, "hello.wasm")}, 1, "EUNAVAILABLE"},
			{"bad server URL", []string{"exec", "--server", "ftp://x", testmodule.Path(t, "hello.wasm")}, 2, "EINVALID"},
			{"no module", []string{"exec", "--server", s.url}, 2, "wasmwiz exec: no module"},
		}
		for _, tt := range tests {
			code, _, errOut := runMain(tt.args, "", nil)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("%s: exit %d, stderr %q; want %d and %q", tt.name, code, errOut, tt.code, tt.stderr)
			}
		}
	})
}

// sameStderr compares stderr of run and exec. A trap's message names the
// wasm stack the same way in both; only memory_limit's message ends with
// the engine's trap text, which may word the growth failure differently
// in a worker, so it is compared up to that text.
func sameStderr(exec, run string) bool {
	if exec == run {
		return true
	}
	const ml = "memory_limit: the guest ran out of its "
	if i, j := strings.Index(exec, ml), strings.Index(run, ml); i >= 0 && i == j && exec[:i] == run[:j] {
		cut := func(s string) string { s = s[i+len(ml):]; k := strings.Index(s, ":"); return s[:max(k, 0)] }
		return cut(exec) == cut(run)
	}
	return false
}

// TestExecHabits: exec without a key says how to pass one; "-" reads the
// module from stdin; argv[0] is the module's name in every execute body
// (the name sent, the upload's file name, or the stored module's name).
func TestExecHabits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	user, _, key := s.newUser(wasmwiz.TierBasic)

	code, _, errOut := runMain([]string{"exec", "--server", s.url, testmodule.Path(t, "hello.wasm")}, "", nil)
	if code != 1 || !strings.Contains(errOut, "EUNAUTHORIZED") || !strings.Contains(errOut, "--key") || !strings.Contains(errOut, "WASMWIZ_API_KEY") {
		t.Fatalf("exec without a key: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut := runMain([]string{"exec", "--server", s.url, "--key", key, "-", "x"}, string(testmodule.Read(t, "args_env.wasm")), nil)
	if code != 0 || !strings.Contains(out, "argv[0]=module.wasm\nargv[1]=x\n") {
		t.Fatalf("exec -: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runMain(append([]string{"exec", "--server", s.url, "--key", key, testmodule.Path(t, "hello.wasm")},
		make([]string, wasmwiz.MaxArgs+1)...), "", nil)
	if code == 0 || !strings.Contains(errOut, "ETOOLARGE") || !strings.Contains(errOut, "more than 4096 arguments") {
		t.Fatalf("exec with too many args: exit %d, stderr %q", code, errOut)
	}

	// --async queues the run and prints its id; it runs on without exec.
	code, out, errOut = runMain([]string{"exec", "--async", "--server", s.url, "--key", key, testmodule.Path(t, "hello.wasm")}, "", nil)
	id := strings.TrimSpace(out)
	if code != 0 || !wasmwiz.ValidRunID(id) || errOut != "" {
		t.Fatalf("exec --async: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if rec := awaitRun(t, "the run exec --async queued to end", s.url, key, id, inState(api.RunDone)); string(rec.Stdout) != "Hello, World!\n" {
		t.Fatalf("the run exec --async queued: %+v", rec)
	}
	code, out, _ = runMain([]string{"exec", "--async", "--json", "--server", s.url, "--key", key, testmodule.Path(t, "hello.wasm")}, "", nil)
	var acc api.Accepted
	if code != 0 || json.Unmarshal([]byte(out), &acc) != nil || !wasmwiz.ValidRunID(acc.ID) || acc.State != api.RunQueued {
		t.Fatalf("exec --async --json: exit %d, stdout %q", code, out)
	}
	if code, _, errOut = runMain([]string{"exec", "--async", "--follow", "--json", "--server", s.url, "--key", key, testmodule.Path(t, "hello.wasm")}, "", nil); code != 2 || !strings.Contains(errOut, "--async --follow") {
		t.Fatalf("exec --async --follow --json: exit %d, stderr %q", code, errOut)
	}

	argsEnv := testmodule.Read(t, "args_env.wasm")
	for _, body := range []client.Body{client.BodyJSON, client.BodyMultipart, client.BodyRaw} {
		res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: argsEnv, Name: "mine.wasm", Body: body})
		if err != nil || !strings.Contains(string(res.Stdout), "argv[0]=mine.wasm\n") {
			t.Fatalf("body %d with a name: %+v, %v", body, res, err)
		}
		res, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: argsEnv, Body: body})
		if err != nil || !strings.Contains(string(res.Stdout), "argv[0]=module.wasm\n") {
			t.Fatalf("body %d without a name: %+v, %v", body, res, err)
		}
	}
	m, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: argsEnv, Name: "stored.wasm"})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []client.Body{client.BodyJSON, client.BodyMultipart, client.BodyRaw} {
		ex, err := user.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{Body: body})
		if err != nil || !strings.Contains(string(ex.Result.Stdout), "argv[0]=stored.wasm\n") {
			t.Fatalf("stored module, body %d: %+v, %v", body, ex, err)
		}
	}
	_, err = user.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{Name: "other.wasm"})
	wantCode(t, "a name for a stored module", err, wasmwiz.EINVALID)
	_, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: argsEnv, Name: strings.Repeat("n", 256)})
	wantCode(t, "a name of 256 bytes", err, wasmwiz.EINVALID)
}
