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
