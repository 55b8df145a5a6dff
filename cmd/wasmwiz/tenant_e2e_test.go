package main

import (
	"context"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeTenantIsolation: on the real stores, another tenant's modules,
// runs and keys answer 404 ENOTFOUND to every kind of call, none of the
// calls changes them, and a revoked key stops working at once. (Who may
// call which route, and how a key is read, is internal/http's
// TestAuthMatrix and TestAdminRoutesNeedAnAdmin.)
func TestServeTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	alice, _, _ := s.newUser(wasmwiz.TierFree)
	bob, _, _ := s.newUser(wasmwiz.TierFree)
	hello := testmodule.Read(t, "hello.wasm")

	am, err := alice.CreateModule(ctx, client.ModuleUpload{Wasm: hello, Name: "private"})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := alice.CreateModule(ctx, client.ModuleUpload{Wasm: hello, Name: "shared", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := alice.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "alice's run to be written", func() bool { _, err := alice.GetRun(ctx, res.ID); return err == nil })
	aliceKeys, _, err := alice.ListKeys(ctx, false, client.Page{})
	if err != nil || len(aliceKeys) != 1 {
		t.Fatal(err)
	}
	revoked, err := bob.CreateKey(ctx, "old", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.RevokeKey(ctx, revoked.Key.ID); err != nil {
		t.Fatal(err)
	}
	gone := s.client(revoked.Secret)

	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"revoked key", func() error { _, err := gone.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); return err }, wasmwiz.EUNAUTHORIZED},
		{"another user's module", func() error { _, err := bob.GetModule(ctx, am.ID); return err }, wasmwiz.ENOTFOUND},
		{"another user's module, execute", func() error {
			_, err := bob.ExecuteModule(ctx, am.ID, nil)
			return err
		}, wasmwiz.ENOTFOUND},
		{"another user's module by module_id", func() error {
			_, err := bob.Execute(ctx, &client.ExecuteRequest{ModuleID: am.ID})
			return err
		}, wasmwiz.ENOTFOUND},
		{"another user's module, delete", func() error { return bob.DeleteModule(ctx, am.ID) }, wasmwiz.ENOTFOUND},
		{"another user's public module, delete", func() error { return bob.DeleteModule(ctx, pub.ID) }, wasmwiz.ENOTFOUND},
		{"another user's key, revoke", func() error { return bob.RevokeKey(ctx, aliceKeys[0].ID) }, wasmwiz.ENOTFOUND},
		{"another user's run", func() error { _, err := bob.GetRun(ctx, res.ID); return err }, wasmwiz.ENOTFOUND},
		{"a missing module", func() error { _, err := bob.GetModule(ctx, "mod_doesnotexist"); return err }, wasmwiz.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.name, tt.call(), tt.want)
		})
	}

	// What must still hold after all that.
	if _, err := alice.GetModule(ctx, am.ID); err != nil {
		t.Fatalf("alice's module after bob's delete: %v", err)
	}
	if _, err := alice.GetModule(ctx, pub.ID); err != nil {
		t.Fatalf("alice's public module after bob's delete: %v", err)
	}
	if r, err := bob.ExecuteModule(ctx, pub.ID, nil); err != nil || string(r.Result.Stdout) != "Hello, World!\n" {
		t.Fatalf("bob runs alice's public module: %v", err)
	}
	if _, err := alice.Me(ctx); err != nil {
		t.Fatalf("alice's key after bob's revoke: %v", err)
	}
}
