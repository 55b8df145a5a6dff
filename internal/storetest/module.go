package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var moduleTests = []test{
	{"CreateModule", testCreateModule},
	{"CreateModuleRefusals", testCreateModuleRefusals},
	{"PrivateModulesOfOthersAreNotFound", testModuleCrossTenant},
	{"SameBytesTwoUsersTwoModules", testSameBytesTwoUsers},
	{"PublicModules", testPublicModules},
	{"FindModules", testFindModules},
	{"DeleteModuleKeepsRuns", testDeleteModuleKeepsRuns},
	{"StoredModulesQuota", testStoredModulesQuota},
	{"StoredModulesQuotaConcurrently", testStoredModulesQuotaConcurrently},
}

func testCreateModule(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	e.clock.Add(3 * time.Second)
	wasm := wasmBytes("hello")
	m := e.module(ctx, "hello", wasm, false)
	if !wasmwiz.ValidModuleID(m.ID) {
		t.Fatalf("module id %q is not a mod_ id", m.ID)
	}
	want := &wasmwiz.Module{ID: m.ID, OwnerID: u.ID, Name: "hello", Description: "the hello module",
		SHA256: sha(wasm), SizeBytes: int64(len(wasm)), Inspection: m.Inspection, CreatedAt: e.clock.Now()}
	sameModule(t, m, want, "created module")

	got, err := e.s.FindModuleByID(ctx, m.ID)
	wantOK(t, err, "FindModuleByID")
	sameModule(t, got, want, "found module")
	if got.Wasm != nil {
		t.Fatal("FindModuleByID returned the bytes")
	}
	got, err = e.s.FindModuleWasm(ctx, m.ID)
	wantOK(t, err, "FindModuleWasm")
	sameModule(t, got, want, "found module with bytes")
	if !bytes.Equal(got.Wasm, wasm) {
		t.Fatalf("FindModuleWasm bytes %x, want %x", got.Wasm, wasm)
	}

	// A module without inspection, and a larger one, round-trip too.
	big := bytes.Repeat(wasmBytes("big"), 100_000)
	m2 := &wasmwiz.Module{Name: "big", Wasm: big}
	wantOK(t, e.s.CreateModule(ctx, m2), "CreateModule big")
	got, err = e.s.FindModuleWasm(ctx, m2.ID)
	wantOK(t, err, "FindModuleWasm big")
	if got.Inspection != nil || !bytes.Equal(got.Wasm, big) || got.SizeBytes != int64(len(big)) || got.SHA256 != sha(big) {
		t.Fatalf("big module: inspection %v, %d bytes, size %d", got.Inspection, len(got.Wasm), got.SizeBytes)
	}
	if m2.ID == m.ID {
		t.Fatal("two modules got one id")
	}
	_, err = e.s.FindModuleByID(ctx, "mod_doesnotexist000000000")
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindModuleByID of no module")
	_, err = e.s.FindModuleByID(ctx, "../../etc/passwd")
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindModuleByID of garbage")
}

func testCreateModuleRefusals(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	tests := []struct {
		name string
		m    wasmwiz.Module
		code string
	}{
		{"no bytes", wasmwiz.Module{Name: "empty"}, wasmwiz.EINVALID},
		{"a name too long", wasmwiz.Module{Name: strings.Repeat("n", 129), Wasm: wasmBytes("x")}, wasmwiz.EINVALID},
		{"a description too long", wasmwiz.Module{Name: "d", Description: strings.Repeat("d", 4097), Wasm: wasmBytes("x")}, wasmwiz.EINVALID},
	}
	for _, tt := range tests {
		m := tt.m
		WantCode(t, e.s.CreateModule(ctx, &m), tt.code, "CreateModule with "+tt.name)
	}
	m := &wasmwiz.Module{Name: "anon", Wasm: wasmBytes("x")}
	WantCode(t, e.s.CreateModule(e.anon, m), wasmwiz.EUNAUTHORIZED, "CreateModule without a caller")
	mods, total, err := e.s.FindModules(ctx, wasmwiz.ModuleFilter{})
	wantListed(t, "FindModules after refused CreateModule calls", mods, total, err, 0)
}

func testModuleCrossTenant(t *testing.T, e *env) {
	owner, ownerCtx := e.user("owner@example.com", wasmwiz.TierFree)
	other, otherCtx := e.user("other@example.com", wasmwiz.TierFree)
	_, admin := e.admin("root@example.com")
	m := e.module(ownerCtx, "secret", wasmBytes("secret"), false)

	// Another user: every method answers as if the module did not exist.
	_, err := e.s.FindModuleByID(otherCtx, m.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindModuleByID of another user's module")
	_, err2 := e.s.FindModuleByID(otherCtx, "mod_0000000000000000000000")
	sameAnswer(t, err, m.ID, err2, "mod_0000000000000000000000", "FindModuleByID")
	_, err = e.s.FindModuleWasm(otherCtx, m.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindModuleWasm of another user's module")
	WantCode(t, e.s.DeleteModule(otherCtx, m.ID), wasmwiz.ENOTFOUND, "DeleteModule of another user's module")
	mods, total, err := e.s.FindModules(otherCtx, wasmwiz.ModuleFilter{})
	wantListed(t, "FindModules of another user", mods, total, err, 0)
	// Nor without a caller.
	_, err = e.s.FindModuleByID(e.anon, m.ID)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindModuleByID without a caller")
	_, err = e.s.FindModuleWasm(e.anon, m.ID)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindModuleWasm without a caller")
	_, _, err = e.s.FindModules(e.anon, wasmwiz.ModuleFilter{})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindModules without a caller")
	WantCode(t, e.s.DeleteModule(e.anon, m.ID), wasmwiz.EUNAUTHORIZED, "DeleteModule without a caller")

	// A caller cannot store a module as someone else's.
	planted := &wasmwiz.Module{Name: "planted", OwnerID: owner.ID, Wasm: wasmBytes("planted")}
	wantOK(t, e.s.CreateModule(otherCtx, planted), "CreateModule with another owner set")
	if planted.OwnerID != other.ID {
		t.Fatalf("CreateModule stored the module for user %d, want the caller %d", planted.OwnerID, other.ID)
	}
	if mods, _, _ := e.s.FindModules(ownerCtx, wasmwiz.ModuleFilter{Name: "planted"}); len(mods) != 0 {
		t.Fatal("a module created by another user is listed as the owner's")
	}

	// The owner still has it; an admin sees it and may delete it.
	_, err = e.s.FindModuleWasm(ownerCtx, m.ID)
	wantOK(t, err, "FindModuleWasm by the owner")
	_, err = e.s.FindModuleWasm(admin, m.ID)
	wantOK(t, err, "FindModuleWasm by an admin")
	wantOK(t, e.s.DeleteModule(admin, m.ID), "DeleteModule by an admin")
	_, err = e.s.FindModuleByID(ownerCtx, m.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindModuleByID after delete")
	WantCode(t, e.s.DeleteModule(ownerCtx, m.ID), wasmwiz.ENOTFOUND, "DeleteModule twice")
}

func testSameBytesTwoUsers(t *testing.T, e *env) {
	a, aCtx := e.user("a@example.com", wasmwiz.TierFree)
	b, bCtx := e.user("b@example.com", wasmwiz.TierFree)
	wasm := wasmBytes("shared")
	ma := e.module(aCtx, "mine", wasm, false)
	e.clock.Add(time.Second)
	mb := e.module(bCtx, "also-mine", wasm, false)
	if ma.ID == mb.ID || ma.SHA256 != mb.SHA256 {
		t.Fatalf("same bytes: ids %s and %s, sha %s and %s", ma.ID, mb.ID, ma.SHA256, mb.SHA256)
	}
	at := e.clock.Add(time.Minute)
	e.runs(run(a.ID, wasmwiz.StatusOK, 1, at, ma.ID, ma.SHA256), run(a.ID, wasmwiz.StatusOK, 1, at, ma.ID, ma.SHA256))

	for _, c := range []struct {
		name  string
		ctx   context.Context
		owner int64
		want  *wasmwiz.Module
		runs  int64
	}{
		{"a", aCtx, a.ID, ma, 2},
		{"b", bCtx, b.ID, mb, 0},
	} {
		mods, total, err := e.s.FindModules(c.ctx, wasmwiz.ModuleFilter{})
		wantOK(t, err, "FindModules "+c.name)
		if total != (wasmwiz.ListTotal{Count: 1}) || len(mods) != 1 || mods[0].ID != c.want.ID || mods[0].OwnerID != c.owner {
			t.Fatalf("user %s lists %d modules (total %s), want only its own %s", c.name, len(mods), total, c.want.ID)
		}
		if mods[0].RunCount != c.runs {
			t.Fatalf("user %s's module has run count %d, want %d: the other user's runs leak", c.name, mods[0].RunCount, c.runs)
		}
	}
	// Deleting one leaves the other.
	wantOK(t, e.s.DeleteModule(aCtx, ma.ID), "DeleteModule a")
	got, err := e.s.FindModuleWasm(bCtx, mb.ID)
	wantOK(t, err, "FindModuleWasm b after a deleted its copy")
	if !bytes.Equal(got.Wasm, wasm) {
		t.Fatal("b's module lost its bytes when a deleted the same bytes")
	}
}

func testPublicModules(t *testing.T, e *env) {
	owner, ownerCtx := e.user("owner@example.com", wasmwiz.TierFree)
	_, otherCtx := e.user("other@example.com", wasmwiz.TierFree)
	wasm := wasmBytes("public")
	pub := e.module(ownerCtx, "shared-tool", wasm, true)

	got, err := e.s.FindModuleByID(otherCtx, pub.ID)
	wantOK(t, err, "FindModuleByID of a public module")
	if got.OwnerID != owner.ID || !got.Public {
		t.Fatalf("public module: owner %d public %v", got.OwnerID, got.Public)
	}
	got, err = e.s.FindModuleWasm(otherCtx, pub.ID)
	wantOK(t, err, "FindModuleWasm of a public module")
	if !bytes.Equal(got.Wasm, wasm) {
		t.Fatal("a public module's bytes differ for another user")
	}
	WantCode(t, e.s.DeleteModule(otherCtx, pub.ID), wasmwiz.ENOTFOUND, "DeleteModule of another user's public module")
	_, err = e.s.FindModuleByID(ownerCtx, pub.ID)
	wantOK(t, err, "the public module after another user's delete")
	mods, total, err := e.s.FindModules(otherCtx, wasmwiz.ModuleFilter{})
	wantListed(t, "FindModules of another user (it lists only one's own)", mods, total, err, 0)
	_, err = e.s.FindModuleByID(e.anon, pub.ID)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindModuleByID of a public module without a caller")
}

func testFindModules(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, otherCtx := e.user("other@example.com", wasmwiz.TierFree)
	var mine []*wasmwiz.Module // oldest first
	for i := range 5 {
		e.clock.Add(time.Second)
		name := fmt.Sprintf("m%d", i)
		if i == 3 {
			name = "m1" // two modules of one name
		}
		mine = append(mine, e.module(ctx, name, wasmBytes(name+fmt.Sprint(i)), i%2 == 0))
	}
	e.module(otherCtx, "m1", wasmBytes("other"), true)

	tests := []struct {
		name   string
		filter wasmwiz.ModuleFilter
		want   []*wasmwiz.Module
		total  int
	}{
		{"all", wasmwiz.ModuleFilter{}, []*wasmwiz.Module{mine[4], mine[3], mine[2], mine[1], mine[0]}, 5},
		{"first page", wasmwiz.ModuleFilter{Limit: 2}, []*wasmwiz.Module{mine[4], mine[3]}, 5},
		{"second page", wasmwiz.ModuleFilter{Limit: 2, Offset: 2}, []*wasmwiz.Module{mine[2], mine[1]}, 5},
		{"by name", wasmwiz.ModuleFilter{Name: "m1"}, []*wasmwiz.Module{mine[3], mine[1]}, 2},
		{"unknown name", wasmwiz.ModuleFilter{Name: "nope"}, nil, 0},
	}
	for _, tt := range tests {
		got, total, err := e.s.FindModules(ctx, tt.filter)
		wantOK(t, err, "FindModules "+tt.name)
		if len(got) != len(tt.want) || total != (wasmwiz.ListTotal{Count: tt.total}) {
			t.Fatalf("FindModules %s: %d modules, total %s; want %d and %d", tt.name, len(got), total, len(tt.want), tt.total)
		}
		for i := range got {
			// A list carries the inspection's summary: no imports or
			// exports, counted instead.
			want := *tt.want[i]
			want.Inspection = want.Inspection.Summary()
			sameModule(t, got[i], &want, "FindModules "+tt.name)
			if got[i].Wasm != nil {
				t.Fatal("FindModules returned module bytes")
			}
		}
	}
}

func testDeleteModuleKeepsRuns(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	m := e.module(ctx, "gone", wasmBytes("gone"), false)
	at := e.clock.Add(time.Second)
	r := run(u.ID, wasmwiz.StatusOK, 2.5, at, m.ID, m.SHA256)
	e.runs(r)
	wantOK(t, e.s.DeleteModule(ctx, m.ID), "DeleteModule")
	got, err := e.s.FindRunByID(ctx, r.ID)
	wantOK(t, err, "FindRunByID after the module was deleted")
	sameRun(t, got, r, "run of a deleted module")
	runs, total, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{})
	wantListed(t, "FindRuns after the module was deleted", runs, total, err, 1)
	// Records of the deleted module may still arrive from the usage writer.
	late := run(u.ID, wasmwiz.StatusOK, 1, at.Add(time.Second), m.ID, m.SHA256)
	e.runs(late)
	_, err = e.s.FindRunByID(ctx, late.ID)
	wantOK(t, err, "FindRunByID of a late record of a deleted module")
}

// quotaUser puts (once) a tier named tier, the free tier with a registry
// quota of count modules and size bytes, and returns a user of it.
func (e *env) quotaUser(email, tier string, count, size int64) (*wasmwiz.User, context.Context) {
	e.t.Helper()
	q := wasmwiz.DefaultTiers()[0]
	q.Name, q.MaxStoredModules, q.MaxStoredModuleBytes = tier, count, size
	if _, err := e.s.FindTier(e.sys, tier); err != nil {
		wantOK(e.t, e.s.PutTier(e.sys, q), "PutTier "+tier)
	}
	return e.user(email, tier)
}

// storedModules returns what the caller in ctx stores, as FindModules,
// Usage and StoredModules see it; they must agree.
func (e *env) storedModules(ctx context.Context) wasmwiz.StoredModules {
	e.t.Helper()
	mods, total, err := e.s.FindModules(ctx, wasmwiz.ModuleFilter{Limit: 1000})
	wantOK(e.t, err, "FindModules")
	var listed wasmwiz.StoredModules
	for _, m := range mods {
		listed.Count++
		listed.Bytes += m.SizeBytes
	}
	u, err := e.s.Usage(ctx, e.clock.Now())
	wantOK(e.t, err, "Usage")
	if total != (wasmwiz.ListTotal{Count: int(listed.Count)}) || u.Stored != listed {
		e.t.Fatalf("FindModules lists %d modules of %d bytes (total %s), Usage says %+v", listed.Count, listed.Bytes, total, u.Stored)
	}
	have, err := e.s.StoredModules(ctx)
	wantOK(e.t, err, "StoredModules")
	if have != listed {
		e.t.Fatalf("FindModules lists %d modules of %d bytes, StoredModules says %+v", listed.Count, listed.Bytes, have)
	}
	return listed
}

// testStoredModulesQuota: the tier's max_stored_modules and
// max_stored_module_bytes bound what a user stores; a refusal stores
// nothing, deleting frees quota, identical bytes count again, other users'
// modules do not count, and the tier is read from the store, not from the
// caller's context.
func testStoredModulesQuota(t *testing.T, e *env) {
	u, ctx := e.quotaUser("u@example.com", "tiny", 3, 2*wasmwiz.KiB)
	_, otherCtx := e.quotaUser("other@example.com", "tiny", 3, 2*wasmwiz.KiB)
	e.module(otherCtx, "theirs", wasmBytes("theirs"), false) // not u's
	mod := func(tag string, size int) *wasmwiz.Module {
		b := wasmBytes(tag)
		return &wasmwiz.Module{Name: tag, Wasm: append(b, bytes.Repeat([]byte{'x'}, max(0, size-len(b)))...)}
	}

	// Count: three fit, the fourth is refused, naming the limit.
	var kept []*wasmwiz.Module
	for i := range 3 {
		m := mod(fmt.Sprint("m", i), 100)
		wantOK(t, e.s.CreateModule(ctx, m), fmt.Sprintf("CreateModule %d of 3", i+1))
		kept = append(kept, m)
	}
	err := e.s.CreateModule(ctx, mod("m3", 100))
	WantCode(t, err, wasmwiz.ETOOLARGE, "CreateModule past max_stored_modules")
	if msg := wasmwiz.ErrorMessage(err); !strings.Contains(msg, "stored modules would be 4, over the tiny tier's 3") {
		t.Fatalf("count refusal says %q", msg)
	}
	if got := e.storedModules(ctx); got != (wasmwiz.StoredModules{Count: 3, Bytes: 300}) {
		t.Fatalf("after a refusal the user stores %+v, want 3 modules of 300 bytes", got)
	}
	// Deleting one lets the next in; the same bytes again are one more module.
	wantOK(t, e.s.DeleteModule(ctx, kept[0].ID), "DeleteModule")
	again := &wasmwiz.Module{Name: "again", Wasm: kept[1].Wasm}
	wantOK(t, e.s.CreateModule(ctx, again), "CreateModule after a delete, the bytes of another module")
	if again.ID == kept[1].ID {
		t.Fatal("identical bytes got the id of the module that holds them")
	}
	WantCode(t, e.s.CreateModule(ctx, mod("m4", 100)), wasmwiz.ETOOLARGE, "CreateModule past max_stored_modules again")
	if got := e.storedModules(ctx); got != (wasmwiz.StoredModules{Count: 3, Bytes: 300}) {
		t.Fatalf("user stores %+v, want 3 modules of 300 bytes", got)
	}

	// Bytes: an admin raises the count; the bytes bound. An exact fit passes.
	q, err := e.s.FindTier(e.sys, "tiny")
	wantOK(t, err, "FindTier tiny")
	q.MaxStoredModules = 100
	wantOK(t, e.s.PutTier(e.sys, q), "PutTier tiny with 100 modules")
	big := mod("big", 1800)
	err = e.s.CreateModule(ctx, big)
	WantCode(t, err, wasmwiz.ETOOLARGE, "CreateModule past max_stored_module_bytes")
	want := "stored modules would be 2.1KiB, over the tiny tier's 2KiB (max_stored_module_bytes): 3 stored take 300B and this one 1.8KiB"
	if msg := wasmwiz.ErrorMessage(err); msg != want {
		t.Fatalf("bytes refusal says\n%q\nwant\n%q", msg, want)
	}
	wantOK(t, e.s.CreateModule(ctx, mod("fits", 2048-300)), "CreateModule to exactly max_stored_module_bytes")
	WantCode(t, e.s.CreateModule(ctx, mod("z", 9)), wasmwiz.ETOOLARGE, "CreateModule past a full quota")
	if got := e.storedModules(ctx); got != (wasmwiz.StoredModules{Count: 4, Bytes: 2048}) {
		t.Fatalf("user stores %+v, want 4 modules of 2048 bytes", got)
	}
	usage, err := e.s.Usage(ctx, e.clock.Now())
	wantOK(t, err, "Usage")
	if usage.MaxStoredModules != 100 || usage.MaxStoredModuleBytes != 2*wasmwiz.KiB {
		t.Fatalf("Usage quotas %d modules, %d bytes; want 100 and 2048", usage.MaxStoredModules, usage.MaxStoredModuleBytes)
	}

	// A user moved to a smaller tier keeps its modules and stores no more,
	// whatever tier its context still names.
	q.MaxStoredModules, q.MaxStoredModuleBytes = 2, wasmwiz.MiB
	wantOK(t, e.s.PutTier(e.sys, q), "PutTier tiny with 2 modules")
	WantCode(t, e.s.CreateModule(ctx, mod("over", 10)), wasmwiz.ETOOLARGE, "CreateModule over a lowered quota")
	_, err = e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Tier: ptr(wasmwiz.TierBasic)})
	wantOK(t, err, "UpdateUser to basic")
	wantOK(t, e.s.CreateModule(ctx, mod("basic", 10)), "CreateModule once on basic, with a context that says tiny")
	if got := e.storedModules(ctx); got.Count != 5 {
		t.Fatalf("user stores %d modules, want 5", got.Count)
	}
	// The other user's one module was never in the way.
	if got := e.storedModules(otherCtx); got.Count != 1 {
		t.Fatalf("other user stores %d modules, want 1", got.Count)
	}
}

// testStoredModulesQuotaConcurrently: many uploads of one user at once
// never store past the quota, by count or by bytes: exactly as many as fit
// succeed, every other one is ETOOLARGE.
func testStoredModulesQuotaConcurrently(t *testing.T, e *env) {
	const uploads, size = 24, 100
	for _, c := range []struct {
		name        string
		count, room int64
	}{
		{"count", 5, wasmwiz.MiB},
		{"bytes", 100, 7 * size},
	} {
		_, ctx := e.quotaUser(c.name+"@example.com", "q-"+c.name, c.count, c.room)
		fit := min(c.count, c.room/size)
		stored := int64(Racing(t, uploads, c.name+": concurrent uploads", wasmwiz.ETOOLARGE, func(i int) error {
			b := wasmBytes(fmt.Sprintf("%s-%03d", c.name, i))
			b = append(b, bytes.Repeat([]byte{'x'}, size-len(b))...)
			return e.s.CreateModule(ctx, &wasmwiz.Module{Name: fmt.Sprint(i), Wasm: b})
		}))
		if stored != fit {
			t.Fatalf("%s: %d of %d concurrent uploads succeeded, want %d (the quota)", c.name, stored, uploads, fit)
		}
		if got := e.storedModules(ctx); got != (wasmwiz.StoredModules{Count: fit, Bytes: fit * size}) {
			t.Fatalf("%s: user stores %+v after concurrent uploads, want %d modules of %d bytes", c.name, got, fit, fit*size)
		}
	}
}
