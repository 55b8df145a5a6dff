package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestExecuteBodies(t *testing.T) {
	t.Parallel()
	storedID := wasmwiz.NewModuleID()
	tests := []struct {
		name        string
		path        string
		build       func(t *testing.T) (io.Reader, string)
		wantWasm    []byte
		wantModule  string
		wantStdin   string
		wantArgs    []string
		wantEnv     map[string]string
		wantFunc    string
		wantParams  []string
		wantTimeout time.Duration
		wantMemory  int64
	}{
		{name: "multipart", path: "/api/v1/execute",
			build: func(t *testing.T) (io.Reader, string) {
				return testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, map[string]string{"stdin": "hello", "args": `["-v","x y"]`, "env": `{"K":"V"}`,
					"timeout": "500ms", "memory": "16MiB"})
			},
			wantWasm: wasmHeader, wantStdin: "hello", wantArgs: []string{"-v", "x y"}, wantEnv: map[string]string{"K": "V"},
			wantTimeout: 500 * time.Millisecond, wantMemory: 16 * wasmwiz.MiB},
		{name: "multipart stdin as a file, function and params", path: "/api/v1/execute",
			build: func(t *testing.T) (io.Reader, string) {
				return testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader, "stdin": []byte("from file")},
					map[string]string{"function": "add", "params": "2, 3"})
			},
			wantWasm: wasmHeader, wantStdin: "from file", wantFunc: "add", wantParams: []string{"2", "3"},
			wantTimeout: 5 * time.Second, wantMemory: 128 * wasmwiz.MiB},
		{name: "json", path: "/api/v1/execute",
			build: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","stdin":"in","args":["a"],"env":{"A":"1"},
					"function":"f","params":[1,"nan",-2.5],"timeout":"2s","memory":"1GiB"}`), "application/json"
			},
			wantWasm: wasmHeader, wantStdin: "in", wantArgs: []string{"a"}, wantEnv: map[string]string{"A": "1"},
			wantFunc: "f", wantParams: []string{"1", "nan", "-2.5"}, wantTimeout: 2 * time.Second, wantMemory: 128 * wasmwiz.MiB},
		{name: "json stdin_base64 and module_id", path: "/api/v1/execute",
			build: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"module_id":"` + storedID + `","stdin_base64":"/wA="}`), "application/json; charset=utf-8"
			},
			wantModule: storedID, wantWasm: wasmHeader, wantStdin: "\xff\x00", wantTimeout: 5 * time.Second, wantMemory: 128 * wasmwiz.MiB},
		{name: "raw wasm with query", path: "/api/v1/execute?stdin=q&arg=1&arg=two&env=X%3Dy&function=main&params=7&timeout=1s",
			build:    func(t *testing.T) (io.Reader, string) { return bytes.NewReader(wasmHeader), "application/wasm" },
			wantWasm: wasmHeader, wantStdin: "q", wantArgs: []string{"1", "two"}, wantEnv: map[string]string{"X": "y"},
			wantFunc: "main", wantParams: []string{"7"}, wantTimeout: time.Second, wantMemory: 128 * wasmwiz.MiB},
		{name: "stored module, raw stdin body", path: "/api/v1/modules/" + storedID + "/execute?arg=z",
			build: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader("piped"), "application/octet-stream"
			},
			wantModule: storedID, wantWasm: wasmHeader, wantStdin: "piped", wantArgs: []string{"z"},
			wantTimeout: 5 * time.Second, wantMemory: 128 * wasmwiz.MiB},
		{name: "stored module, json", path: "/api/v1/modules/" + storedID + "/execute",
			build: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"stdin":"j"}`), "application/json"
			},
			wantModule: storedID, wantWasm: wasmHeader, wantStdin: "j", wantTimeout: 5 * time.Second, wantMemory: 128 * wasmwiz.MiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.modules.FindModuleWasmFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				if id != storedID || wasmwiz.UserFromContext(ctx).ID != theUser.ID {
					return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
				}
				return &wasmwiz.Module{ID: id, Name: "stored.wasm", SHA256: "abc", SizeBytes: int64(len(wasmHeader)), Wasm: wasmHeader}, nil
			}
			f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				m, err := f.modules.FindModuleWasmFn(ctx, id)
				if err == nil {
					m.Wasm = nil
				}
				return m, err
			}
			body, ct := tt.build(t)
			res := f.do(request{method: "POST", path: tt.path, key: userKey, body: body, contentType: ct})
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			got := f.lastRun()
			if !bytes.Equal(got.Wasm, tt.wantWasm) || string(got.Stdin) != tt.wantStdin || got.Function != tt.wantFunc {
				t.Errorf("engine got wasm %q stdin %q function %q", got.Wasm, got.Stdin, got.Function)
			}
			if fmt.Sprint(got.Args) != fmt.Sprint(tt.wantArgs) || fmt.Sprint(got.Params) != fmt.Sprint(tt.wantParams) ||
				fmt.Sprint(got.Env) != fmt.Sprint(tt.wantEnv) {
				t.Errorf("engine got args %q params %q env %v", got.Args, got.Params, got.Env)
			}
			if got.Limits.Timeout != tt.wantTimeout || got.Limits.MaxMemoryBytes != tt.wantMemory {
				t.Errorf("limits %v %d, want %v %d", got.Limits.Timeout, got.Limits.MaxMemoryBytes, tt.wantTimeout, tt.wantMemory)
			}
			var rj api.Result
			if err := json.Unmarshal(res.body, &rj); err != nil {
				t.Fatal(err)
			}
			if !wasmwiz.ValidRunID(rj.ID) || rj.Status != api.StatusOK || string(rj.Stdout) != "out:"+tt.wantStdin {
				t.Errorf("answer %s", res.body)
			}
			runs := f.usage.Runs()
			if len(runs) != 1 || runs[0].ID != rj.ID || runs[0].ModuleID != tt.wantModule || runs[0].APIKeyID != 11 {
				t.Errorf("usage records %+v", runs)
			}
		})
	}
}

func TestExecuteBadRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		path        string
		body        string
		contentType string
		key         string
		status      int
		code        string
	}{
		{name: "unknown json field", body: `{"wasm_base64":"AGFzbQEAAAA=","tier":"enterprise"}`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "bad base64", body: `{"wasm_base64":"!!"}`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "two stdins", body: `{"wasm_base64":"AGFzbQEAAAA=","stdin":"a","stdin_base64":"YQ=="}`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "no module", body: `{}`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "broken json", body: `{"wasm_base64":`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "bad timeout", body: `{"wasm_base64":"AGFzbQEAAAA=","timeout":"soon"}`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "bad memory", body: `{"wasm_base64":"AGFzbQEAAAA=","memory":"lots"}`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "not wasm", body: `{"wasm_base64":"aGVsbG8="}`, contentType: "application/json", status: 400, code: wasmwiz.EINVALID},
		{name: "unsupported type", body: `hello`, contentType: "text/plain", status: 400, code: wasmwiz.EINVALID},
		{name: "unknown query", path: "/api/v1/execute?tier=pro", body: "\x00asm\x01\x00\x00\x00", contentType: "application/wasm", status: 400, code: wasmwiz.EINVALID},
		{name: "another tenant's module", path: "/api/v1/modules/" + wasmwiz.NewModuleID() + "/execute", body: `{}`, contentType: "application/json", key: otherKey, status: 404, code: wasmwiz.ENOTFOUND},
		{name: "garbage module id", path: "/api/v1/modules/nope/execute", body: `{}`, contentType: "application/json", status: 404, code: wasmwiz.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
			}
			path, key := tt.path, tt.key
			if path == "" {
				path = "/api/v1/execute"
			}
			if key == "" {
				key = userKey
			}
			res := f.do(request{method: "POST", path: path, key: key, body: strings.NewReader(tt.body), contentType: tt.contentType})
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			if code := res.errorCode(t); code != tt.code {
				t.Errorf("code = %q, want %q", code, tt.code)
			}
		})
	}
}

func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		decision   wasmwiz.RateDecision
		slotsFull  bool
		status     int
		limit      string
		remaining  string
		reset      string
		retryAfter string
		message    string
	}{
		{name: "allowed", decision: wasmwiz.RateDecision{Allowed: true, Limit: 10, Remaining: 7, ResetAfter: 42500 * time.Millisecond},
			status: 200, limit: "10", remaining: "7", reset: "43"},
		{name: "limited", decision: wasmwiz.RateDecision{Allowed: false, Limit: 10, Remaining: 0, ResetAfter: 59 * time.Second, RetryAfter: 4001 * time.Millisecond},
			status: 429, limit: "10", remaining: "0", reset: "59", retryAfter: "5", message: "rate limit exceeded"},
		{name: "concurrency", decision: wasmwiz.RateDecision{Allowed: true, Limit: 10, Remaining: 3, ResetAfter: time.Second},
			// Refused before the quota is asked (so that it consumes none):
			// no quota decision, so no quota headers.
			slotsFull: true, status: 429, retryAfter: "1", message: "too many runs in flight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.decision, f.slotsFull = tt.decision, tt.slotsFull
			res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			h := res.header
			if h.Get("X-RateLimit-Limit") != tt.limit || h.Get("X-RateLimit-Remaining") != tt.remaining ||
				h.Get("X-RateLimit-Reset") != tt.reset || h.Get("Retry-After") != tt.retryAfter {
				t.Errorf("headers limit %q remaining %q reset %q retry %q", h.Get("X-RateLimit-Limit"),
					h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset"), h.Get("Retry-After"))
			}
			if tt.message != "" && !strings.Contains(string(res.body), tt.message) {
				t.Errorf("answer %s, want %q", res.body, tt.message)
			}
			if tt.status != 200 && f.runCount() != 0 {
				t.Error("the engine ran a refused request")
			}
		})
	}
}

func TestSaturation503(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) { o.MaxConcurrentRuns, o.QueueSize, o.QueueTimeout = 1, 0, time.Hour })
	started, gate := make(chan struct{}), testenv.NewGate(t)
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		close(started)
		if err := gate.Wait(ctx); err != nil {
			return nil, err
		}
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}
	first := make(chan *response, 1)
	go func() {
		first <- f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
	}()
	testenv.Recv(t, started, "the first run to reach the engine")
	res := f.do(request{method: "POST", path: "/api/v1/execute", key: otherKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
	gate.Open()
	if res.status != 503 || res.header.Get("Retry-After") != "1" || res.errorCode(t) != wasmwiz.EUNAVAILABLE {
		t.Errorf("second run: status %d Retry-After %q: %s", res.status, res.header.Get("Retry-After"), res.body)
	}
	if r := testenv.Recv(t, first, "the first run's answer"); r.status != 200 {
		t.Errorf("first run: status %d: %s", r.status, r.body)
	}
	metrics := f.do(request{method: "GET", path: "/metrics"})
	if !bytes.Contains(metrics.body, []byte("wasmwiz_saturation_rejections_total 1")) {
		t.Error("saturation not counted in /metrics")
	}
}

// TestSaturationShedsBeforeWork: while the replica's run gate is full, a
// run is refused (503, Retry-After) before anything is spent on it: no key
// lookup, no rate limiter, no body read; whoever asks, with a good key, a
// bad one or none, on every execute route. Other routes are still served.
func TestSaturationShedsBeforeWork(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) { o.MaxConcurrentRuns, o.QueueSize, o.QueueTimeout = 1, 0, time.Hour })
	started, gate := make(chan struct{}), testenv.NewGate(t)
	var once sync.Once
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		once.Do(func() { close(started) })
		if err := gate.Wait(ctx); err != nil {
			return nil, err
		}
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}
	var authCalls, limiterCalls atomic.Int64
	auth, allow, acquire := f.keys.AuthenticateFn, f.limiter.AllowFn, f.limiter.AcquireFn
	f.keys.AuthenticateFn = func(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		authCalls.Add(1)
		return auth(ctx, plaintext)
	}
	f.limiter.AllowFn = func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
		limiterCalls.Add(1)
		return allow(ctx, key, limits)
	}
	f.limiter.AcquireFn = func(ctx context.Context, key string, max int, ttl time.Duration) (func(), bool, error) {
		limiterCalls.Add(1)
		return acquire(ctx, key, max, ttl)
	}
	first := make(chan *response, 1)
	go func() {
		first <- f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
	}()
	testenv.Recv(t, started, "the first run to reach the engine")
	auths, limits := authCalls.Load(), limiterCalls.Load()
	for _, req := range []request{
		{method: "POST", path: "/api/v1/execute", key: otherKey, body: &unreadBody{}, contentType: "application/wasm"},
		{method: "POST", path: "/api/v1/execute", key: unknownKey, body: &unreadBody{}, contentType: "application/json"},
		{method: "POST", path: "/api/v1/execute", body: &unreadBody{}, contentType: "application/wasm"},
		{method: "POST", path: "/api/execute", key: otherKey, body: &unreadBody{}, contentType: "multipart/form-data; boundary=x"},
		{method: "POST", path: "/api/v1/modules/" + wasmwiz.NewModuleID() + "/execute", key: otherKey, body: &unreadBody{}},
	} {
		res := f.do(req)
		if res.status != 503 || res.header.Get("Retry-After") != "1" {
			t.Errorf("%s %s (key %q) while saturated: %d, Retry-After %q: %s", req.method, req.path, req.key, res.status, res.header.Get("Retry-After"), res.body)
		}
		if b := req.body.(*unreadBody); b.read {
			t.Errorf("%s: the body of a shed request was read", req.path)
		}
	}
	if authCalls.Load() != auths || limiterCalls.Load() != limits {
		t.Errorf("shed requests cost %d key lookups and %d limiter calls, want none", authCalls.Load()-auths, limiterCalls.Load()-limits)
	}
	if res := f.do(request{method: "GET", path: "/api/v1/me", key: otherKey}); res.status != 200 {
		t.Errorf("GET /api/v1/me while saturated: %d", res.status)
	}
	gate.Open()
	if r := testenv.Recv(t, first, "the first run's answer"); r.status != 200 {
		t.Errorf("first run: status %d: %s", r.status, r.body)
	}
	if res := f.do(request{method: "POST", path: "/api/v1/execute", key: otherKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"}); res.status != 200 {
		t.Errorf("a run once the gate has room: %d %s", res.status, res.body)
	}
}

// unreadBody is a request body that notes whether anyone read it.
type unreadBody struct{ read bool }

func (b *unreadBody) Read(p []byte) (int, error) {
	b.read = true
	return 0, io.EOF
}

// FuzzExecute sends arbitrary bodies and query strings to the execute route
// in each body format: the answer is never a 500 (nothing panics, nothing is
// an unexpected failure), and always JSON.
func FuzzExecute(f *testing.F) {
	f.Add([]byte(`{"wasm_base64":"AGFzbQEAAAA=","params":[1,"x"],"env":{"a":"b"}}`), "application/json", "")
	f.Add([]byte("\x00asm\x01\x00\x00\x00"), "application/wasm", "stdin=x&arg=1&params=1,2&timeout=1s&memory=1MiB")
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"wasm\"\r\n\r\n\x00asm\x01\x00\x00\x00\r\n--b--\r\n"),
		"multipart/form-data; boundary=b", "")
	f.Add([]byte(`{"stdin_base64":"!!","timeout":"-1s"}`), "application/json", "env=%")
	f.Add([]byte(` {"wasm_base64" : "AGFzbQEAAAA=", "stdin_base64":"\/wA=","args":["a","b"],"files":[{"path":"a","content_base64":"YQ=="}],"stdin":null} `),
		"application/json", "")
	f.Add([]byte(`{"w\u0061sm_base64":"AGFzbQEAAAA=","archive_base64":null,"async":false}`), "application/json", "")
	f.Fuzz(func(t *testing.T, body []byte, contentType, query string) {
		fx := newFixture(t, nil)
		path := "/api/v1/execute"
		if q, _ := url.ParseQuery(query); len(q) > 0 {
			path += "?" + q.Encode() // what a client could send
		}
		res := fx.do(request{method: "POST", path: path, key: userKey, body: bytes.NewReader(body), contentType: contentType,
			header: map[string]string{}})
		if res.status >= 500 {
			t.Fatalf("status %d for %q %q %q: %s", res.status, body, contentType, query, res.body)
		}
		res.json(t)
	})
}
