package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestOpenAPIGeneratedClient: a Go client generated from the document the
// server serves, by oapi-codegen at the version .ci/run pins, builds in a
// module of its own with the generator's runtime module, and runs modules
// on the real server (the real engine and limiter over a real listener):
// a WASI command with args, env and stdin, a plain function with params,
// a refused module whose error body it reads, and GET /api/v1/me with the
// tier's limits. Whatever the generator needs from the document is
// therefore in it, and what it builds from it works.
func TestOpenAPIGeneratedClient(t *testing.T) {
	t.Parallel()
	generator := testenv.CITool(t, "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen", "OAPI_CODEGEN_VERSION")
	runtimeVersion := testenv.CIVersion(t, "OAPI_CODEGEN_RUNTIME_VERSION")
	goCmd, err := exec.LookPath("go")
	if err != nil {
		testenv.Skip(t, "no go command on PATH", "install Go")
	}

	free, _ := findTier(wasmwiz.TierFree)
	tier := *free
	tier.RunsPerMinute, tier.RunsPerDay, tier.MaxConcurrent = 1000, 100000, 100
	ts, _ := realServer(t, &tier)

	dir := t.TempDir()
	res, doc := testenv.Do(t, "GET", ts.URL+"/api/openapi.json", "", "", nil)
	if res.StatusCode != 200 {
		t.Fatalf("GET /api/openapi.json: %d", res.StatusCode)
	}
	write(t, filepath.Join(dir, "openapi.json"), doc)
	write(t, filepath.Join(dir, "go.mod"), []byte("module example.com/wwgen\n\ngo 1.22\n\nrequire github.com/oapi-codegen/runtime "+runtimeVersion+"\n"))
	write(t, filepath.Join(dir, "main.go"), []byte(generatedClientProgram))
	for _, m := range []string{"args_env.wasm", "add.wasm"} {
		write(t, filepath.Join(dir, m), testmodule.Read(t, m))
	}
	if err := os.Mkdir(filepath.Join(dir, "wwapi"), 0o755); err != nil {
		t.Fatal(err)
	}

	// Each step gets a deadline far beyond what it takes, so that a hung
	// tool fails the test instead of holding it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The go command's defaults otherwise, as go test's: the standard library
	// comes from the build cache's entries the test binaries made.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	step := func(name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = dir, env
		return cmd.CombinedOutput()
	}
	if out, err := step(generator, "-generate", "types,client", "-package", "wwapi", "-o", "wwapi/wwapi.go", "openapi.json"); err != nil {
		t.Fatalf("oapi-codegen refuses the document: %v\n%s", err, out)
	}
	if out, err := step(goCmd, "mod", "tidy"); err != nil {
		testenv.Skip(t, "go mod tidy of the generated client failed: "+err.Error()+"\n"+string(out),
			"reach the Go module proxy (GOPROXY), which serves github.com/oapi-codegen/runtime")
	}
	if out, err := step(goCmd, "build", "-o", "wwgen", "."); err != nil {
		t.Fatalf("the generated client does not build: %v\n%s", err, out)
	}
	run := exec.CommandContext(ctx, filepath.Join(dir, "wwgen"))
	run.Dir, run.Env = dir, append(os.Environ(), "WW_URL="+ts.URL, "WW_KEY="+userKey)
	out, err := run.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("the generated client: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}

	got := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("the generated client printed %q: %v", sc.Text(), err)
		}
		got[line["call"].(string)] = line
	}
	want := map[string]map[string]any{
		"wasi": {"status": "ok", "exit_code": 0.0, "stdout_encoding": "utf-8", "wasi": true, "run_id": true,
			"stdout": "argv[0]=generated.wasm\nargv[1]=--loud\nenv GREETING=hi\nwall_after_2020=1\nmonotonic_ok=1\nrandom_differs=1\n"},
		"function": {"status": "ok", "type": "i32", "value": 5.0},
		"refused":  {"status_code": 400.0, "code": "EINVALID"},
		"me":       {"tier": wasmwiz.TierFree, "timeout_ms": float64(free.Timeout.Milliseconds()), "limits": float64(len(wasmwiz.TierFields()))},
	}
	for call, fields := range want {
		for k, v := range fields {
			if got[call][k] != v {
				t.Errorf("%s: %s = %#v, want %#v (all: %v)", call, k, got[call][k], v, got[call])
			}
		}
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// generatedClientProgram uses the client oapi-codegen generates (package
// wwapi) as a newcomer would, and prints one JSON line per call.
const generatedClientProgram = `package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	"example.com/wwgen/wwapi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func run() error {
	ctx := context.Background()
	key := os.Getenv("WW_KEY")
	c, err := wwapi.NewClientWithResponses(os.Getenv("WW_URL"), wwapi.WithRequestEditorFn(func(ctx context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+key)
		return nil
	}))
	if err != nil {
		return err
	}

	wasm, err := os.ReadFile("args_env.wasm")
	if err != nil {
		return err
	}
	name, stdin := "generated.wasm", "ignored by this module"
	args, env := []string{"--loud"}, map[string]string{"GREETING": "hi"}
	ex, err := c.ExecuteWithResponse(ctx, nil, wwapi.ExecuteJSONRequestBody{
		WasmBase64: &wasm, Name: &name, Args: &args, Env: &env, Stdin: &stdin,
	})
	if err != nil {
		return err
	}
	if ex.JSON200 == nil {
		return fmt.Errorf("execute: HTTP %d: %s", ex.StatusCode(), ex.Body)
	}
	r := ex.JSON200
	if r.ExitCode == nil {
		return fmt.Errorf("execute: exit_code null for status %s", r.Status)
	}
	emit(map[string]any{"call": "wasi", "status": r.Status, "exit_code": *r.ExitCode, "stdout": r.Stdout,
		"stdout_encoding": r.StdoutEncoding, "wasi": r.Module.Wasi, "run_id": r.Id != nil && strings.HasPrefix(*r.Id, "run_")})

	add, err := os.ReadFile("add.wasm")
	if err != nil {
		return err
	}
	function, params := "add", []interface{}{2, "3"}
	ex, err = c.ExecuteWithResponse(ctx, nil, wwapi.ExecuteJSONRequestBody{WasmBase64: &add, Function: &function, Params: &params})
	if err != nil {
		return err
	}
	if ex.JSON200 == nil || len(ex.JSON200.Results) != 1 {
		return fmt.Errorf("execute add: HTTP %d: %s", ex.StatusCode(), ex.Body)
	}
	v := ex.JSON200.Results[0]
	emit(map[string]any{"call": "function", "status": ex.JSON200.Status, "type": v.Type, "value": v.Value})

	junk := []byte("not wasm")
	ex, err = c.ExecuteWithResponse(ctx, nil, wwapi.ExecuteJSONRequestBody{WasmBase64: &junk})
	if err != nil {
		return err
	}
	if ex.JSONDefault == nil {
		return fmt.Errorf("execute junk: HTTP %d without an error body: %s", ex.StatusCode(), ex.Body)
	}
	emit(map[string]any{"call": "refused", "status_code": ex.StatusCode(), "code": ex.JSONDefault.Error.Code})

	me, err := c.GetMeWithResponse(ctx)
	if err != nil {
		return err
	}
	if me.JSON200 == nil {
		return fmt.Errorf("me: HTTP %d: %s", me.StatusCode(), me.Body)
	}
	emit(map[string]any{"call": "me", "tier": me.JSON200.Tier.Name, "timeout_ms": me.JSON200.Tier.TimeoutMs, "limits": len(me.JSON200.Limits)})
	return nil
}
`
