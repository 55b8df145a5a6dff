package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/internal/engine"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// inProcessEngine is a real engine in this process, closed when the test
// ends.
func inProcessEngine(t testing.TB) *engine.Engine {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}

// realServer is the HTTP server on the real in-process engine and the real
// in-memory limiter, over a real listener; stores are mocks.
func realServer(t *testing.T, tier *wasmwiz.Tier) (*httptest.Server, *mock.UsageRecorder) {
	t.Helper()
	eng := inProcessEngine(t)
	lim := inmem.New(inmem.Options{})
	usage := &mock.UsageRecorder{}
	modules := map[string]*wasmwiz.Module{}
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Keys: &mock.APIKeyService{AuthenticateFn: func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
			if p == userKey {
				return &wasmwiz.User{ID: 1, Role: wasmwiz.RoleUser, Tier: tier.Name}, &wasmwiz.APIKey{ID: 11}, nil
			}
			return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "no")
		}},
		Tiers: &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) { return tier, nil }},
		Modules: &mock.ModuleService{
			StoredModulesFn: func(ctx context.Context) (have wasmwiz.StoredModules, err error) {
				for _, m := range modules {
					have.Count, have.Bytes = have.Count+1, have.Bytes+m.SizeBytes
				}
				return have, nil
			},
			CreateModuleFn: func(ctx context.Context, m *wasmwiz.Module) error {
				m.ID, m.OwnerID, m.SHA256, m.SizeBytes = wasmwiz.NewModuleID(), 1, m.Inspection.SHA256, int64(len(m.Wasm))
				modules[m.ID] = m
				return nil
			},
			FindModuleWasmFn: func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				if m, ok := modules[id]; ok {
					return m, nil
				}
				return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
			},
			FindModuleByIDFn: func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				if m, ok := modules[id]; ok {
					c := *m
					c.Wasm = nil
					return &c, nil
				}
				return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
			},
		},
		Engine: eng, Limiter: lim, Usage: usage, Auth: true, Logger: slog.New(slog.DiscardHandler),
		MaxConcurrentRuns: 2, QueueSize: 4, QueueTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, usage
}

// roomyTier is the free tier with room for every run of a test (rates,
// concurrency) and a wall time no guest that ends by itself comes near on a
// loaded machine; change changes it further.
func roomyTier(change func(*wasmwiz.Tier)) *wasmwiz.Tier {
	free, _ := findTier(wasmwiz.TierFree)
	tier := *free
	tier.RunsPerMinute, tier.RunsPerDay, tier.MaxConcurrent = 1000, 100000, 100
	tier.Timeout = testenv.Patience
	if change != nil {
		change(&tier)
	}
	return &tier
}

// post sends a request with the user's key to the real server.
func post(t *testing.T, url, contentType string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	return testenv.Do(t, "POST", url, userKey, contentType, body)
}

func TestRealEngineExecute(t *testing.T) {
	t.Parallel()
	ts, usage := realServer(t, roomyTier(nil))

	tests := []struct {
		name      string
		path      string
		body      func(t *testing.T) (io.Reader, string)
		status    int
		runStatus api.Status
		stdout    string
		results   string
	}{
		{name: "multipart hello", path: "/api/v1/execute", status: 200, runStatus: api.StatusOK, stdout: "Hello, World!\n",
			body: func(t *testing.T) (io.Reader, string) {
				return testenv.Multipart(t, map[string][]byte{"wasm": testmodule.Read(t, "hello.wasm")}, nil)
			}},
		{name: "raw echo with stdin", path: "/api/v1/execute?stdin=%20%20hi%20%20", status: 200, runStatus: api.StatusOK, stdout: "hi",
			body: func(t *testing.T) (io.Reader, string) {
				return bytes.NewReader(testmodule.Read(t, "echo.wasm")), "application/wasm"
			}},
		{name: "json plain function", path: "/api/v1/execute", status: 200, runStatus: api.StatusOK, results: "i32=5",
			body: func(t *testing.T) (io.Reader, string) {
				b, _ := json.Marshal(map[string]any{"wasm_base64": testmodule.Read(t, "add.wasm"), "function": "add", "params": []int{2, 3}})
				return bytes.NewReader(b), "application/json"
			}},
		{name: "tight loop stopped at the caller's lower timeout", path: "/api/v1/execute?timeout=100ms", status: 200, runStatus: api.StatusTimeout,
			body: func(t *testing.T) (io.Reader, string) {
				return bytes.NewReader(testmodule.Read(t, "loop.wasm")), "application/wasm"
			}},
		{name: "not wasm", path: "/api/v1/execute", status: 400,
			body: func(t *testing.T) (io.Reader, string) { return strings.NewReader("hello"), "application/wasm" }},
		{name: "unsatisfiable import", path: "/api/v1/execute", status: 400,
			body: func(t *testing.T) (io.Reader, string) {
				return bytes.NewReader(testmodule.Read(t, "bad_imports.wasm")), "application/wasm"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body, ct := tt.body(t)
			res, b := post(t, ts.URL+tt.path, ct, body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, b)
			}
			if res.Header.Get("X-RateLimit-Limit") != "1000" {
				t.Errorf("X-RateLimit-Limit = %q", res.Header.Get("X-RateLimit-Limit"))
			}
			if tt.status != 200 {
				return
			}
			var rj api.Result
			if err := json.Unmarshal(b, &rj); err != nil {
				t.Fatal(err)
			}
			if rj.Status != tt.runStatus || string(rj.Stdout) != tt.stdout {
				t.Errorf("status %q stdout %q; want %q %q", rj.Status, rj.Stdout, tt.runStatus, tt.stdout)
			}
			if tt.results != "" {
				if len(rj.Results) != 1 || rj.Results[0].Type+"="+rj.Results[0].String() != tt.results {
					t.Errorf("results %v, want %s", rj.Results, tt.results)
				}
			}
		})
	}
	t.Cleanup(func() {
		if n := len(usage.Runs()); n < 4 {
			t.Errorf("%d usage records, want at least 4", n)
		}
	})
}

// TestRealEngineLegacyFixtures runs the original service's three fixtures
// through the legacy route on the real engine, with both spellings of its
// fields, and its failures: the guest's own and the tier's time limit.
// Every answer is exactly {"output":…,"error":…} with the run's id in
// X-Run-Id.
func TestRealEngineLegacyFixtures(t *testing.T) {
	t.Parallel()
	ts, _ := realServer(t, roomyTier(nil))
	tsShort, _ := realServer(t, roomyTier(func(tr *wasmwiz.Tier) { tr.Name, tr.Timeout = "short", 300*time.Millisecond }))
	tests := []struct {
		name, module, input string
		original            bool // the fields wasm_file and input_data
		shortTier           bool
		output, errText     string
	}{
		{name: "hello", module: "hello.wasm", output: "Hello, World!\n"},
		{name: "echo", module: "echo.wasm", input: "  ping  ", output: "ping"},
		{name: "calc_add", module: "calc_add.wasm", input: "5 3", output: "8\n"},
		{name: "calc_add, the original field names", module: "calc_add.wasm", input: "40 2", original: true, output: "42\n"},
		{name: "calc_add without numbers", module: "calc_add.wasm", input: "x", errText: "expected two integers"},
		{name: "calc_add without input", module: "calc_add.wasm", errText: "module exited with code 1: calc_add: expected two integers"},
		{name: "loop past the time limit", module: "loop.wasm", shortTier: true, errText: "time limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wasmField, inputField, url := "wasm", "input", ts.URL
			if tt.original {
				wasmField, inputField = "wasm_file", "input_data"
			}
			if tt.shortTier {
				url = tsShort.URL
			}
			body, ct := testenv.Multipart(t, map[string][]byte{wasmField: testmodule.Read(t, tt.module)}, map[string]string{inputField: tt.input})
			res, b := post(t, url+"/api/execute", ct, body)
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %s", res.StatusCode, b)
			}
			if id := res.Header.Get("X-Run-Id"); !strings.HasPrefix(id, "run_") {
				t.Errorf("X-Run-Id %q", id)
			}
			if tt.errText == "" {
				want, _ := json.Marshal(struct {
					Output string  `json:"output"`
					Error  *string `json:"error"`
				}{tt.output, nil})
				if got := bytes.TrimSpace(b); !bytes.Equal(got, want) {
					t.Errorf("answer %s, want %s", got, want)
				}
				return
			}
			var out map[string]*string
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			if len(out) != 2 || out["output"] != nil || out["error"] == nil || !strings.Contains(*out["error"], tt.errText) {
				t.Errorf("answer %s, want output null and an error containing %q", b, tt.errText)
			}
		})
	}
}

// TestRealLimiterQuota: the tier's per-minute quota is enforced by the real
// limiter, with exact headers, and refused runs do not run.
func TestRealLimiterQuota(t *testing.T) {
	t.Parallel()
	ts, usage := realServer(t, roomyTier(func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 2 }))
	hello := testmodule.Read(t, "hello.wasm")
	for i, want := range []struct {
		status    int
		remaining string
	}{{200, "1"}, {200, "0"}, {429, "0"}} {
		res, b := post(t, ts.URL+"/api/v1/execute", "application/wasm", bytes.NewReader(hello))
		if res.StatusCode != want.status || res.Header.Get("X-RateLimit-Remaining") != want.remaining {
			t.Fatalf("request %d: status %d remaining %q: %s", i+1, res.StatusCode, res.Header.Get("X-RateLimit-Remaining"), b)
		}
		if want.status == 429 {
			ra := res.Header.Get("Retry-After")
			if ra == "" || ra == "0" || res.Header.Get("X-RateLimit-Limit") != "2" {
				t.Errorf("429 headers: Retry-After %q limit %q", ra, res.Header.Get("X-RateLimit-Limit"))
			}
		}
	}
	if n := len(usage.Runs()); n != 2 {
		t.Errorf("%d usage records, want 2 (the refused run is not one)", n)
	}
}

// TestRealEngineModuleUpload: upload inspects with the real engine, refuses
// invalid modules, and the stored module runs by id.
func TestRealEngineModuleUpload(t *testing.T) {
	t.Parallel()
	ts, _ := realServer(t, roomyTier(nil))

	res, b := post(t, ts.URL+"/api/v1/modules?name=bad.wasm", "application/wasm", strings.NewReader("not wasm at all"))
	if res.StatusCode != 400 {
		t.Fatalf("invalid upload: %d %s", res.StatusCode, b)
	}
	body, ct := testenv.Multipart(t, map[string][]byte{"wasm": testmodule.Read(t, "echo.wasm")}, map[string]string{"name": "echo", "description": "trims"})
	res, b = post(t, ts.URL+"/api/v1/modules", ct, body)
	if res.StatusCode != 201 {
		t.Fatalf("upload: %d %s", res.StatusCode, b)
	}
	var m wasmwiz.Module
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Inspection == nil || !m.Inspection.WASI || m.Inspection.Entry != "_start" || m.Name != "echo" {
		t.Fatalf("upload answer %s", b)
	}
	res, b = post(t, ts.URL+"/api/v1/modules/"+m.ID+"/execute", "text/plain", strings.NewReader("  stored  "))
	if res.StatusCode != 200 {
		t.Fatalf("execute stored: %d %s", res.StatusCode, b)
	}
	var rj api.Result
	if err := json.Unmarshal(b, &rj); err != nil {
		t.Fatal(err)
	}
	if string(rj.Stdout) != "stored" {
		t.Errorf("stdout %q, want stored", rj.Stdout)
	}
}

// TestRealLimiterConcurrency: with the real in-memory limiter, a user's
// second run while its first is in flight is a 429 with the concurrency
// message, and the slot is free again once the first run ends.
func TestRealLimiterConcurrency(t *testing.T) {
	t.Parallel()
	tier := roomyTier(func(tr *wasmwiz.Tier) { tr.MaxConcurrent = 1 })
	started, gate := make(chan struct{}, 1), testenv.NewGate(t)
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		if string(req.Stdin) == "block" {
			started <- struct{}{}
			if err := gate.Wait(ctx); err != nil {
				return nil, err
			}
		}
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}}
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Keys: &mock.APIKeyService{AuthenticateFn: func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
			return &wasmwiz.User{ID: 1, Role: wasmwiz.RoleUser, Tier: tier.Name}, &wasmwiz.APIKey{ID: 11}, nil
		}},
		Tiers:  &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) { return tier, nil }},
		Engine: eng, Limiter: inmem.New(inmem.Options{}), Auth: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	defer gate.Open() // before ts.Close, which waits for the blocked run

	first := make(chan int, 1)
	go func() { // no t.Fatal off the test goroutine: report the status, or -1
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/execute?stdin=block", bytes.NewReader(wasmHeader))
		req.Header.Set("Authorization", "Bearer "+userKey)
		req.Header.Set("Content-Type", "application/wasm")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- -1
			return
		}
		res.Body.Close()
		first <- res.StatusCode
	}()
	testenv.Recv(t, started, "the first run to reach the engine")
	res, b := post(t, ts.URL+"/api/v1/execute", "application/wasm", bytes.NewReader(wasmHeader))
	if res.StatusCode != 429 || !strings.Contains(string(b), "too many runs in flight") || res.Header.Get("Retry-After") == "" {
		t.Errorf("second run while the first is in flight: %d %s", res.StatusCode, b)
	}
	gate.Open()
	if code := testenv.Recv(t, first, "the first run's answer"); code != 200 {
		t.Errorf("first run: %d", code)
	}
	if res, b := post(t, ts.URL+"/api/v1/execute", "application/wasm", bytes.NewReader(wasmHeader)); res.StatusCode != 200 {
		t.Errorf("run after the first ended: %d %s", res.StatusCode, b)
	}
}
