package http_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestOnlyRealChangesPublishTheEpoch: a write publishes the cache epoch
// (which empties every replica's caches) only when the store says it
// changed something cached; a write that changed nothing answers as before
// and publishes nothing.
func TestOnlyRealChangesPublishTheEpoch(t *testing.T) {
	t.Parallel()
	mod := &wasmwiz.Module{ID: wasmwiz.NewModuleID(), OwnerID: 1, Name: "m", SHA256: "abc"}
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		changed bool // what the store answers
		status  int
	}{
		{"revoke a key", "DELETE", "/api/v1/keys/5", "", true, 204},
		{"revoke a revoked key", "DELETE", "/api/v1/keys/5", "", false, 204},
		{"make a module public", "PATCH", "/api/v1/modules/" + mod.ID, `{"public":true}`, true, 200},
		{"make a public module public", "PATCH", "/api/v1/modules/" + mod.ID, `{"public":true}`, false, 200},
		{"describe a module", "PATCH", "/api/v1/modules/" + mod.ID, `{"description":"words"}`, false, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var published atomic.Int64
			f := newFixture(t, func(o *wwhttp.Options) {
				o.Epochs = &mock.CacheEpochService{CacheEpochFn: func(context.Context) (int64, error) { return 7, nil }}
			})
			f.limiter.PublishEpochFn = func(ctx context.Context, e int64) error { published.Add(1); return nil }
			f.keys.RevokeAPIKeyFn = func(ctx context.Context, id int64) (bool, error) { return tc.changed, nil }
			f.modules.UpdateModuleFn = func(ctx context.Context, id string, upd wasmwiz.ModuleUpdate) (*wasmwiz.Module, bool, error) {
				return mod, tc.changed, nil
			}
			res := f.do(request{method: tc.method, path: tc.path, key: userKey, body: strings.NewReader(tc.body), contentType: "application/json"})
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			want := int64(0)
			if tc.changed {
				want = 1
			}
			if got := published.Load(); got != want {
				t.Fatalf("the epoch was published %d times, want %d", got, want)
			}
		})
	}
}

// TestChangesBoundedPerUser: a user's writes that may move the cache epoch
// (keys created and revoked, modules changed and deleted) are counted
// together, MaxChangesPerMinute a minute; past it they answer 429
// ERATELIMIT with Retry-After and reach no store, while other users and
// admins go on, and the minute over the user may change things again.
func TestChangesBoundedPerUser(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	f := newFixture(t, func(o *wwhttp.Options) {
		o.Limiter = inmem.New(inmem.Options{Now: clock.Now})
		o.Now = clock.Now
	})
	mod := &wasmwiz.Module{ID: wasmwiz.NewModuleID(), OwnerID: 1, Name: "m", SHA256: "abc"}
	var writes atomic.Int64
	f.keys.RevokeAPIKeyFn = func(ctx context.Context, id int64) (bool, error) { writes.Add(1); return true, nil }
	f.keys.CreateAPIKeyFn = func(ctx context.Context, uid int64, name string, exp *time.Time) (*wasmwiz.APIKey, string, error) {
		writes.Add(1)
		return &wasmwiz.APIKey{ID: 5, UserID: uid, Name: name, Prefix: "ww_abcdefgh"}, "ww_secret", nil
	}
	f.modules.UpdateModuleFn = func(ctx context.Context, id string, upd wasmwiz.ModuleUpdate) (*wasmwiz.Module, bool, error) {
		writes.Add(1)
		return mod, true, nil
	}
	f.modules.DeleteModuleFn = func(ctx context.Context, id string) error { writes.Add(1); return nil }
	changes := []struct{ method, path, body string }{
		{"DELETE", "/api/v1/keys/5", ""},
		{"POST", "/api/v1/keys", `{"name":"k"}`},
		{"PATCH", "/api/v1/modules/" + mod.ID, `{"public":false}`},
		{"DELETE", "/api/v1/modules/" + mod.ID, ""},
	}
	change := func(i int, key string) *response {
		c := changes[i%len(changes)]
		return f.do(request{method: c.method, path: c.path, key: key, body: strings.NewReader(c.body), contentType: "application/json"})
	}

	for i := range wwhttp.MaxChangesPerMinute {
		if res := change(i, userKey); res.status >= 300 {
			t.Fatalf("change %d within the bound: %d %s", i+1, res.status, res.body)
		}
	}
	before := writes.Load()
	for i := range len(changes) {
		change(i, userKey).wantRateLimited(t, changes[i].method+" "+changes[i].path+" past the bound", 60)
	}
	if got := writes.Load() - before; got != 0 {
		t.Fatalf("%d writes past the bound reached the store, want 0", got)
	}
	if res := change(0, otherKey); res.status != 204 {
		t.Errorf("another user's change: %d %s", res.status, res.body)
	}
	for i := range wwhttp.MaxChangesPerMinute + 10 {
		if res := change(i, adminKey); res.status >= 300 {
			t.Fatalf("an admin's change %d: %d %s", i+1, res.status, res.body)
		}
	}
	clock.Add(time.Minute)
	if res := change(0, userKey); res.status != 204 {
		t.Errorf("a change a minute later: %d %s", res.status, res.body)
	}
}

// TestChangeBoundOpenWhenLimiterCannotDecide: a limiter that cannot count
// a change lets it through: its outage must not keep a tenant from revoking
// a leaked key.
func TestChangeBoundOpenWhenLimiterCannotDecide(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.limiter.AllowFn = func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
		return wasmwiz.RateDecision{}, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "redis down")
	}
	revoked := false
	f.keys.RevokeAPIKeyFn = func(ctx context.Context, id int64) (bool, error) { revoked = true; return false, nil }
	if res := f.do(request{method: "DELETE", path: "/api/v1/keys/5", key: userKey}); res.status != 204 || !revoked {
		t.Fatalf("revoke while the limiter cannot decide: %d (revoked %v) %s", res.status, revoked, res.body)
	}
}
