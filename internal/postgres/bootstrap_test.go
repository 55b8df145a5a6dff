package postgres_test

import (
	"context"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/storetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestBootstrapReplicas: replicas with pools of their own bootstrap one
// fresh database at once; exactly one creates the admin, whose key works,
// and later calls do nothing.
func TestBootstrapReplicas(t *testing.T) {
	t.Parallel()
	const replicas = 6
	dbs := openReplicas(t, replicas, true)
	type answer struct {
		user    *wasmwiz.User
		key     string
		created bool
		err     error
	}
	answers := make([]answer, replicas)
	testenv.AtOnce(t, replicas, "the concurrent bootstraps", func(i int) {
		u, k, c, err := dbs[i].Bootstrap(context.Background(), "Admin@Example.com")
		answers[i] = answer{u, k, c, err}
	})
	var winner *answer
	for i := range answers {
		a := &answers[i]
		if a.err != nil {
			t.Fatalf("replica %d: Bootstrap: %v", i, a.err)
		}
		if a.created {
			if winner != nil {
				t.Fatal("two replicas created an admin")
			}
			winner = a
		} else if a.user != nil || a.key != "" {
			t.Fatalf("replica %d created nothing but returned %+v %q", i, a.user, a.key)
		}
	}
	if winner == nil {
		t.Fatal("no replica created the admin")
	}
	if n, err := dbs[0].CountUsers(context.Background()); err != nil || n != 1 {
		t.Fatalf("CountUsers = %d, %v; want 1", n, err)
	}
	u, k, err := dbs[3].Authenticate(context.Background(), winner.key)
	if err != nil {
		t.Fatalf("Authenticate the bootstrap key: %v", err)
	}
	if !u.IsAdmin() || u.Email != "admin@example.com" || u.Tier != wasmwiz.TierEnterprise || k.Name != "bootstrap" {
		t.Fatalf("bootstrap user %+v key %+v", u, k)
	}
	_, _, created, err := dbs[0].Bootstrap(context.Background(), "other@example.com")
	if err != nil || created {
		t.Fatalf("Bootstrap on a database with users: created %v, %v", created, err)
	}
	_, _, _, err = dbs[0].Bootstrap(context.Background(), "not an email")
	storetest.WantCode(t, err, wasmwiz.EINVALID, "Bootstrap with a bad email")
}
