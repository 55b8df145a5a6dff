package http_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

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
			f.modules.FindModulesFn = func(ctx context.Context, filter wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
				return nil, wasmwiz.ListTotal{}, nil
			}
			f.users.FindUsersFn = func(ctx context.Context, filter wasmwiz.UserFilter) ([]*wasmwiz.User, wasmwiz.ListTotal, error) {
				return []*wasmwiz.User{theUser}, wasmwiz.ListTotal{Count: 1}, nil
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

// TestAdminRoutesNeedAnAdmin: every route under /api/v1/admin/ answers 401
// without a key and 403 to a user's key (so a user can neither read other
// users nor raise its own tier or role), whatever the body.
func TestAdminRoutesNeedAnAdmin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	fill := strings.NewReplacer("{id}", "1", "{name}", wasmwiz.TierFree)
	n := 0
	for _, r := range f.srv.Routes() {
		if !strings.HasPrefix(r.Pattern, "/api/v1/admin/") {
			continue
		}
		n++
		path := fill.Replace(r.Pattern)
		for _, tt := range []struct {
			key    string
			status int
		}{{"", 401}, {userKey, 403}} {
			res := f.do(request{method: r.Method, path: path, key: tt.key, body: strings.NewReader(`{"tier":"enterprise","role":"admin"}`), contentType: "application/json"})
			if res.status != tt.status {
				t.Errorf("%s %s with key %q: status %d, want %d: %s", r.Method, path, tt.key, res.status, tt.status, res.body)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d admin routes registered", n)
	}
}
