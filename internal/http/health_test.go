package http_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
)

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
