package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	logBuf  *testenv.Buffer

	mu        sync.Mutex
	ran       []*wasmwiz.RunRequest
	rateKeys  []string
	decision  wasmwiz.RateDecision
	slotsFull bool
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
	f := &fixture{t: t, usage: &mock.UsageRecorder{}, logBuf: &testenv.Buffer{}}
	f.decision = wasmwiz.RateDecision{Allowed: true, Limit: 10, Remaining: 9, ResetAfter: 60 * time.Second}
	f.engine = &mock.Engine{
		RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
			// As an engine that does not hold the module: it reads the
			// bytes of a stored module through the request.
			wasm, err := req.ModuleWasm(ctx)
			if err != nil {
				return nil, err
			}
			got := *req
			got.Wasm = wasm
			f.mu.Lock()
			f.ran = append(f.ran, &got)
			f.mu.Unlock()
			if !bytes.HasPrefix(wasm, []byte("\x00asm")) {
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
	f.modules = &mock.ModuleService{StoredModulesFn: func(ctx context.Context) (wasmwiz.StoredModules, error) {
		return wasmwiz.StoredModules{}, nil // an empty registry; a test sets its own
	}}
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
	length       int64 // Content-Length; 0 keeps httptest's (a bytes or strings reader's length, else -1: streamed)
	contentType  string
	remoteAddr   string
	ctx          context.Context // nil: the background context
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
	return r.errorField(t, "code")
}

func (r *response) errorMessage(t *testing.T) string {
	t.Helper()
	return r.errorField(t, "message")
}

// wantRateLimited fails t unless r is a 429 ERATELIMIT whose Retry-After
// is whole seconds, 1 to maxWait.
func (r *response) wantRateLimited(t *testing.T, what string, maxWait int) {
	t.Helper()
	if r.status != 429 || r.errorCode(t) != wasmwiz.ERATELIMIT {
		t.Fatalf("%s: status %d, want 429 ERATELIMIT: %s", what, r.status, r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > maxWait {
		t.Fatalf("%s: Retry-After %q, want 1-%d seconds", what, r.header.Get("Retry-After"), maxWait)
	}
}

// errorField returns a member of the answer's error object, failing when
// there is none.
func (r *response) errorField(t *testing.T, name string) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	if e == nil {
		t.Fatalf("no error object in %s", r.body)
	}
	v, _ := e[name].(string)
	return v
}

func (f *fixture) do(req request) *response {
	f.t.Helper()
	body := req.body
	if body == nil {
		body = http.NoBody
	}
	r := httptest.NewRequest(req.method, req.path, body)
	if req.length != 0 {
		r.ContentLength = req.length
	}
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
	if req.ctx != nil {
		r = r.WithContext(req.ctx)
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
