package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/storetest"
)

// TestAPIKeysBoundReplicas: replicas with pools of their own create keys of
// one user at once, many each; together they never pass
// wasmwiz.MaxActiveAPIKeys: exactly as many as fit succeed, every other
// creation is ECONFLICT.
func TestAPIKeysBoundReplicas(t *testing.T) {
	t.Parallel()
	const replicas, creations, room = 4, 12, 15
	dbs := openReplicas(t, replicas, true)
	u := &wasmwiz.User{Email: "u@example.com", Tier: wasmwiz.TierFree}
	if err := dbs[0].CreateUser(sys, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	ctx := wasmwiz.NewContextWithUser(context.Background(), u)
	for i := range wasmwiz.MaxActiveAPIKeys - room {
		if _, _, err := dbs[0].CreateAPIKey(ctx, u.ID, fmt.Sprint("k", i), nil); err != nil {
			t.Fatalf("CreateAPIKey %d: %v", i, err)
		}
	}
	created := storetest.Racing(t, replicas*creations, "the replicas' key creations", wasmwiz.ECONFLICT, func(k int) error {
		r, i := k%replicas, k/replicas
		_, _, err := dbs[r].CreateAPIKey(ctx, u.ID, fmt.Sprintf("r%d-%d", r, i), nil)
		return err
	})
	if created != room {
		t.Fatalf("%d of %d creations succeeded with room for %d", created, replicas*creations, room)
	}
	_, total, err := dbs[1].FindAPIKeys(ctx, wasmwiz.APIKeyFilter{})
	if err != nil || total.Count != wasmwiz.MaxActiveAPIKeys {
		t.Fatalf("FindAPIKeys: total %d, %v; want %d", total.Count, err, wasmwiz.MaxActiveAPIKeys)
	}
}
