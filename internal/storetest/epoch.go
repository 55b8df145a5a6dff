package storetest

import (
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var cacheEpochTests = []test{
	{"GrowsWithEveryCachedChange", testCacheEpochGrows},
	{"StillOtherwise", testCacheEpochStill},
	{"UpdateModule", testUpdateModule},
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
		{"revoke a key", func() error { return e.s.RevokeAPIKey(uctx, k.ID) }},
		{"move a user to another tier", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Tier: &basic}); return err }},
		{"make a user an admin", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Role: &admin}); return err }},
		{"disable a user", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Disabled: &yes}); return err }},
		{"enable a user", func() error { _, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Disabled: &no}); return err }},
		{"change a tier", func() error { free.RunsPerMinute++; return e.s.PutTier(e.sys, free) }},
		{"create a tier", func() error { t := *free; t.Name = "new"; return e.s.PutTier(e.sys, &t) }},
		{"make a module public", func() error { _, err := e.s.UpdateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Public: &yes}); return err }},
		{"make a module private", func() error { _, err := e.s.UpdateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Public: &no}); return err }},
		{"rename a module", func() error { _, err := e.s.UpdateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Name: &name}); return err }},
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
	_, err := e.s.UpdateModule(uctx, m.ID, wasmwiz.ModuleUpdate{Description: &desc})
	wantOK(t, err, "UpdateModule(description)")
	if after := e.epoch(); after != before {
		t.Fatalf("the cache epoch moved from %d to %d without a cached change", before, after)
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

	got, err := e.s.UpdateModule(octx, m.ID, wasmwiz.ModuleUpdate{Public: &yes, Name: &name, Description: &desc})
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

	_, errOther := e.s.UpdateModule(other, m.ID, wasmwiz.ModuleUpdate{Public: &no})
	missing := wasmwiz.NewModuleID()
	_, errMissing := e.s.UpdateModule(other, missing, wasmwiz.ModuleUpdate{Public: &no})
	WantCode(t, errOther, wasmwiz.ENOTFOUND, "another user's UpdateModule of a public module")
	sameAnswer(t, errOther, m.ID, errMissing, missing, "UpdateModule")

	got, err = e.s.UpdateModule(actx, m.ID, wasmwiz.ModuleUpdate{Public: &no})
	wantOK(t, err, "admin's UpdateModule")
	if got.Public || got.Name != name {
		t.Fatalf("after the admin's change: %+v", got)
	}
	_, err = e.s.FindModuleByID(other, m.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "another user reads the module made private")

	empty, long := "", string(make([]byte, 4097))
	_, err = e.s.UpdateModule(octx, m.ID, wasmwiz.ModuleUpdate{Name: &empty})
	WantCode(t, err, wasmwiz.EINVALID, "an empty name")
	_, err = e.s.UpdateModule(octx, m.ID, wasmwiz.ModuleUpdate{Description: &long})
	WantCode(t, err, wasmwiz.EINVALID, "a description over 4096 bytes")
	_, err = e.s.UpdateModule(e.anon, m.ID, wasmwiz.ModuleUpdate{Public: &yes})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "UpdateModule without a caller")
}
