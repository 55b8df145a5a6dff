package storetest

import (
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var tierTests = []test{
	{"SeededDefaults", testTierSeededDefaults},
	{"FindTier", testFindTier},
	{"PutTierCreates", testPutTierCreates},
	{"PutTierReplacesAndNextLookupSeesIt", testPutTierReplaces},
	{"PutTierRefusesNonAdmins", testPutTierForbidden},
	{"PutTierValidates", testPutTierValidates},
}

// sameLimits compares every limit of two tiers (not UpdatedAt).
func sameLimits(t *testing.T, got, want *wasmwiz.Tier, what string) {
	t.Helper()
	g, w := *got, *want
	g.UpdatedAt, w.UpdatedAt = time.Time{}, time.Time{}
	if g != w {
		t.Fatalf("%s: tier\n%+v\nwant\n%+v", what, g, w)
	}
}

func testTierSeededDefaults(t *testing.T, e *env) {
	_, ctx := e.user("reader@example.com", wasmwiz.TierFree)
	tiers, err := e.s.ListTiers(ctx)
	wantOK(t, err, "ListTiers")
	want := map[string]*wasmwiz.Tier{}
	for _, d := range wasmwiz.DefaultTiers() {
		want[d.Name] = d
	}
	if len(tiers) != len(want) {
		t.Fatalf("ListTiers returned %d tiers, want the %d defaults", len(tiers), len(want))
	}
	for i, got := range tiers {
		if i > 0 && tiers[i-1].Name >= got.Name {
			t.Fatalf("ListTiers not ordered by name: %q before %q", tiers[i-1].Name, got.Name)
		}
		w, ok := want[got.Name]
		if !ok {
			t.Fatalf("ListTiers returned unexpected tier %q", got.Name)
		}
		sameLimits(t, got, w, "seeded "+got.Name)
	}
}

func testFindTier(t *testing.T, e *env) {
	_, ctx := e.user("reader@example.com", wasmwiz.TierFree)
	for _, d := range wasmwiz.DefaultTiers() {
		got, err := e.s.FindTier(ctx, d.Name)
		wantOK(t, err, "FindTier "+d.Name)
		sameLimits(t, got, d, "FindTier "+d.Name)
	}
	_, err := e.s.FindTier(ctx, "platinum")
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindTier of an unknown tier")
	_, err = e.s.FindTier(e.anon, wasmwiz.TierFree)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindTier without a caller")
	_, err = e.s.ListTiers(e.anon)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "ListTiers without a caller")
}

func testPutTierCreates(t *testing.T, e *env) {
	_, admin := e.admin("root@example.com")
	team := wasmwiz.DefaultTiers()[0]
	team.Name, team.RunsPerMinute, team.RunsPerDay, team.MaxConcurrent = "team", 42, 4200, 3
	team.MaxMemoryBytes, team.Timeout, team.MaxModuleBytes = 64*wasmwiz.MiB, 1500*time.Millisecond, 2*wasmwiz.MiB
	team.MaxStdinBytes, team.MaxOutputBytes = 0, 128*wasmwiz.KiB
	// Every limit differs from the free tier it started from, so that a
	// column the store forgets shows.
	for _, f := range wasmwiz.TierFields() {
		if f.Get(team) == f.Get(wasmwiz.DefaultTiers()[0]) {
			f.Set(team, f.FromStored(f.ToStored(f.Get(team))+1))
		}
	}
	e.clock.Add(time.Hour)
	wantOK(t, e.s.PutTier(admin, team), "PutTier team")
	got, err := e.s.FindTier(admin, "team")
	wantOK(t, err, "FindTier team")
	sameLimits(t, got, team, "created tier")
	if !got.UpdatedAt.Equal(e.clock.Now()) {
		t.Fatalf("UpdatedAt = %v, want the clock's %v", got.UpdatedAt, e.clock.Now())
	}
	tiers, err := e.s.ListTiers(admin)
	wantOK(t, err, "ListTiers")
	if len(tiers) != 5 || tiers[4].Name != "team" {
		t.Fatalf("ListTiers after PutTier: %d tiers, last %q; want 5, last team", len(tiers), tiers[len(tiers)-1].Name)
	}
	// A user may be put on the new tier.
	u, _ := e.user("member@example.com", wasmwiz.TierFree)
	got2, err := e.s.UpdateUser(admin, u.ID, wasmwiz.UserUpdate{Tier: ptr("team")})
	wantOK(t, err, "UpdateUser to the new tier")
	if got2.Tier != "team" {
		t.Fatalf("UpdateUser tier = %q, want team", got2.Tier)
	}
}

func testPutTierReplaces(t *testing.T, e *env) {
	_, admin := e.admin("root@example.com")
	u, ctx := e.user("someone@example.com", wasmwiz.TierFree)
	_, plain := e.key(ctx, u.ID, "k", nil)

	free, err := e.s.FindTier(ctx, wasmwiz.TierFree)
	wantOK(t, err, "FindTier free")
	changed := *free
	changed.RunsPerMinute, changed.RunsPerDay, changed.Timeout, changed.MaxConcurrent = 3, 30, 2*time.Second, 2
	e.clock.Add(time.Minute)
	wantOK(t, e.s.PutTier(admin, &changed), "PutTier free")

	// The very next lookups see the new limits.
	got, err := e.s.FindTier(ctx, wasmwiz.TierFree)
	wantOK(t, err, "FindTier free after the change")
	sameLimits(t, got, &changed, "changed free tier")
	if !got.UpdatedAt.Equal(e.clock.Now()) {
		t.Fatalf("UpdatedAt = %v, want %v", got.UpdatedAt, e.clock.Now())
	}
	au, _, err := e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate")
	if au.Tier != wasmwiz.TierFree {
		t.Fatalf("user's tier = %q, want free", au.Tier)
	}
	usage, err := e.s.Usage(wasmwiz.NewContextWithUser(e.anon, au), e.clock.Now())
	wantOK(t, err, "Usage")
	if usage.RunsPerMinute != 3 || usage.RunsPerDay != 30 {
		t.Fatalf("Usage quotas = %d/min %d/day, want the changed 3 and 30", usage.RunsPerMinute, usage.RunsPerDay)
	}
	tiers, err := e.s.ListTiers(ctx)
	wantOK(t, err, "ListTiers")
	if len(tiers) != 4 {
		t.Fatalf("replacing a tier changed the number of tiers to %d", len(tiers))
	}
}

func testPutTierForbidden(t *testing.T, e *env) {
	_, ctx := e.user("someone@example.com", wasmwiz.TierFree)
	free, err := e.s.FindTier(ctx, wasmwiz.TierFree)
	wantOK(t, err, "FindTier")
	raised := *free
	raised.RunsPerDay = 1_000_000
	WantCode(t, e.s.PutTier(ctx, &raised), wasmwiz.EFORBIDDEN, "PutTier by a user")
	WantCode(t, e.s.PutTier(e.anon, &raised), wasmwiz.EUNAUTHORIZED, "PutTier without a caller")
	// A disabled admin is no admin (another admin stays: the last one
	// cannot be disabled).
	e.admin("other-root@example.com")
	adm, admCtx := e.admin("root@example.com")
	_, err = e.s.UpdateUser(e.sys, adm.ID, wasmwiz.UserUpdate{Disabled: ptr(true)})
	wantOK(t, err, "disable the admin")
	adm.Disabled = true
	WantCode(t, e.s.PutTier(admCtx, &raised), wasmwiz.EFORBIDDEN, "PutTier by a disabled admin")

	got, err := e.s.FindTier(ctx, wasmwiz.TierFree)
	wantOK(t, err, "FindTier")
	sameLimits(t, got, free, "free tier after refused changes")
}

func testPutTierValidates(t *testing.T, e *env) {
	_, admin := e.admin("root@example.com")
	good := *wasmwiz.DefaultTiers()[0]
	good.Name = "valid"
	tests := []struct {
		name   string
		change func(*wasmwiz.Tier)
	}{
		{"bad name", func(t *wasmwiz.Tier) { t.Name = "Not Valid!" }},
		{"empty name", func(t *wasmwiz.Tier) { t.Name = "" }},
		{"zero runs per minute", func(t *wasmwiz.Tier) { t.RunsPerMinute = 0 }},
		{"tiny memory", func(t *wasmwiz.Tier) { t.MaxMemoryBytes = 1024 }},
		{"zero timeout", func(t *wasmwiz.Tier) { t.Timeout = 0 }},
		{"zero concurrency", func(t *wasmwiz.Tier) { t.MaxConcurrent = 0 }},
	}
	for _, tt := range tests {
		bad := good
		tt.change(&bad)
		WantCode(t, e.s.PutTier(admin, &bad), wasmwiz.EINVALID, "PutTier with "+tt.name)
	}
	tiers, err := e.s.ListTiers(admin)
	wantOK(t, err, "ListTiers")
	if len(tiers) != 4 {
		t.Fatalf("invalid tiers were stored: %d tiers", len(tiers))
	}
}
