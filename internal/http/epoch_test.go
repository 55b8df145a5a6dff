package http_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/mock"
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
