package http_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// TestResourceRoutes covers the non-execute routes: what reaches the store,
// the answer's status and shape, and that a store's ENOTFOUND for another
// tenant's thing is a 404.
func TestResourceRoutes(t *testing.T) {
	t.Parallel()
	mod := &wasmwiz.Module{ID: wasmwiz.NewModuleID(), OwnerID: 1, Name: "m", SHA256: "abc"}
	run := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), UserID: 1, Status: wasmwiz.StatusOK}
	mine := func(ctx context.Context) bool { return wasmwiz.UserFromContext(ctx).ID == 1 }
	notFound := wasmwiz.Errorf(wasmwiz.ENOTFOUND, "not found")

	tests := []struct {
		name   string
		method string
		path   string
		key    string
		body   string
		setup  func(f *fixture)
		status int
		want   string // substring of the answer
	}{
		{name: "list modules", method: "GET", path: "/api/v1/modules?limit=5&offset=10&name=m", key: userKey,
			setup: func(f *fixture) {
				f.modules.FindModulesFn = func(ctx context.Context, fl wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
					if fl.Limit != 5 || fl.Offset != 10 || fl.Name != "m" || !mine(ctx) {
						return nil, wasmwiz.ListTotal{}, wasmwiz.Errorf(wasmwiz.EINVALID, "filter %+v", fl)
					}
					return []*wasmwiz.Module{mod}, wasmwiz.ListTotal{Count: 11}, nil
				}
			}, status: 200, want: `"total":11`},
		{name: "empty module list is an array", method: "GET", path: "/api/v1/modules", key: userKey,
			setup: func(f *fixture) {
				f.modules.FindModulesFn = func(ctx context.Context, fl wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
					return nil, wasmwiz.ListTotal{}, nil
				}
			}, status: 200, want: `{"modules":[],"total":0,"total_capped":false}`},
		{name: "bad limit", method: "GET", path: "/api/v1/modules?limit=0", key: userKey, status: 400, want: "EINVALID"},
		{name: "get module", method: "GET", path: "/api/v1/modules/" + mod.ID, key: userKey,
			setup: func(f *fixture) {
				f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
					if id != mod.ID || !mine(ctx) {
						return nil, notFound
					}
					return mod, nil
				}
			}, status: 200, want: mod.ID},
		{name: "another tenant's module", method: "GET", path: "/api/v1/modules/" + mod.ID, key: otherKey,
			setup: func(f *fixture) {
				f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) { return nil, notFound }
			}, status: 404, want: "ENOTFOUND"},
		{name: "delete module", method: "DELETE", path: "/api/v1/modules/" + mod.ID, key: userKey,
			setup: func(f *fixture) {
				f.modules.DeleteModuleFn = func(ctx context.Context, id string) error {
					if id != mod.ID || !mine(ctx) {
						return notFound
					}
					return nil
				}
			}, status: 204},
		{name: "upload not wasm", method: "POST", path: "/api/v1/modules", key: userKey, body: "text", status: 400, want: "EINVALID"},
		{name: "list runs with filter", method: "GET", path: "/api/v1/runs?status=trap&since=2026-11-01T00:00:00Z", key: userKey,
			setup: func(f *fixture) {
				f.runs.FindRunsFn = func(ctx context.Context, fl wasmwiz.RunFilter) ([]*wasmwiz.UsageRecord, wasmwiz.ListTotal, error) {
					if fl.Status != wasmwiz.StatusTrap || fl.Since.IsZero() || !mine(ctx) {
						return nil, wasmwiz.ListTotal{}, wasmwiz.Errorf(wasmwiz.EINVALID, "filter %+v", fl)
					}
					return []*wasmwiz.UsageRecord{run}, wasmwiz.ListTotal{Count: 1}, nil
				}
			}, status: 200, want: run.ID},
		{name: "empty run list is an array", method: "GET", path: "/api/v1/runs", key: userKey,
			setup: func(f *fixture) {
				f.runs.FindRunsFn = func(ctx context.Context, fl wasmwiz.RunFilter) ([]*wasmwiz.UsageRecord, wasmwiz.ListTotal, error) {
					return nil, wasmwiz.ListTotal{}, nil
				}
			}, status: 200, want: `{"runs":[],"total":0,"total_capped":false}`},
		{name: "runs with unknown status", method: "GET", path: "/api/v1/runs?status=weird", key: userKey, status: 400, want: "EINVALID"},
		{name: "runs with bad time", method: "GET", path: "/api/v1/runs?until=yesterday", key: userKey, status: 400, want: "EINVALID"},
		{name: "get run", method: "GET", path: "/api/v1/runs/" + run.ID, key: userKey,
			setup: func(f *fixture) {
				f.runs.FindRunByIDFn = func(ctx context.Context, id string) (*wasmwiz.UsageRecord, error) {
					if id != run.ID || !mine(ctx) {
						return nil, notFound
					}
					return run, nil
				}
			}, status: 200, want: run.ID},
		{name: "garbage run id", method: "GET", path: "/api/v1/runs/1;drop", key: userKey, status: 404, want: "ENOTFOUND"},
		{name: "usage", method: "GET", path: "/api/v1/usage", key: userKey,
			setup: func(f *fixture) {
				f.runs.UsageFn = func(ctx context.Context, now time.Time) (*wasmwiz.Usage, error) {
					return &wasmwiz.Usage{Tier: "free", RunsToday: 3, RunsPerDay: 500}, nil
				}
			}, status: 200, want: `"runs_today":3`},
		{name: "me", method: "GET", path: "/api/v1/me", key: userKey, status: 200, want: `"timeout_ms":5000`},
		{name: "create key", method: "POST", path: "/api/v1/keys", key: userKey, body: `{"name":"laptop"}`,
			setup: func(f *fixture) {
				f.keys.CreateAPIKeyFn = func(ctx context.Context, uid int64, name string, exp *time.Time) (*wasmwiz.APIKey, string, error) {
					if uid != 1 || name != "laptop" {
						return nil, "", wasmwiz.Errorf(wasmwiz.EINVALID, "got %d %q", uid, name)
					}
					return &wasmwiz.APIKey{ID: 5, UserID: 1, Name: name, Prefix: "ww_abcdefgh"}, "ww_secret", nil
				}
			}, status: 201, want: `"secret":"ww_secret"`},
		{name: "key for someone else refused", method: "POST", path: "/api/v1/keys", key: userKey, body: `{"name":"x","user_id":2}`, status: 400, want: "EINVALID"},
		{name: "key expiring in the past", method: "POST", path: "/api/v1/keys", key: userKey, body: `{"expires_at":"2000-01-01T00:00:00Z"}`, status: 400, want: "EINVALID"},
		{name: "list keys is always mine", method: "GET", path: "/api/v1/keys?user_id=2", key: userKey,
			setup: func(f *fixture) {
				f.keys.FindAPIKeysFn = func(ctx context.Context, fl wasmwiz.APIKeyFilter) ([]*wasmwiz.APIKey, wasmwiz.ListTotal, error) {
					if fl.UserID != 1 {
						return nil, wasmwiz.ListTotal{}, wasmwiz.Errorf(wasmwiz.EINVALID, "user %d", fl.UserID)
					}
					return nil, wasmwiz.ListTotal{}, nil
				}
			}, status: 200, want: `{"keys":[],"total":0,"total_capped":false}`},
		{name: "revoke another tenant's key", method: "DELETE", path: "/api/v1/keys/12", key: userKey,
			setup: func(f *fixture) {
				f.keys.RevokeAPIKeyFn = func(ctx context.Context, id int64) (bool, error) { return false, notFound }
			},
			status: 404, want: "ENOTFOUND"},
		{name: "user cannot raise its tier", method: "PATCH", path: "/api/v1/admin/users/1", key: userKey, body: `{"tier":"enterprise"}`, status: 403, want: "EFORBIDDEN"},
		{name: "admin sets a tier", method: "PATCH", path: "/api/v1/admin/users/1", key: adminKey, body: `{"tier":"pro"}`,
			setup: func(f *fixture) {
				f.users.UpdateUserFn = func(ctx context.Context, id int64, upd wasmwiz.UserUpdate) (*wasmwiz.User, error) {
					u := *theUser
					u.Tier = *upd.Tier
					return &u, nil
				}
			}, status: 200, want: `"tier":"pro"`},
		{name: "admin creates a user with a key", method: "POST", path: "/api/v1/admin/users", key: adminKey,
			body: `{"email":" New@X.io ","tier":"basic","create_key":true}`,
			setup: func(f *fixture) {
				f.users.CreateUserFn = func(ctx context.Context, u *wasmwiz.User) error {
					if u.Email != "new@x.io" || u.Role != wasmwiz.RoleUser || u.Tier != "basic" {
						return wasmwiz.Errorf(wasmwiz.EINVALID, "got %+v", u)
					}
					u.ID = 42
					return nil
				}
				f.keys.CreateAPIKeyFn = func(ctx context.Context, uid int64, name string, exp *time.Time) (*wasmwiz.APIKey, string, error) {
					return &wasmwiz.APIKey{ID: 1, UserID: uid}, "ww_new", nil
				}
			}, status: 201, want: `"secret":"ww_new"`},
		{name: "duplicate email", method: "POST", path: "/api/v1/admin/users", key: adminKey, body: `{"email":"a@b.c"}`,
			setup: func(f *fixture) {
				f.users.CreateUserFn = func(ctx context.Context, u *wasmwiz.User) error {
					return wasmwiz.Errorf(wasmwiz.ECONFLICT, "email taken")
				}
			}, status: 409, want: "ECONFLICT"},
		{name: "list tiers", method: "GET", path: "/api/v1/admin/tiers", key: adminKey,
			setup: func(f *fixture) {
				f.tiers.ListTiersFn = func(ctx context.Context) ([]*wasmwiz.Tier, error) { return wasmwiz.DefaultTiers(), nil }
			}, status: 200, want: `"timeout_ms":120000`},
		{name: "create existing tier", method: "POST", path: "/api/v1/admin/tiers", key: adminKey,
			body:   `{"name":"free","runs_per_minute":1,"runs_per_day":1,"max_memory_bytes":"1MiB","timeout":"1s","max_module_bytes":1024,"max_stdin_bytes":0,"max_output_bytes":1024,"max_file_write_bytes":"1MiB","max_concurrent":1,"async_timeout_ms":60000}`,
			status: 409, want: "ECONFLICT"},
		{name: "invalid tier", method: "PUT", path: "/api/v1/admin/tiers/tiny", key: adminKey, body: `{"runs_per_minute":0}`, status: 400, want: "EINVALID"},
		{name: "bad size string", method: "PUT", path: "/api/v1/admin/tiers/tiny", key: adminKey, body: `{"max_memory_bytes":"lots"}`, status: 400, want: "invalid size"},
		{name: "put tier", method: "PUT", path: "/api/v1/admin/tiers/tiny", key: adminKey,
			body: `{"runs_per_minute":2,"runs_per_day":20,"max_memory_bytes":"1MiB","timeout_ms":250,"max_module_bytes":"64KiB","max_stdin_bytes":0,"max_output_bytes":1024,"max_file_write_bytes":"1MiB","max_concurrent":1,"async_timeout_ms":60000}`,
			setup: func(f *fixture) {
				f.tiers.PutTierFn = func(ctx context.Context, tr *wasmwiz.Tier) error {
					if tr.Name != "tiny" || tr.Timeout != 250*time.Millisecond || tr.MaxMemoryBytes != wasmwiz.MiB || tr.MaxModuleBytes != 64*wasmwiz.KiB {
						return wasmwiz.Errorf(wasmwiz.EINVALID, "got %+v", tr)
					}
					return nil
				}
			}, status: 200, want: `"timeout_ms":250`},
		{name: "admin keys of a user", method: "GET", path: "/api/v1/admin/keys?user_id=3&include_revoked=true", key: adminKey,
			setup: func(f *fixture) {
				f.keys.FindAPIKeysFn = func(ctx context.Context, fl wasmwiz.APIKeyFilter) ([]*wasmwiz.APIKey, wasmwiz.ListTotal, error) {
					if fl.UserID != 3 || !fl.IncludeRevoked {
						return nil, wasmwiz.ListTotal{}, wasmwiz.Errorf(wasmwiz.EINVALID, "filter %+v", fl)
					}
					return []*wasmwiz.APIKey{{ID: 13, UserID: 3}}, wasmwiz.ListTotal{Count: 1}, nil
				}
			}, status: 200, want: `"user_id":3`},
		{name: "stats", method: "GET", path: "/api/v1/admin/stats", key: adminKey,
			setup: func(f *fixture) {
				f.runs.StatsFn = func(ctx context.Context, now time.Time) (*wasmwiz.Stats, error) { return &wasmwiz.Stats{Users: 4}, nil }
			}, status: 200, want: `"users":4`},
		{name: "stats for a user", method: "GET", path: "/api/v1/admin/stats", key: userKey, status: 403, want: "EFORBIDDEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			if tt.setup != nil {
				tt.setup(f)
			}
			req := request{method: tt.method, path: tt.path, key: tt.key}
			if tt.body != "" {
				req.body = strings.NewReader(tt.body)
				req.contentType = "application/json"
				if tt.path == "/api/v1/modules" {
					req.contentType = "application/wasm"
				}
			}
			res := f.do(req)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			if tt.want != "" && !strings.Contains(string(res.body), tt.want) {
				t.Errorf("answer %s lacks %s", res.body, tt.want)
			}
			if len(res.body) > 0 && !json.Valid(res.body) {
				t.Errorf("answer is not JSON: %s", res.body)
			}
		})
	}
}

// TestPublicModuleHidesItsOwner: another user's public module comes
// without whose it is and when and how often it runs (its owner's
// activity); its owner and an admin see them.
func TestPublicModuleHidesItsOwner(t *testing.T) {
	t.Parallel()
	ran := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	mod := &wasmwiz.Module{ID: wasmwiz.NewModuleID(), OwnerID: theUser.ID, Name: "m", SHA256: "abc", Public: true, RunCount: 7, LastRunAt: &ran}
	for _, tt := range []struct {
		who   string
		key   string
		owner bool
	}{{"the owner", userKey, true}, {"another user", otherKey, false}, {"an admin", adminKey, true}} {
		t.Run(tt.who, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				m := *mod
				return &m, nil
			}
			res := f.do(request{method: "GET", path: "/api/v1/modules/" + mod.ID, key: tt.key})
			var got api.Module
			if res.status != 200 || json.Unmarshal(res.body, &got) != nil || got.ID != mod.ID || !got.Public {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			shown := got.OwnerID == mod.OwnerID && got.RunCount == 7 && got.LastRunAt != nil && got.LastRunAt.Equal(ran)
			hidden := got.OwnerID == 0 && got.RunCount == 0 && got.LastRunAt == nil && !strings.Contains(string(res.body), "last_run_at")
			if tt.owner && !shown || !tt.owner && !hidden {
				t.Fatalf("%s sees %s", tt.who, res.body)
			}
		})
	}
}
