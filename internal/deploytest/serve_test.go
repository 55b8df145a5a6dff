package deploytest

import (
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

var adminKeyLine = regexp.MustCompile(`(?i)key.*\b(ww_[A-Za-z0-9_-]{32,})`)

// servedExposition starts the real program as the README does (`wasmwiz
// serve`: embedded SQLite, in-memory limits), has it serve a few requests
// and returns its /metrics. Checking against it also catches a stats
// source (limiter fallback, usage writer, run gate, worker pool) that serve
// forgot to wire into the server.
func servedExposition(t *testing.T) exported {
	t.Helper()
	vars := map[string]string{"WASMWIZ_WORKERS": "2"}
	// With Redis, as in production, so that the limiter's own metrics (which
	// the alert rules use) are exported; a database of its own keeps its
	// counts apart from other tests'.
	if u := redisURL(t); u != "" {
		vars["WASMWIZ_REDIS_URL"] = u
	}
	p := testenv.StartServe(t, vars)
	m := adminKeyLine.FindStringSubmatch(p.Stdout.String())
	if m == nil {
		t.Fatalf("serve did not print the first admin's key on an empty database:\n%s", p.Stdout)
	}
	adminKey := m[1]
	defer func() {
		if err := p.Terminate(t); err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", err, p.Stderr)
		}
	}()

	hello := testmodule.Read(t, "hello.wasm")
	do := func(method, path string, auth bool, wasm []byte) (int, string) {
		t.Helper()
		var body io.Reader
		ct, key := "", ""
		if wasm != nil {
			body, ct = testenv.Multipart(t, map[string][]byte{"wasm": wasm}, nil)
		}
		if auth {
			key = adminKey
		}
		res, b := testenv.Do(t, method, p.URL+path, key, ct, body)
		return res.StatusCode, string(b)
	}
	steps := []struct {
		name, method, path string
		auth               bool
		wasm               []byte
		want               int
		wantBody           string
	}{
		{"healthz", "GET", "/healthz", false, nil, 200, ""},
		{"readyz", "GET", "/readyz", false, nil, 200, ""},
		{"hello", "POST", "/api/v1/execute", true, hello, 200, "Hello, World!"},
		{"hello again", "POST", "/api/v1/execute", true, hello, 200, "Hello, World!"},
		{"not wasm", "POST", "/api/v1/execute", true, []byte("not wasm"), 400, "EINVALID"},
	}
	for _, st := range steps {
		code, body := do(st.method, st.path, st.auth, st.wasm)
		if code != st.want || !strings.Contains(body, st.wantBody) {
			t.Errorf("%s: %s %s answered %d %s; want %d with %q", st.name, st.method, st.path, code, body, st.want, st.wantBody)
		}
	}
	code, text := do("GET", "/metrics", false, nil)
	if code != 200 {
		t.Fatalf("/metrics answered %d", code)
	}
	return parseExposition(t, text)
}

// redisURL returns WASMWIZ_TEST_REDIS_URL on database 12, or "" when it is
// not set (a test then checks what a server without Redis exports).
func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(testenv.Redis.Var)
	if u == "" {
		return ""
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatalf("WASMWIZ_TEST_REDIS_URL: %v", err)
	}
	pu.Path = "/12"
	return pu.String()
}
