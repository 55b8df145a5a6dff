package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// Keys of the fixture's users.
var (
	userKey     = "ww_" + strings.Repeat("u", 40)
	otherKey    = "ww_" + strings.Repeat("o", 40)
	adminKey    = "ww_" + strings.Repeat("a", 40)
	disabledKey = "ww_" + strings.Repeat("d", 40)
	unknownKey  = "ww_" + strings.Repeat("x", 40)
)

var (
	theUser  = &wasmwiz.User{ID: 1, Email: "user@x.io", Role: wasmwiz.RoleUser, Tier: wasmwiz.TierFree}
	theOther = &wasmwiz.User{ID: 3, Email: "other@x.io", Role: wasmwiz.RoleUser, Tier: wasmwiz.TierBasic}
	theAdmin = &wasmwiz.User{ID: 2, Email: "admin@x.io", Role: wasmwiz.RoleAdmin, Tier: wasmwiz.TierPro}
)

var wasmHeader = []byte("\x00asm\x01\x00\x00\x00")

// fixture is a Server on mocks plus what reached them.
type fixture struct {
	t       *testing.T
	opts    wwhttp.Options
	srv     *wwhttp.Server
	engine  *mock.Engine
	limiter *mock.RateLimiter
	modules *mock.ModuleService
	keys    *mock.APIKeyService
	users   *mock.UserService
	tiers   *mock.TierService
	runs    *mock.RunService
	usage   *mock.UsageRecorder
	logBuf  *syncBuffer

	mu        sync.Mutex
	ran       []*wasmwiz.RunRequest
	rateKeys  []string
	decision  wasmwiz.RateDecision
	slotsFull bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func findTier(name string) (*wasmwiz.Tier, error) {
	for _, t := range wasmwiz.DefaultTiers() {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "tier %q not found", name)
}

// newFixture builds a server; change opts in mod before it is built.
func newFixture(t *testing.T, mod func(o *wwhttp.Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, usage: &mock.UsageRecorder{}, logBuf: &syncBuffer{}}
	f.decision = wasmwiz.RateDecision{Allowed: true, Limit: 10, Remaining: 9, ResetAfter: 60 * time.Second}
	f.engine = &mock.Engine{
		RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
			f.mu.Lock()
			f.ran = append(f.ran, req)
			f.mu.Unlock()
			if !bytes.HasPrefix(req.Wasm, []byte("\x00asm")) {
				return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "not a WebAssembly module")
			}
			return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: append([]byte("out:"), req.Stdin...),
				Duration: 3 * time.Millisecond, MemoryPeakBytes: 65536, CompileCached: true,
				Module: wasmwiz.ModuleInfo{SHA256: "abc", SizeBytes: int64(len(req.Wasm)), WASI: true, Entry: "_start"}}, nil
		},
		InspectFn: func(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error) {
			if !bytes.HasPrefix(wasm, []byte("\x00asm")) {
				return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "not a WebAssembly module")
			}
			return &wasmwiz.Inspection{SHA256: "abc", SizeBytes: int64(len(wasm)), WASI: true, Entry: "_start"}, nil
		},
	}
	f.limiter = &mock.RateLimiter{
		AllowFn: func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.rateKeys = append(f.rateKeys, key)
			return f.decision, nil
		},
		AcquireFn: func(ctx context.Context, key string, max int, ttl time.Duration) (func(), bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.slotsFull {
				return nil, false, nil
			}
			return func() {}, true, nil
		},
	}
	f.keys = &mock.APIKeyService{AuthenticateFn: func(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		switch plaintext {
		case userKey:
			return theUser, &wasmwiz.APIKey{ID: 11, UserID: 1}, nil
		case otherKey:
			return theOther, &wasmwiz.APIKey{ID: 13, UserID: 3}, nil
		case adminKey:
			return theAdmin, &wasmwiz.APIKey{ID: 12, UserID: 2}, nil
		}
		return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "unknown key %s", plaintext)
	}}
	f.tiers = &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) { return findTier(name) }}
	f.modules = &mock.ModuleService{}
	f.users = &mock.UserService{}
	f.runs = &mock.RunService{}
	f.opts = wwhttp.Options{
		Users: f.users, Keys: f.keys, Tiers: f.tiers, Modules: f.modules, Runs: f.runs,
		Engine: f.engine, Limiter: f.limiter, Usage: f.usage,
		Auth:   true,
		Logger: slog.New(slog.NewJSONHandler(f.logBuf, nil)),
	}
	if mod != nil {
		mod(&f.opts)
	}
	srv, err := wwhttp.NewServer(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	return f
}

// request is one request to the fixture.
type request struct {
	method, path string
	key          string // Bearer
	header       map[string]string
	body         io.Reader
	contentType  string
	remoteAddr   string
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, r.body)
	}
	return m
}

func (r *response) errorCode(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	if e == nil {
		t.Fatalf("no error object in %s", r.body)
	}
	code, _ := e["code"].(string)
	return code
}

func (f *fixture) do(req request) *response {
	f.t.Helper()
	body := req.body
	if body == nil {
		body = http.NoBody
	}
	r := httptest.NewRequest(req.method, req.path, body)
	if req.key != "" {
		r.Header.Set("Authorization", "Bearer "+req.key)
	}
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	if req.remoteAddr != "" {
		r.RemoteAddr = req.remoteAddr
	}
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	return &response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

func (f *fixture) lastRun() *wasmwiz.RunRequest {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ran) == 0 {
		f.t.Fatal("the engine did not run")
	}
	return f.ran[len(f.ran)-1]
}

func (f *fixture) runCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ran)
}

func TestErrorTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"invalid", wasmwiz.Errorf(wasmwiz.EINVALID, "bad"), 400, wasmwiz.EINVALID},
		{"unauthorized", wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "who"), 401, wasmwiz.EUNAUTHORIZED},
		{"forbidden", wasmwiz.Errorf(wasmwiz.EFORBIDDEN, "no"), 403, wasmwiz.EFORBIDDEN},
		{"not found", wasmwiz.Errorf(wasmwiz.ENOTFOUND, "gone"), 404, wasmwiz.ENOTFOUND},
		{"conflict", wasmwiz.Errorf(wasmwiz.ECONFLICT, "taken"), 409, wasmwiz.ECONFLICT},
		{"too large", wasmwiz.Errorf(wasmwiz.ETOOLARGE, "big"), 413, wasmwiz.ETOOLARGE},
		{"rate limit", wasmwiz.Errorf(wasmwiz.ERATELIMIT, "slow down"), 429, wasmwiz.ERATELIMIT},
		{"unavailable", wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "later"), 503, wasmwiz.EUNAVAILABLE},
		{"internal", wasmwiz.Errorf(wasmwiz.EINTERNAL, "oops"), 500, wasmwiz.EINTERNAL},
		{"uncoded", fmt.Errorf("pq: password authentication failed for secret-db-host"), 500, wasmwiz.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) { return nil, tt.err }
			res := f.do(request{method: "GET", path: "/api/v1/modules/" + wasmwiz.NewModuleID(), key: userKey})
			if res.status != tt.status {
				t.Errorf("status = %d, want %d", res.status, tt.status)
			}
			if code := res.errorCode(t); code != tt.code {
				t.Errorf("code = %q, want %q", code, tt.code)
			}
			if tt.code == wasmwiz.EINTERNAL {
				if bytes.Contains(res.body, []byte("secret-db-host")) || bytes.Contains(res.body, []byte("oops")) {
					t.Errorf("internal detail sent: %s", res.body)
				}
				if !strings.Contains(f.logBuf.String(), "internal error") {
					t.Error("internal error not logged")
				}
			}
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		auth   bool
		method string
		path   string
		header map[string]string
		key    string
		status int
	}{
		{name: "no key", auth: true, method: "GET", path: "/api/v1/modules", status: 401},
		{name: "garbage key", auth: true, method: "GET", path: "/api/v1/modules", key: "hunter2", status: 401},
		{name: "unknown key", auth: true, method: "GET", path: "/api/v1/modules", key: unknownKey, status: 401},
		{name: "disabled user", auth: true, method: "GET", path: "/api/v1/modules", key: disabledKey, status: 401},
		{name: "not bearer", auth: true, method: "GET", path: "/api/v1/modules", header: map[string]string{"Authorization": "Basic " + userKey}, status: 401},
		{name: "bearer", auth: true, method: "GET", path: "/api/v1/modules", key: userKey, status: 200},
		{name: "x-api-key", auth: true, method: "GET", path: "/api/v1/modules", header: map[string]string{"X-API-Key": userKey}, status: 200},
		{name: "user on admin route", auth: true, method: "GET", path: "/api/v1/admin/users", key: userKey, status: 403},
		{name: "nobody on admin route", auth: true, method: "GET", path: "/api/v1/admin/users", status: 401},
		{name: "admin on admin route", auth: true, method: "GET", path: "/api/v1/admin/users", key: adminKey, status: 200},
		{name: "health needs nothing", auth: true, method: "GET", path: "/healthz", status: 200},
		{name: "bad key ignored off the API", auth: true, method: "GET", path: "/healthz", key: "hunter2", status: 200},
		{name: "openapi needs nothing", auth: true, method: "GET", path: "/api/openapi.json", status: 200},
		{name: "execute needs a key", auth: true, method: "POST", path: "/api/v1/execute", status: 401},
		{name: "auth off: anonymous execute", auth: false, method: "POST", path: "/api/v1/execute", status: 200},
		{name: "auth off: anonymous legacy", auth: false, method: "POST", path: "/api/execute", status: 200},
		{name: "auth off: modules still need a key", auth: false, method: "GET", path: "/api/v1/modules", status: 401},
		{name: "auth off: bad key still refused", auth: false, method: "POST", path: "/api/v1/execute", key: unknownKey, status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) { o.Auth = tt.auth })
			f.keys.AuthenticateFn = wrapDisabled(f.keys.AuthenticateFn)
			f.modules.FindModulesFn = func(ctx context.Context, filter wasmwiz.ModuleFilter) ([]*wasmwiz.Module, int, error) {
				return nil, 0, nil
			}
			f.users.FindUsersFn = func(ctx context.Context, filter wasmwiz.UserFilter) ([]*wasmwiz.User, int, error) {
				return []*wasmwiz.User{theUser}, 1, nil
			}
			req := request{method: tt.method, path: tt.path, key: tt.key, header: tt.header}
			if tt.path == "/api/v1/execute" {
				req.body, req.contentType = bytes.NewReader(wasmHeader), "application/wasm"
			}
			if tt.path == "/api/execute" {
				req.body, req.contentType = testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, map[string]string{"input": "x"})
			}
			res := f.do(req)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			if tt.status == 401 && res.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// wrapDisabled makes disabledKey authenticate as a disabled user, as a store
// that forgot to check would.
func wrapDisabled(next func(context.Context, string) (*wasmwiz.User, *wasmwiz.APIKey, error)) func(context.Context, string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
	return func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		if p == disabledKey {
			return &wasmwiz.User{ID: 9, Role: wasmwiz.RoleAdmin, Tier: "free", Disabled: true}, &wasmwiz.APIKey{ID: 19}, nil
		}
		return next(ctx, p)
	}
}

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
				return &wasmwiz.Module{ID: id, Name: "stored.wasm", SHA256: "abc", Wasm: wasmHeader}, nil
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
			var rj wasmwiz.ResultJSON
			if err := json.Unmarshal(res.body, &rj); err != nil {
				t.Fatal(err)
			}
			if !wasmwiz.ValidRunID(rj.ID) || rj.Status != wasmwiz.StatusOK || string(rj.Stdout) != "out:"+tt.wantStdin {
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
			f.modules.FindModuleWasmFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
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

func TestLegacyExecute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		fields     map[string]string
		files      map[string][]byte
		result     *wasmwiz.Result
		status     int
		wantOutput any
		wantError  string // substring; "" means null
	}{
		{name: "wasm and input", fields: map[string]string{"input": "abc"}, files: map[string][]byte{"wasm": wasmHeader},
			status: 200, wantOutput: "out:abc"},
		{name: "wasm_file and input_data", fields: map[string]string{"input_data": "xyz"}, files: map[string][]byte{"wasm_file": wasmHeader},
			status: 200, wantOutput: "out:xyz"},
		{name: "unknown fields ignored", fields: map[string]string{"input": "1", "api_version": "0.1"}, files: map[string][]byte{"wasm": wasmHeader},
			status: 200, wantOutput: "out:1"},
		{name: "trap", files: map[string][]byte{"wasm": wasmHeader},
			result: &wasmwiz.Result{Status: wasmwiz.StatusTrap, Trap: "integer divide by zero"}, status: 200, wantError: "integer divide by zero"},
		{name: "non-zero exit", files: map[string][]byte{"wasm": wasmHeader},
			result: &wasmwiz.Result{Status: wasmwiz.StatusExit, ExitCode: 3, Stderr: []byte("boom\n")}, status: 200, wantError: "exited with code 3: boom"},
		{name: "no wasm", fields: map[string]string{"input": "1"}, status: 400, wantError: "no wasm file"},
		{name: "not wasm", files: map[string][]byte{"wasm": []byte("hello")}, status: 400, wantError: "not a WebAssembly module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			if tt.result != nil {
				f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) { return tt.result, nil }
			}
			body, ct := testenv.Multipart(t, tt.files, tt.fields)
			res := f.do(request{method: "POST", path: "/api/execute", key: userKey, body: body, contentType: ct})
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			m := res.json(t)
			if len(m) != 2 {
				t.Errorf("answer has keys other than output and error: %s", res.body)
			}
			if tt.wantError == "" {
				if m["error"] != nil || m["output"] != tt.wantOutput {
					t.Errorf("answer %s, want output %v and error null", res.body, tt.wantOutput)
				}
			} else {
				e, _ := m["error"].(string)
				if m["output"] != nil || !strings.Contains(e, tt.wantError) {
					t.Errorf("answer %s, want output null and error containing %q", res.body, tt.wantError)
				}
			}
		})
	}
}

func TestLegacyExecuteRateLimited(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.decision = wasmwiz.RateDecision{Allowed: false, Limit: 10, Remaining: 0, ResetAfter: 30 * time.Second, RetryAfter: 2100 * time.Millisecond}
	body, ct := testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, nil)
	res := f.do(request{method: "POST", path: "/api/execute", key: userKey, body: body, contentType: ct})
	if res.status != 429 || res.header.Get("Retry-After") != "3" || res.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("status %d headers %v", res.status, res.header)
	}
	m := res.json(t)
	if m["output"] != nil || !strings.Contains(fmt.Sprint(m["error"]), "rate limit") {
		t.Errorf("answer %s", res.body)
	}
}

// endlessReader yields bytes forever and counts how many were read.
type endlessReader struct {
	mu   sync.Mutex
	n    int64
	head []byte
}

func (r *endlessReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		r.n += int64(n)
		return n, nil
	}
	for i := range p {
		p[i] = 'a'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func (r *endlessReader) read() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	free, _ := findTier(wasmwiz.TierFree)
	boundary := "b0undary"
	multipartHead := []byte("--" + boundary + "\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"m.wasm\"\r\n" +
		"Content-Type: application/wasm\r\n\r\n\x00asm\x01\x00\x00\x00")
	tests := []struct {
		name          string
		path          string
		contentType   string
		head          []byte
		contentLength int64 // declared; -1 for a streamed body of unknown length
		maxRead       int64 // the server must stop reading by here
	}{
		{name: "raw wasm, declared too long", path: "/api/v1/execute", contentType: "application/wasm",
			contentLength: free.MaxModuleBytes + 1, maxRead: 0},
		{name: "raw wasm, streamed", path: "/api/v1/execute", contentType: "application/wasm",
			contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
		{name: "multipart module part, streamed", path: "/api/v1/execute", contentType: "multipart/form-data; boundary=" + boundary,
			head: multipartHead, contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
		{name: "json, streamed", path: "/api/v1/execute", contentType: "application/json",
			head: []byte(`{"wasm_base64":"`), contentLength: -1, maxRead: (free.MaxModuleBytes+free.MaxStdinBytes)*4/3 + 2<<20},
		{name: "module upload, streamed", path: "/api/v1/modules", contentType: "application/wasm",
			contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
		{name: "key creation, streamed", path: "/api/v1/keys", contentType: "application/json",
			head: []byte(`{"name":"`), contentLength: -1, maxRead: 1<<20 + 64*1024},
		{name: "legacy, streamed", path: "/api/execute", contentType: "multipart/form-data; boundary=" + boundary,
			head: multipartHead, contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			body := &endlessReader{head: append([]byte(nil), tt.head...)}
			r := httptest.NewRequest("POST", tt.path, body)
			r.ContentLength = tt.contentLength
			r.Header.Set("Content-Type", tt.contentType)
			r.Header.Set("Authorization", "Bearer "+userKey)
			w := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(w, r)
			if w.Code != 413 {
				t.Fatalf("status = %d, want 413: %s", w.Code, w.Body.Bytes())
			}
			if tt.path != "/api/execute" && !strings.Contains(w.Body.String(), wasmwiz.ETOOLARGE) {
				t.Errorf("answer %s", w.Body.Bytes())
			}
			if got := body.read(); got > tt.maxRead {
				t.Errorf("server read %d bytes of an endless body, want at most %d", got, tt.maxRead)
			}
			if f.runCount() != 0 {
				t.Error("the engine ran")
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
	started, unblock := make(chan struct{}), make(chan struct{})
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		close(started)
		<-unblock
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}
	first := make(chan *response, 1)
	go func() {
		first <- f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
	}()
	<-started
	res := f.do(request{method: "POST", path: "/api/v1/execute", key: otherKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
	close(unblock)
	if res.status != 503 || res.header.Get("Retry-After") != "1" || res.errorCode(t) != wasmwiz.EUNAVAILABLE {
		t.Errorf("second run: status %d Retry-After %q: %s", res.status, res.header.Get("Retry-After"), res.body)
	}
	if r := <-first; r.status != 200 {
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
	started, unblock := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		once.Do(func() { close(started) })
		<-unblock
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
	<-started
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
	close(unblock)
	if r := <-first; r.status != 200 {
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

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name   string
		remote string
		xff    string
		want   string
	}{
		{name: "direct", remote: "192.0.2.1:5555", want: "ip:192.0.2.1"},
		{name: "forged from outside", remote: "192.0.2.1:5555", xff: "203.0.113.9", want: "ip:192.0.2.1"},
		{name: "via trusted proxy", remote: "10.1.2.3:80", xff: "203.0.113.9", want: "ip:203.0.113.9"},
		{name: "client forges left of proxy", remote: "10.1.2.3:80", xff: "1.1.1.1, 203.0.113.9", want: "ip:203.0.113.9"},
		{name: "two trusted hops", remote: "10.1.2.3:80", xff: "203.0.113.9, 10.9.9.9", want: "ip:203.0.113.9"},
		{name: "garbage from proxy", remote: "10.1.2.3:80", xff: "not-an-ip", want: "ip:10.1.2.3"},
		{name: "ipv6", remote: "[2001:db8::1]:443", want: "ip:2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) { o.Auth, o.TrustedProxies = false, trusted })
			hdr := map[string]string{}
			if tt.xff != "" {
				hdr["X-Forwarded-For"] = tt.xff
			}
			res := f.do(request{method: "POST", path: "/api/v1/execute", body: bytes.NewReader(wasmHeader),
				contentType: "application/wasm", remoteAddr: tt.remote, header: hdr})
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			if len(f.rateKeys) != 1 || f.rateKeys[0] != tt.want {
				t.Errorf("rate keys %v, want [%s]", f.rateKeys, tt.want)
			}
		})
	}
}

func TestRequestIDAndHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.do(request{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "abc-123"}})
	if res.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("X-Request-Id = %q, want the caller's", res.header.Get("X-Request-Id"))
	}
	res = f.do(request{method: "GET", path: "/api/v1/nothing", header: map[string]string{"X-Request-Id": "bad id\r\nx"}})
	id := res.header.Get("X-Request-Id")
	if id == "" || strings.ContainsAny(id, " \r\n") {
		t.Errorf("X-Request-Id = %q, want a fresh one", id)
	}
	for h, want := range map[string]string{
		"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		"Cache-Control": "no-store",
	} {
		if got := res.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if res.status != 404 || res.errorCode(t) != wasmwiz.ENOTFOUND {
		t.Errorf("unknown route: %d %s", res.status, res.body)
	}
	// One access line per request, with the route pattern and the id.
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logBuf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d access lines, want 2: %s", len(lines), f.logBuf.String())
	}
	if lines[0]["route"] != "GET /healthz" || lines[0]["request_id"] != "abc-123" || lines[0]["status"] != float64(200) {
		t.Errorf("access line %v", lines[0])
	}
	if lines[1]["route"] != "unmatched" || lines[1]["status"] != float64(404) {
		t.Errorf("access line %v", lines[1])
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.do(request{method: "PUT", path: "/api/v1/modules", key: userKey})
	if res.status != 405 || !strings.Contains(res.header.Get("Allow"), "GET") || !strings.Contains(res.header.Get("Allow"), "POST") {
		t.Errorf("status %d Allow %q", res.status, res.header.Get("Allow"))
	}
	res.errorCode(t)
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		redisErr error
		status   int
		down     string
	}{
		{name: "all up", status: 200},
		{name: "redis down", redisErr: fmt.Errorf("dial tcp: connection refused"), status: 503, down: "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) {
				o.Readiness = []wwhttp.ReadinessCheck{
					{Name: "database", Ping: func(ctx context.Context) error { return nil }},
					{Name: "redis", Ping: func(ctx context.Context) error { return tt.redisErr }},
				}
			})
			res := f.do(request{method: "GET", path: "/readyz"})
			if res.status != tt.status {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			m := res.json(t)
			checks, _ := m["checks"].(map[string]any)
			if checks["database"] != "ok" {
				t.Errorf("checks %v", checks)
			}
			if tt.down != "" {
				if checks[tt.down] != "down" || res.errorCode(t) != wasmwiz.EUNAVAILABLE ||
					!strings.Contains(string(res.body), "not ready: "+tt.down) {
					t.Errorf("answer %s", res.body)
				}
				if strings.Contains(string(res.body), "connection refused") {
					t.Error("internal detail sent")
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) {
		o.MaxConcurrentRuns, o.QueueSize = 4, 2
	})
	f.decision.Fallback = true
	for range 2 {
		res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
		if res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
	}
	res := f.do(request{method: "GET", path: "/metrics"})
	if res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	for _, want := range []string{
		`wasmwiz_http_requests_total{method="POST",route="POST /api/v1/execute",status="200"} 2`,
		`wasmwiz_http_request_duration_seconds_count{route="POST /api/v1/execute"} 2`,
		`wasmwiz_http_requests_in_flight 1`, // the scrape itself
		`wasmwiz_runs_total{status="ok",tier="free"} 2`,
		`wasmwiz_run_duration_seconds_count{tier="free"} 2`,
		`wasmwiz_run_memory_peak_bytes_count{tier="free"} 2`,
		`wasmwiz_compile_cache_hits_total 2`,
		`wasmwiz_compile_cache_misses_total 0`,
		`wasmwiz_ratelimit_decisions_total{result="allowed"} 2`,
		`wasmwiz_ratelimit_decisions_total{result="fallback"} 2`,
		`wasmwiz_ratelimit_decisions_total{result="limited"} 0`,
		`wasmwiz_run_slots 4`,
		`wasmwiz_runs_in_flight 0`,
		`wasmwiz_run_queue_length 0`,
		`wasmwiz_host_cpu_seconds_total{mode="idle"}`,
		`wasmwiz_host_memory_total_bytes`,
		`wasmwiz_host_memory_available_bytes`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestMetricsToken: with a token, /metrics answers only a request that
// carries it (on the API address and the separate one alike).
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) { o.MetricsToken = "s3cret" })
	for _, tt := range []struct {
		name, auth string
		status     int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"an API key", "Bearer " + userKey, 401},
		{"the token", "Bearer s3cret", 200},
	} {
		res := f.do(request{method: "GET", path: "/metrics", header: map[string]string{"Authorization": tt.auth}})
		if res.status != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, res.status, tt.status)
		}
		if tt.status == 200 && !bytes.Contains(res.body, []byte("wasmwiz_http_requests_total")) {
			t.Errorf("%s: no metrics in %s", tt.name, res.body)
		}
		if tt.status == 401 && (res.header.Get("WWW-Authenticate") == "" || bytes.Contains(res.body, []byte("wasmwiz_"))) {
			t.Errorf("%s: refused without a challenge, or with metrics: %s", tt.name, res.body)
		}
	}
	w := httptest.NewRecorder()
	f.srv.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 401 {
		t.Errorf("MetricsHandler without the token: %d, want 401", w.Code)
	}
}

func TestSeparateMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(o *wwhttp.Options) { o.SeparateMetrics, o.Registerer = true, reg })
	if res := f.do(request{method: "GET", path: "/metrics"}); res.status != 404 {
		t.Errorf("/metrics on the API address: %d, want 404", res.status)
	}
	w := httptest.NewRecorder()
	f.srv.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "wasmwiz_http_requests_total") {
		t.Errorf("MetricsHandler: %d", w.Code)
	}
	// A second server on the same registry is refused, not a panic.
	if _, err := wwhttp.NewServer(wwhttp.Options{Registerer: reg}); err == nil {
		t.Error("a second server registered the same metrics")
	}
}

// TestLegacyErrorsKeepTheLegacyShape: every failure on the original route,
// also those the middleware answers before the handler runs, is
// {"output":null,"error":"…"}, which the original service's clients parse.
func TestLegacyErrorsKeepTheLegacyShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		key         string
		body        io.Reader
		contentType string
		status      int
		message     string
	}{
		{name: "no key", status: 401, message: "authentication required"},
		{name: "unknown key", key: unknownKey, status: 401, message: "invalid API key"},
		{name: "malformed key", key: "hunter2", status: 401, message: "invalid API key"},
		{name: "not multipart", key: userKey, body: strings.NewReader("{}"), contentType: "application/json", status: 400, message: "multipart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			res := f.do(request{method: "POST", path: "/api/execute", key: tt.key, body: tt.body, contentType: tt.contentType})
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			var got map[string]any
			if err := json.Unmarshal(res.body, &got); err != nil {
				t.Fatalf("answer is not JSON: %s", res.body)
			}
			msg, _ := got["error"].(string)
			if len(got) != 2 || got["output"] != nil || !strings.Contains(msg, tt.message) {
				t.Fatalf("answer %s, want {\"output\":null,\"error\":\"…%s…\"}", res.body, tt.message)
			}
		})
	}
}

// TestDrain: once the server drains for a shutdown, /readyz answers 503
// whatever its checks say, other routes are still served, and every answer
// asks the client to close its connection.
func TestDrain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) {
		o.Readiness = []wwhttp.ReadinessCheck{{Name: "database", Ping: func(ctx context.Context) error { return nil }}}
	})
	if res := f.do(request{method: "GET", path: "/readyz"}); res.status != 200 || res.header.Get("Connection") == "close" {
		t.Fatalf("/readyz before draining: %d, Connection %q", res.status, res.header.Get("Connection"))
	}
	f.srv.Drain()
	res := f.do(request{method: "GET", path: "/readyz"})
	if res.status != 503 || res.errorCode(t) != wasmwiz.EUNAVAILABLE || !strings.Contains(string(res.body), "shutting down") ||
		res.header.Get("Connection") != "close" {
		t.Fatalf("/readyz while draining: %d %s, Connection %q", res.status, res.body, res.header.Get("Connection"))
	}
	res = f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
	if res.status != 200 || res.header.Get("Connection") != "close" {
		t.Fatalf("execute while draining: %d %s, Connection %q", res.status, res.body, res.header.Get("Connection"))
	}
	if res := f.do(request{method: "GET", path: "/healthz"}); res.status != 200 {
		t.Fatalf("/healthz while draining: %d (the process is alive)", res.status)
	}
}

// TestMetricsLabelRefusedRoutes: a request refused by authentication is
// counted under the route it was for, not "unmatched"; a path no route
// matches still is.
func TestMetricsLabelRefusedRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	badKey := "ww_" + strings.Repeat("0", 40)
	for _, r := range []request{
		{method: "GET", path: "/api/v1/me", key: badKey},
		{method: "POST", path: "/api/v1/execute", key: badKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"},
		{method: "GET", path: "/api/v1/modules/mod_x", key: "not-a-key"},
		{method: "GET", path: "/api/v1/nowhere", key: badKey},
	} {
		if res := f.do(r); res.status != 401 {
			t.Fatalf("%s %s: %d, want 401", r.method, r.path, res.status)
		}
	}
	res := f.do(request{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`wasmwiz_http_requests_total{method="GET",route="GET /api/v1/me",status="401"} 1`,
		`wasmwiz_http_requests_total{method="POST",route="POST /api/v1/execute",status="401"} 1`,
		`wasmwiz_http_requests_total{method="GET",route="GET /api/v1/modules/{id}",status="401"} 1`,
		`wasmwiz_http_requests_total{method="GET",route="unmatched",status="401"} 1`,
	} {
		if !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestEvery503SaysWhenToComeBack: a 503 carries Retry-After whoever wrote
// it: a dependency that is down (no hint of its own), /readyz, a draining
// server, and a saturated replica, which keeps its own shorter hint.
func TestEvery503SaysWhenToComeBack(t *testing.T) {
	t.Parallel()
	down := func(ctx context.Context) error { return fmt.Errorf("dial tcp: connection refused") }
	tests := []struct {
		name  string
		setup func(f *fixture)
		req   request
		want  string
	}{
		{name: "store down", req: request{method: "GET", path: "/api/v1/modules/" + wasmwiz.NewModuleID(), key: userKey},
			setup: func(f *fixture) {
				f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
					return nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database unavailable, retry later")
				}
			}, want: "5"},
		{name: "authentication store down", req: request{method: "GET", path: "/api/v1/me", key: userKey},
			setup: func(f *fixture) {
				f.keys.AuthenticateFn = func(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
					return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database unavailable, retry later")
				}
			}, want: "5"},
		{name: "not ready", req: request{method: "GET", path: "/readyz"}, want: "5"},
		{name: "draining", req: request{method: "GET", path: "/readyz"}, setup: func(f *fixture) { f.srv.Drain() }, want: "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) {
				o.Readiness = []wwhttp.ReadinessCheck{{Name: "database", Ping: down}}
			})
			if tt.setup != nil {
				tt.setup(f)
			}
			res := f.do(tt.req)
			if res.status != 503 || res.header.Get("Retry-After") != tt.want {
				t.Fatalf("status %d, Retry-After %q (want 503 with %q): %s", res.status, res.header.Get("Retry-After"), tt.want, res.body)
			}
		})
	}
}
