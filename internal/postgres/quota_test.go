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
