package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeStoredModulesQuota: the attack of issue 9 (a free user storing
// distinct 10 MiB modules one after another) on the real server and
// stores. A free user's uploads are stored until the next one would pass
// the free tier's 20MiB of stored modules; that one is 413 ETOOLARGE naming
// the limit, and what the user stores is as before; deleting a module lets
// the next upload in. /api/v1/usage shows the figures throughout.
func TestServeStoredModulesQuota(t *testing.T) {
	free := wasmwiz.DefaultTiers()[0]
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serve(t)
		// The free tier as it is, but for its wall time: compiling 7MiB
		// under CI's load (the race detector, other tests' servers) once
		// took longer than free's 5s, and the quota is what is under test.
		user, _, _ := s.newTierUser(wasmwiz.TierFree, func(t *wasmwiz.Tier) {
			*t = *wasmwiz.DefaultTiers()[0]
			t.Timeout = time.Minute
		})
		hello := testmodule.Read(t, "hello.wasm")
		// Distinct modules of 7MiB: hello.wasm with a custom section
		// of padding, which costs nothing to compile.
		const size = 7 * wasmwiz.MiB
		padded := func(tag string) []byte {
			name := "pad-" + tag
			payload := int(size) - len(hello) - 1 - 4 - 1 - len(name)
			sec := hostiletest.ULEB([]byte{0}, uint64(1+len(name)+payload))
			sec = append(hostiletest.ULEB(sec, uint64(len(name))), name...)
			return append(append(bytes.Clone(hello), sec...), bytes.Repeat([]byte{'x'}, payload)...)
		}
		usage := func(what string) *api.Usage {
			t.Helper()
			u, err := user.Usage(ctx)
			if err != nil {
				t.Fatalf("Usage %s: %v", what, err)
			}
			if u.MaxStoredModules != free.MaxStoredModules || u.MaxStoredModuleBytes != free.MaxStoredModuleBytes {
				t.Fatalf("Usage %s: quota %d modules, %d bytes; want the free tier's %d and %d", what,
					u.MaxStoredModules, u.MaxStoredModuleBytes, free.MaxStoredModules, free.MaxStoredModuleBytes)
			}
			mods, total, err := user.ListModules(ctx, "", client.Page{})
			if err != nil {
				t.Fatalf("ListModules %s: %v", what, err)
			}
			var sum int64
			for _, m := range mods {
				sum += m.SizeBytes
			}
			if int64(total.Count) != u.StoredModules || sum != u.StoredModuleBytes {
				t.Fatalf("%s: the user lists %d modules of %d bytes, usage says %d of %d", what, total.Count, sum, u.StoredModules, u.StoredModuleBytes)
			}
			return u
		}

		var stored []*api.Module
		var refusal error
		for i := range 5 {
			wasm := padded(fmt.Sprint(i))
			if int64(len(wasm)) != size {
				t.Fatalf("padded module is %d bytes, want %d", len(wasm), size)
			}
			m, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: wasm, Name: fmt.Sprint("big-", i)})
			if err != nil {
				refusal = err
				break
			}
			stored = append(stored, m)
		}
		if fit := int(free.MaxStoredModuleBytes / size); len(stored) != fit {
			t.Fatalf("the free user stored %d modules of 7MiB before a refusal (%v), want %d", len(stored), refusal, fit)
		}
		if codeOf(refusal) != wasmwiz.ETOOLARGE {
			t.Fatalf("the upload past the quota: %v, want 413 ETOOLARGE", refusal)
		}
		var ce *client.Error
		if !errors.As(refusal, &ce) || ce.StatusCode != 413 {
			t.Fatalf("the upload past the quota: %v, want HTTP 413", refusal)
		}
		want := "stored modules would be 21MiB, over the free tier's 20MiB (max_stored_module_bytes): 2 stored take 14MiB and this one 7MiB"
		if msg := messageOf(refusal); !strings.Contains(msg, want) {
			t.Fatalf("the refusal says %q, want %q", msg, want)
		}
		u := usage("after the refusal")
		if u.StoredModules != 2 || u.StoredModuleBytes != 2*size {
			t.Fatalf("after the refusal the user stores %d modules of %d bytes, want the 2 of %d before it", u.StoredModules, u.StoredModuleBytes, 2*size)
		}

		// Deleting one frees its share: the next upload is stored.
		if err := user.DeleteModule(ctx, stored[0].ID); err != nil {
			t.Fatalf("DeleteModule: %v", err)
		}
		if u := usage("after the delete"); u.StoredModules != 1 || u.StoredModuleBytes != size {
			t.Fatalf("after the delete the user stores %d modules of %d bytes, want 1 of %d", u.StoredModules, u.StoredModuleBytes, size)
		}
		next, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: padded("next"), Name: "next"})
		if err != nil {
			t.Fatalf("the upload after the delete: %v", err)
		}
		if u := usage("after the next upload"); u.StoredModules != 2 || u.StoredModuleBytes != 2*size {
			t.Fatalf("after the next upload the user stores %d modules of %d bytes, want 2 of %d", u.StoredModules, u.StoredModuleBytes, 2*size)
		}
		ex, err := user.ExecuteModule(ctx, next.ID, nil)
		if err != nil || ex.Result.Status != api.StatusOK || string(ex.Result.Stdout) != "Hello, World!\n" {
			t.Fatalf("running the module stored after the delete: %v", err)
		}
	})
}
