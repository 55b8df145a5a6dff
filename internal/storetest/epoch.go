package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var cacheEpochTests = []test{
	{"GrowsWithEveryCachedChange", testCacheEpochGrows},
	{"StillOtherwise", testCacheEpochStill},
	{"StillForWritesThatChangeNothing", testCacheEpochStillForNoOps},
	{"UpdateModule", testUpdateModule},
}

// revoke is RevokeAPIKey without its answer whether it revoked.
func (e *env) revoke(ctx context.Context, id int64) error {
	_, err := e.s.RevokeAPIKey(ctx, id)
	return err
}

// updateModule is UpdateModule without its answer whether it changed.
func (e *env) updateModule(ctx context.Context, id string, upd wasmwiz.ModuleUpdate) (*wasmwiz.Module, error) {
	m, _, err := e.s.UpdateModule(ctx, id, upd)
	return m, err
}

// epoch reads the cache epoch.
func (e *env) epoch() int64 {
	e.t.Helper()
	n, err := e.s.CacheEpoch(e.anon)
	if err != nil {
		e.t.Fatalf("CacheEpoch: %v", err)
	}
	return n
}

// testCacheEpochGrows: every change a replica's cache must not survive
// raises the epoch.
func testCacheEpochGrows(t *testing.T, e *env) {
	if n := e.epoch(); n < 1 {
		t.Fatalf("a new database's epoch is %d, want at least 1", n)
	}
	e.admin("keeper@example.com") // the last active admin stays: this one
	u, uctx := e.user("owner@example.com", wasmwiz.TierFree)
	k, _ := e.key(uctx, u.ID, "k", nil)
	m := e.module(uctx, "m.wasm", wasmBytes("m"), false)
	basic, pro, admin, yes, no, name := wasmwiz.TierBasic, wasmwiz.TierPro, wasmwiz.RoleAdmin, true, false, "renamed.wasm"
	free, err := e.s.FindTier(e.sys, wasmwiz.TierFree)
	wantOK(t, err, "FindTier")
	changes := []struct {
		what string
		do   func() error
	}{
		{"revoke a key", func() error { return e.revoke(uctx, k.ID) }},
		{"move a user to another tier", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Tier: &basic}); return err }},
		{"make a user an admin", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Role: &admin}); return err }},
		{"disable a user", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Disabled: &yes}); return err }},
		{"enable a user", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Disabled: &no}); return err }},
		{"change a tier", func() error { free.RunsPerMinute++; return e.s.PutTier(e.sys, free) }},
		{"create a tier", func() error { t := *free; t.Name = "new"; return e.s.PutTier(e.sys, &t) }},
		{"make a module public", func() error { _, err := e.updateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Public: &yes}); return err }},
		{"make a module private", func() error { _, err := e.updateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Public: &no}); return err }},
		{"rename a module", func() error { _, err := e.updateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Name: &name}); return err }},
		{"delete a module", func() error { return e.s.DeleteModule(uctx, m.ID) }},
		{"move a user to a third tier", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Tier: &pro}); return err }},
	}
	for _, c := range changes {
		before := e.epoch()
		wantOK(t, c.do(), c.what)
		if after := e.epoch(); after <= before {
			t.Fatalf("%s: the cache epoch stayed %d", c.what, after)
		}
	}
}

// testCacheEpochStill: what the execute path does not cache, and the
// writes of every request, leave the epoch alone.
func testCacheEpochStill(t *testing.T, e *env) {
	before := e.epoch()
	u, uctx := e.user("still@example.com", wasmwiz.TierFree)
	_, plain := e.key(uctx, u.ID, "k", nil)
	m := e.module(uctx, "m.wasm", wasmBytes("still"), true)
	desc := "a new description"
	for range 3 {
		_, _, err := e.s.Authenticate(e.anon, plain) // writes last_used_at
		wantOK(t, err, "Authenticate")
		e.clock.Add(2 * time.Minute)
		e.runs(run(u.ID, wasmwiz.StatusOK, 1, e.clock.Now(), m.ID, m.SHA256)) // bumps run_count
	}
	_, err := e.updateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Description: &desc})
	wantOK(t, err, "UpdateModule(description)")
	if after := e.epoch(); after != before {
		t.Fatalf("the cache epoch moved from %d to %d without a cached change", before, after)
	}
}

// testCacheEpochStillForNoOps: a write that changes nothing cached leaves
// the epoch where it was, and says so (a tenant could otherwise empty every
// replica's caches for everyone in a loop): revoking a revoked key, setting
// a module's name or visibility to what it is, and changing or deleting a
// module that is missing or another user's.
func testCacheEpochStillForNoOps(t *testing.T, e *env) {
	u, uctx := e.user("owner@example.com", wasmwiz.TierFree)
	_, other := e.user("other@example.com", wasmwiz.TierFree)
	k, _ := e.key(uctx, u.ID, "k", nil)
	m := e.module(uctx, "m.wasm", wasmBytes("noop"), true)
	pub, priv, name, desc := true, false, m.Name, "new words"
	missing := wasmwiz.NewModuleID()

	before := e.epoch()
	revoked, err := e.s.RevokeAPIKey(uctx, k.ID)
	wantOK(t, err, "RevokeAPIKey")
	if after := e.epoch(); !revoked || after <= before {
		t.Fatalf("revoking a key: revoked %v, epoch %d to %d, want it revoked and the epoch grown", revoked, before, after)
	}

	updates := []struct {
		what string
		upd  wasmwiz.ModuleUpdate
	}{
		{"a public module made public", wasmwiz.ModuleUpdate{Public: &pub}},
		{"a module given its own name", wasmwiz.ModuleUpdate{Name: &name}},
		{"a module given its own name and visibility", wasmwiz.ModuleUpdate{Name: &name, Public: &pub}},
		{"a module described", wasmwiz.ModuleUpdate{Description: &desc}},
	}
	before = e.epoch()
	revoked, err = e.s.RevokeAPIKey(uctx, k.ID)
	wantOK(t, err, "RevokeAPIKey of a revoked key")
	if revoked {
		t.Fatal("RevokeAPIKey of a revoked key says it revoked it")
	}
	for _, u := range updates {
		got, changed, err := e.s.UpdateModule(uctx, m.ID, u.upd)
		wantOK(t, err, "UpdateModule: "+u.what)
		if changed || got.Name != m.Name || !got.Public {
			t.Fatalf("UpdateModule: %s: changed %v, %+v", u.what, changed, got)
		}
	}
	_, err = e.updateModule(other, m.ID, wasmwiz.ModuleUpdate{Public: &priv})
	WantCode(t, err, wasmwiz.ENOTFOUND, "UpdateModule of another user's module")
	_, err = e.updateModule(uctx, missing, wasmwiz.ModuleUpdate{Public: &priv})
	WantCode(t, err, wasmwiz.ENOTFOUND, "UpdateModule of a missing module")
	WantCode(t, e.s.DeleteModule(other, m.ID), wasmwiz.ENOTFOUND, "DeleteModule of another user's module")
	WantCode(t, e.s.DeleteModule(uctx, missing), wasmwiz.ENOTFOUND, "DeleteModule of a missing module")
	WantCode(t, e.revoke(other, k.ID), wasmwiz.ENOTFOUND, "RevokeAPIKey of another user's key")
	if after := e.epoch(); after != before {
		t.Fatalf("writes that changed nothing moved the cache epoch from %d to %d", before, after)
	}

	_, changed, err := e.s.UpdateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Public: &priv, Description: &desc})
	wantOK(t, err, "UpdateModule: a public module made private")
	if after := e.epoch(); !changed || after <= before {
		t.Fatalf("a module made private: changed %v, epoch %d to %d, want it changed and the epoch grown", changed, before, after)
	}
}

// testUpdateModule: the owner (or an admin) changes name, description and
// visibility; nobody else can, and cannot tell the module exists.
func testUpdateModule(t *testing.T, e *env) {
	_, octx := e.user("owner@example.com", wasmwiz.TierFree)
	_, other := e.user("other@example.com", wasmwiz.TierFree)
	_, actx := e.admin("admin@example.com")
	m := e.module(octx, "m.wasm", wasmBytes("upd"), false)
	yes, no, name, desc := true, false, "new.wasm", "new words"

	got, err := e.updateModule(octx, m.ID, wasmwiz.ModuleUpdate{Public: &yes, Name: &name, Description: &desc})
	wantOK(t, err, "owner's UpdateModule")
	want := *m
	want.Public, want.Name, want.Description = true, name, desc
	sameModule(t, got, &want, "UpdateModule's answer")
	stored, err := e.s.FindModuleByID(other, m.ID)
	wantOK(t, err, "another user reads the public module")
	sameModule(t, stored, &want, "the stored module")
	if got.Wasm != nil {
		t.Fatal("UpdateModule returned the bytes")
	}

	_, errOther := e.updateModule(other, m.ID, wasmwiz.ModuleUpdate{Public: &no})
	missing := wasmwiz.NewModuleID()
	_, errMissing := e.updateModule(other, missing, wasmwiz.ModuleUpdate{Public: &no})
	WantCode(t, errOther, wasmwiz.ENOTFOUND, "another user's UpdateModule of a public module")
	sameAnswer(t, errOther, m.ID, errMissing, missing, "UpdateModule")

	got, err = e.updateModule(actx, m.ID, wasmwiz.ModuleUpdate{Public: &no})
	wantOK(t, err, "admin's UpdateModule")
	if got.Public || got.Name != name {
		t.Fatalf("after the admin's change: %+v", got)
	}
	_, err = e.s.FindModuleByID(other, m.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "another user reads the module made private")

	empty, long := "", string(make([]byte, 4097))
	_, err = e.updateModule(octx, m.ID, wasmwiz.ModuleUpdate{Name: &empty})
	WantCode(t, err, wasmwiz.EINVALID, "an empty name")
	_, err = e.updateModule(octx, m.ID, wasmwiz.ModuleUpdate{Description: &long})
	WantCode(t, err, wasmwiz.EINVALID, "a description over 4096 bytes")
	_, err = e.updateModule(e.anon, m.ID, wasmwiz.ModuleUpdate{Public: &yes})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "UpdateModule without a caller")
}
