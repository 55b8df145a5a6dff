package storetest

import (
	"context"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

var bootstrapTests = []test{
	{"CreatesTheFirstAdminOnce", testBootstrap},
	{"DoesNothingWhenUsersExist", testBootstrapNotEmpty},
	{"ConcurrentCallsCreateOneAdmin", testBootstrapConcurrent},
	{"RefusesABadEmail", testBootstrapBadEmail},
	{"Ping", testPing},
	{"CancelledContextIsUnavailable", testCancelledContext},
}

func testBootstrap(t *testing.T, e *env) {
	u, key, created, err := e.s.Bootstrap(e.anon, "Admin@Example.com")
	wantOK(t, err, "Bootstrap")
	if !created || u == nil || key == "" {
		t.Fatalf("Bootstrap on an empty database: created %v, user %v, key %q", created, u, key)
	}
	if u.Email != "admin@example.com" || u.Role != wasmwiz.RoleAdmin || u.Tier != wasmwiz.TierEnterprise || u.Disabled || u.ID == 0 {
		t.Fatalf("bootstrapped user %+v, want an enabled enterprise admin admin@example.com", u)
	}
	au, ak, err := e.s.Authenticate(e.anon, key)
	wantOK(t, err, "Authenticate with the bootstrap key")
	if au.ID != u.ID || !au.IsAdmin() || ak.Name != "bootstrap" {
		t.Fatalf("bootstrap key authenticates user %d (admin %v) key %q", au.ID, au.IsAdmin(), ak.Name)
	}
	u2, key2, created2, err := e.s.Bootstrap(e.anon, "second@example.com")
	wantOK(t, err, "Bootstrap again")
	if created2 || u2 != nil || key2 != "" {
		t.Fatalf("second Bootstrap: created %v, user %v, key %q; want nothing", created2, u2, key2)
	}
	if n, _ := e.s.CountUsers(e.anon); n != 1 {
		t.Fatalf("%d users after two Bootstraps, want 1", n)
	}
}

func testBootstrapNotEmpty(t *testing.T, e *env) {
	e.user("someone@example.com", wasmwiz.TierFree)
	u, key, created, err := e.s.Bootstrap(e.anon, "admin@example.com")
	wantOK(t, err, "Bootstrap")
	if created || u != nil || key != "" {
		t.Fatalf("Bootstrap with a user present: created %v, user %v, key %q", created, u, key)
	}
	users, _, err := e.s.FindUsers(e.sys, wasmwiz.UserFilter{})
	wantOK(t, err, "FindUsers")
	if len(users) != 1 || users[0].Role != wasmwiz.RoleUser {
		t.Fatalf("Bootstrap with a user present changed the users: %+v", users)
	}
}

func testBootstrapConcurrent(t *testing.T, e *env) {
	const n = 8
	var wg sync.WaitGroup
	created := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, key, ok, err := e.s.Bootstrap(e.anon, "admin@example.com")
			if err != nil {
				errs <- err
				return
			}
			if ok {
				created <- key
			}
		}()
	}
	wg.Wait()
	close(created)
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Bootstrap: %v", err)
	}
	var keys []string
	for k := range created {
		keys = append(keys, k)
	}
	if len(keys) != 1 {
		t.Fatalf("%d concurrent Bootstraps created %d admins, want 1", n, len(keys))
	}
	if c, _ := e.s.CountUsers(e.anon); c != 1 {
		t.Fatalf("%d users after concurrent Bootstraps, want 1", c)
	}
	_, _, err := e.s.Authenticate(e.anon, keys[0])
	wantOK(t, err, "Authenticate with the bootstrap key")
}

func testBootstrapBadEmail(t *testing.T, e *env) {
	_, _, created, err := e.s.Bootstrap(e.anon, "nobody")
	WantCode(t, err, wasmwiz.EINVALID, "Bootstrap with a bad email")
	if created {
		t.Fatal("Bootstrap with a bad email created a user")
	}
	if n, _ := e.s.CountUsers(e.anon); n != 0 {
		t.Fatalf("%d users after a refused Bootstrap", n)
	}
}

func testPing(t *testing.T, e *env) {
	wantOK(t, e.s.Ping(e.anon), "Ping")
}

// testCancelledContext: a call whose context ended answers EUNAVAILABLE (a
// retry may work), never EINTERNAL; the usage writer retries on it.
func testCancelledContext(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, plain := e.key(ctx, u.ID, "k", nil)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	bg, cancelBG := context.WithCancel(context.Background())
	cancelBG()
	_, _, err := e.s.Authenticate(bg, plain)
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "Authenticate with a cancelled context")
	_, _, err = e.s.FindRuns(cctx, wasmwiz.RunFilter{})
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "FindRuns with a cancelled context")
	err = e.s.CreateRuns(bg, []*wasmwiz.UsageRecord{run(u.ID, wasmwiz.StatusOK, 1, e.clock.Now(), "", "")})
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "CreateRuns with a cancelled context")
	_, err = e.s.DeleteRunsBefore(bg, e.clock.Now(), "", 10)
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "DeleteRunsBefore with a cancelled context")
	_, total, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{})
	wantOK(t, err, "FindRuns")
	if total != (wasmwiz.ListTotal{Count: 0}) {
		t.Fatalf("CreateRuns with a cancelled context stored %s runs", total)
	}
}
