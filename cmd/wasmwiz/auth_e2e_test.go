package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeAuthMatrix: who may do what, on every kind of route.
func TestServeAuthMatrix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startServe(t, serveEnv(t, backends[0].env(t)), ServeOptions{})
	alice, aliceUser, _ := s.newUser(wasmwiz.TierFree)
	bob, _, bobKey := s.newUser(wasmwiz.TierFree)
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

	anon := s.client("")
	bad := s.client("ww_" + strings.Repeat("x", 40))
	garbage := s.client("not-a-key")
	gone := s.client(revoked.Secret)
	pro := wasmwiz.TierPro
	admin := wasmwiz.RoleAdmin

	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"no key, execute", func() error { _, err := anon.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); return err }, wasmwiz.EUNAUTHORIZED},
		{"no key, modules", func() error { _, _, err := anon.ListModules(ctx, "", client.Page{}); return err }, wasmwiz.EUNAUTHORIZED},
		{"no key, admin", func() error { _, err := anon.AdminStats(ctx); return err }, wasmwiz.EUNAUTHORIZED},
		{"bad key", func() error { _, _, err := bad.Me(ctx); return err }, wasmwiz.EUNAUTHORIZED},
		{"garbage key", func() error { _, err := garbage.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); return err }, wasmwiz.EUNAUTHORIZED},
		{"revoked key", func() error { _, err := gone.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); return err }, wasmwiz.EUNAUTHORIZED},
		{"non-admin lists users", func() error { _, _, err := bob.AdminListUsers(ctx, "", client.Page{}); return err }, wasmwiz.EFORBIDDEN},
		{"non-admin creates a user", func() error {
			_, err := bob.AdminCreateUser(ctx, client.NewUser{Email: "x@example.com"}, true)
			return err
		}, wasmwiz.EFORBIDDEN},
		{"non-admin lists tiers", func() error { _, err := bob.AdminListTiers(ctx); return err }, wasmwiz.EFORBIDDEN},
		{"non-admin changes a tier", func() error { _, err := bob.AdminPutTier(ctx, testTier("free", nil)); return err }, wasmwiz.EFORBIDDEN},
		{"non-admin keys", func() error { _, _, err := bob.AdminListKeys(ctx, 0, false, client.Page{}); return err }, wasmwiz.EFORBIDDEN},
		{"non-admin stats", func() error { _, err := bob.AdminStats(ctx); return err }, wasmwiz.EFORBIDDEN},
		{"user raises its own tier", func() error {
			_, err := bob.AdminUpdateUser(ctx, aliceUser.ID, client.UserChange{Tier: &pro})
			return err
		}, wasmwiz.EFORBIDDEN},
		{"user makes itself admin", func() error {
			_, err := alice.AdminUpdateUser(ctx, aliceUser.ID, client.UserChange{Role: &admin})
			return err
		}, wasmwiz.EFORBIDDEN},
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
	if _, tier, err := alice.Me(ctx); err != nil || tier.Name != wasmwiz.TierFree {
		t.Fatalf("alice's tier after the attempts: %v, %v", tier, err)
	}
	if _, err := alice.GetModule(ctx, am.ID); err != nil {
		t.Fatalf("alice's module after bob's delete: %v", err)
	}
	if _, err := alice.GetModule(ctx, pub.ID); err != nil {
		t.Fatalf("alice's public module after bob's delete: %v", err)
	}
	if r, err := bob.ExecuteModule(ctx, pub.ID, nil); err != nil || string(r.Result.Stdout) != "Hello, World!\n" {
		t.Fatalf("bob runs alice's public module: %v", err)
	}
	if _, _, err := alice.Me(ctx); err != nil {
		t.Fatalf("alice's key after bob's revoke: %v", err)
	}

	// A caller cannot pick its tier in an execute body either: unknown
	// fields are refused, not ignored.
	st, body := rawRequest(t, http.MethodPost, s.url+"/api/v1/execute", bobKey, "application/json",
		strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","tier":"enterprise"}`))
	if st != http.StatusBadRequest || !strings.Contains(body, "EINVALID") {
		t.Fatalf("execute with a tier field: %d %s", st, body)
	}
	// Nor mint a key for another user: the field does not exist for callers.
	st, body = rawRequest(t, http.MethodPost, s.url+"/api/v1/keys", bobKey, "application/json",
		strings.NewReader(`{"name":"mine now","user_id":`+strconv.FormatInt(aliceUser.ID, 10)+`}`))
	if st != http.StatusBadRequest || !strings.Contains(body, "EINVALID") {
		t.Fatalf("creating a key with another user's id: %d %s", st, body)
	}
	if keys, _, err := alice.ListKeys(ctx, true, client.Page{}); err != nil || len(keys) != 1 {
		t.Fatalf("alice's keys after bob's attempt: %d, %v", len(keys), err)
	}
	// X-API-Key works as well as Bearer.
	req, _ := http.NewRequest(http.MethodGet, s.url+"/api/v1/me", nil)
	req.Header.Set("X-API-Key", bobKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("X-API-Key: %v %v", resp, err)
	}
	resp.Body.Close()
}
