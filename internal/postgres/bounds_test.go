package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/storetest"
)

// TestStoredModulesQuotaReplicas: replicas with pools of their own store
// modules of one user at once, many uploads each; together they never pass
// the tier's max_stored_module_bytes: exactly as many as fit succeed, every
// other upload is ETOOLARGE, and the stored bytes are what the successes
// sent.
func TestStoredModulesQuotaReplicas(t *testing.T) {
	t.Parallel()
	const replicas, uploads, size, room = 4, 12, 64, 15*64 + 63
	dbs := openReplicas(t, replicas, true)
	tier := wasmwiz.DefaultTiers()[0]
	tier.Name, tier.MaxStoredModules, tier.MaxStoredModuleBytes = "quota", 1000, room
	if err := dbs[0].PutTier(sys, tier); err != nil {
		t.Fatalf("PutTier: %v", err)
	}
	u := &wasmwiz.User{Email: "u@example.com", Tier: "quota"}
	if err := dbs[0].CreateUser(sys, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	ctx := wasmwiz.NewContextWithUser(context.Background(), u)
	stored := storetest.Racing(t, replicas*uploads, "the replicas' uploads", wasmwiz.ETOOLARGE, func(k int) error {
		r, i := k%replicas, k/replicas
		wasm := append([]byte(fmt.Sprintf("\x00asm\x01\x00\x00\x00r%d-%02d", r, i)), bytes.Repeat([]byte{'x'}, size)...)[:size]
		return dbs[r].CreateModule(ctx, &wasmwiz.Module{Name: "m", Wasm: wasm})
	})
	if fit := room / size; stored != fit {
		t.Fatalf("%d of %d uploads succeeded, want %d (%d bytes of room, %d a module)", stored, replicas*uploads, fit, room, size)
	}
	usage, err := dbs[1].Usage(ctx, time.Now())
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if usage.Stored != (wasmwiz.StoredModules{Count: int64(stored), Bytes: int64(stored * size)}) {
		t.Fatalf("Usage says %+v, want %d modules of %d bytes", usage.Stored, stored, stored*size)
	}
}

// TestAPIKeysBoundReplicas: replicas with pools of their own create keys of
// one user at once, many each; together they never pass
// wasmwiz.MaxActiveAPIKeys: exactly as many as fit succeed, every other
// creation is ECONFLICT.
func TestAPIKeysBoundReplicas(t *testing.T) {
	t.Parallel()
	const replicas, creations, room = 4, 12, 15
	dbs := openReplicas(t, replicas, true)
	u, ctx := mustUser(t, dbs[0], "u@example.com", wasmwiz.RoleUser)
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
