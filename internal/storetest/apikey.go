package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var apiKeyTests = []test{
	{"CreateAPIKey", testCreateAPIKey},
	{"CreateAPIKeyRefusals", testCreateAPIKeyRefusals},
	{"Authenticate", testAuthenticate},
	{"AuthenticateRefuses", testAuthenticateRefuses},
	{"ExpiredKeys", testExpiredKeys},
	{"DisabledUsersKeys", testDisabledUsersKeys},
	{"TierChangeVisibleToNextLookup", testTierChangeVisible},
	{"AuthenticateReadsCurrentTierLimits", testAuthenticateTierLimits},
	{"LastUsedAtWrittenAtMostOnceAMinute", testLastUsedAt},
	{"FindAPIKeys", testFindAPIKeys},
	{"RevokeAPIKey", testRevokeAPIKey},
	{"RevokeAPIKeyOfAnotherUser", testRevokeAPIKeyCrossTenant},
	{"APIKeysBounded", testAPIKeysBounded},
	{"APIKeysBoundedConcurrently", testAPIKeysBoundedConcurrently},
}

func sameKey(t *testing.T, got, want *wasmwiz.APIKey, what string) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.Name != want.Name || got.Prefix != want.Prefix ||
		!got.CreatedAt.Equal(want.CreatedAt) || !sameTime(got.LastUsedAt, want.LastUsedAt) ||
		!sameTime(got.ExpiresAt, want.ExpiresAt) || !sameTime(got.RevokedAt, want.RevokedAt) {
		t.Fatalf("%s: key\n{ID:%d UserID:%d Name:%q Prefix:%q Created:%v LastUsed:%s Expires:%s Revoked:%s}\nwant\n{ID:%d UserID:%d Name:%q Prefix:%q Created:%v LastUsed:%s Expires:%s Revoked:%s}",
			what, got.ID, got.UserID, got.Name, got.Prefix, got.CreatedAt, fmtTime(got.LastUsedAt), fmtTime(got.ExpiresAt), fmtTime(got.RevokedAt),
			want.ID, want.UserID, want.Name, want.Prefix, want.CreatedAt, fmtTime(want.LastUsedAt), fmtTime(want.ExpiresAt), fmtTime(want.RevokedAt))
	}
}

// findKey returns the key id as listed to the caller in ctx, or nil.
func (e *env) findKey(ctxUser *wasmwiz.User, id int64) *wasmwiz.APIKey {
	e.t.Helper()
	keys, _, err := e.s.FindAPIKeys(e.sys, wasmwiz.APIKeyFilter{UserID: ctxUser.ID, IncludeRevoked: true, Limit: 1000})
	wantOK(e.t, err, "FindAPIKeys")
	for _, k := range keys {
		if k.ID == id {
			return k
		}
	}
	return nil
}

func testCreateAPIKey(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	e.clock.Add(5 * time.Second)
	exp := e.clock.Now().Add(30 * 24 * time.Hour)
	k, plain, err := e.s.CreateAPIKey(ctx, u.ID, "laptop", &exp)
	wantOK(t, err, "CreateAPIKey")
	if !wasmwiz.LooksLikeAPIKey(plain) || !strings.HasPrefix(plain, wasmwiz.APIKeyPrefix) || len(plain) < len(wasmwiz.APIKeyPrefix)+32 {
		t.Fatalf("plaintext %q is not a ww_ key of 32+ characters", plain)
	}
	want := &wasmwiz.APIKey{ID: k.ID, UserID: u.ID, Name: "laptop", Prefix: plain[:wasmwiz.APIKeyVisiblePrefixLen],
		CreatedAt: e.clock.Now(), ExpiresAt: &exp}
	if k.ID == 0 {
		t.Fatal("CreateAPIKey did not set ID")
	}
	sameKey(t, k, want, "created key")
	if strings.Contains(k.Prefix, plain[wasmwiz.APIKeyVisiblePrefixLen:]) {
		t.Fatal("the listed prefix holds the secret part of the key")
	}
	listed := e.findKey(u, k.ID)
	if listed == nil {
		t.Fatal("the new key is not listed")
	}
	sameKey(t, listed, want, "listed key")

	// Every key is different; an admin may create keys for any user.
	_, admin := e.admin("root@example.com")
	k2, plain2 := e.key(admin, u.ID, "", nil)
	if plain2 == plain || k2.ID == k.ID || k2.UserID != u.ID {
		t.Fatalf("second key: id %d user %d, same plaintext %v", k2.ID, k2.UserID, plain2 == plain)
	}
	k3, _ := e.key(e.sys, u.ID, "ci", nil)
	if k3.UserID != u.ID {
		t.Fatalf("system-created key belongs to %d, want %d", k3.UserID, u.ID)
	}
}

func testCreateAPIKeyRefusals(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	other, _ := e.user("other@example.com", wasmwiz.TierFree)
	_, admin := e.admin("root@example.com")
	past := e.clock.Now().Add(-time.Second)
	now := e.clock.Now()
	tests := []struct {
		name string
		ctx  bool // true: the user; false: the admin
		user int64
		key  string
		exp  *time.Time
		code string
	}{
		{"another user's id", true, other.ID, "k", nil, wasmwiz.ENOTFOUND},
		{"an unknown user's id", true, other.ID + 1000, "k", nil, wasmwiz.ENOTFOUND},
		{"an unknown user (admin)", false, other.ID + 1000, "k", nil, wasmwiz.ENOTFOUND},
		{"expiry in the past", true, u.ID, "k", &past, wasmwiz.EINVALID},
		{"expiry now", true, u.ID, "k", &now, wasmwiz.EINVALID},
		{"a name too long", true, u.ID, strings.Repeat("n", 101), nil, wasmwiz.EINVALID},
	}
	for _, tt := range tests {
		c := admin
		if tt.ctx {
			c = ctx
		}
		_, plain, err := e.s.CreateAPIKey(c, tt.user, tt.key, tt.exp)
		WantCode(t, err, tt.code, "CreateAPIKey for "+tt.name)
		if plain != "" {
			t.Fatalf("CreateAPIKey for %s returned a key with its error", tt.name)
		}
	}
	_, _, err := e.s.CreateAPIKey(e.anon, u.ID, "k", nil)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "CreateAPIKey without a caller")
	keys, total, err := e.s.FindAPIKeys(e.sys, wasmwiz.APIKeyFilter{IncludeRevoked: true})
	wantListed(t, "FindAPIKeys after refused CreateAPIKey calls", keys, total, err, 0)
}

func testAuthenticate(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierBasic)
	k, plain := e.key(ctx, u.ID, "k", nil)
	other, otherCtx := e.user("other@example.com", wasmwiz.TierFree)
	ok2, plain2 := e.key(otherCtx, other.ID, "k", nil)

	gotU, gotK, err := e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate")
	e.sameTierAsFound(gotU, wasmwiz.TierBasic, "authenticated user")
	withoutTier := *gotU
	withoutTier.TierLimits = nil
	sameUser(t, &withoutTier, u, "authenticated user")
	if gotK.ID != k.ID || gotK.UserID != u.ID || gotK.Name != "k" || gotK.Prefix != k.Prefix || gotK.RevokedAt != nil {
		t.Fatalf("authenticated key %+v, want key %d of user %d", gotK, k.ID, u.ID)
	}
	gotU2, gotK2, err := e.s.Authenticate(e.anon, plain2)
	wantOK(t, err, "Authenticate the other key")
	if gotU2.ID != other.ID || gotK2.ID != ok2.ID {
		t.Fatalf("second key authenticated user %d key %d, want %d and %d", gotU2.ID, gotK2.ID, other.ID, ok2.ID)
	}
	e.sameTierAsFound(gotU2, wasmwiz.TierFree, "the other authenticated user")
}

// sameTierAsFound fails unless u, as Authenticate returned it, carries the
// tier named name with every field equal to what FindTier returns now.
func (e *env) sameTierAsFound(u *wasmwiz.User, name, what string) {
	e.t.Helper()
	if u.Tier != name {
		e.t.Fatalf("%s: tier %q, want %q", what, u.Tier, name)
	}
	if u.TierLimits == nil {
		e.t.Fatalf("%s: Authenticate returned no TierLimits", what)
	}
	found, err := e.s.FindTier(e.sys, name)
	wantOK(e.t, err, "FindTier "+name)
	sameTier(e.t, u.TierLimits, found, what+": TierLimits")
}

// sameTier fails unless got and want agree in every field, UpdatedAt
// included.
func sameTier(t *testing.T, got, want *wasmwiz.Tier, what string) {
	t.Helper()
	g, w := *got, *want
	sameInstant(t, what+": tier "+g.Name+" updated", &g.UpdatedAt, &w.UpdatedAt)
	sameLimits(t, &g, &w, what)
}

// testAuthenticateTierLimits: the tier Authenticate returns with the user is
// read with it, never remembered: a changed limit shows in the very next
// Authenticate.
func testAuthenticateTierLimits(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierPro)
	_, plain := e.key(ctx, u.ID, "k", nil)
	_, admin := e.admin("root@example.com")
	gu, _, err := e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate")
	e.sameTierAsFound(gu, wasmwiz.TierPro, "before the change")
	before := *gu.TierLimits

	tests := []struct {
		name   string
		change func(*wasmwiz.Tier)
	}{
		{"runs per minute", func(t *wasmwiz.Tier) { t.RunsPerMinute = 7 }},
		{"runs per day", func(t *wasmwiz.Tier) { t.RunsPerDay = 70 }},
		{"memory", func(t *wasmwiz.Tier) { t.MaxMemoryBytes = 3 * wasmwiz.MiB }},
		{"timeout", func(t *wasmwiz.Tier) { t.Timeout = 1500 * time.Millisecond }},
		{"module size", func(t *wasmwiz.Tier) { t.MaxModuleBytes = 2 * wasmwiz.MiB }},
		{"stdin size", func(t *wasmwiz.Tier) { t.MaxStdinBytes = 0 }},
		{"output size", func(t *wasmwiz.Tier) { t.MaxOutputBytes = 4 * wasmwiz.KiB }},
		{"concurrency", func(t *wasmwiz.Tier) { t.MaxConcurrent = 3 }},
	}
	want := before
	for _, tt := range tests {
		tt.change(&want)
		e.clock.Add(time.Second)
		put := want
		wantOK(t, e.s.PutTier(admin, &put), "PutTier "+tt.name)
		want.UpdatedAt = put.UpdatedAt
		gu, _, err := e.s.Authenticate(e.anon, plain)
		wantOK(t, err, "Authenticate after changing "+tt.name)
		if gu.TierLimits == nil {
			t.Fatalf("after changing %s, Authenticate returned no TierLimits", tt.name)
		}
		sameTier(t, gu.TierLimits, &want, "after changing "+tt.name)
		e.sameTierAsFound(gu, wasmwiz.TierPro, "after changing "+tt.name)
	}
	if want == before {
		t.Fatal("the table changed nothing")
	}
}

func testAuthenticateRefuses(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	k, plain := e.key(ctx, u.ID, "k", nil)
	revoked, revokedPlain := e.key(ctx, u.ID, "revoked", nil)
	wantOK(t, e.revoke(ctx, revoked.ID), "RevokeAPIKey")
	fresh, err := wasmwiz.GenerateAPIKey()
	wantOK(t, err, "GenerateAPIKey")
	changed := plain[:len(plain)-1] + "a"
	if changed == plain {
		changed = plain[:len(plain)-1] + "b"
	}

	tests := []struct {
		name, key string
	}{
		{"revoked", revokedPlain},
		{"unknown", fresh},
		{"empty", ""},
		{"garbage", "not a key"},
		{"one character changed", changed},
		{"upper-cased", strings.ToUpper(plain)},
		{"with a space", plain + " "},
		{"the digest itself", wasmwiz.HashAPIKey(plain)},
		{"the prefix only", k.Prefix},
		{"sql", "ww_' OR '1'='1' OR digest LIKE '%"},
	}
	for _, tt := range tests {
		gu, gk, err := e.s.Authenticate(e.anon, tt.key)
		WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Authenticate with a "+tt.name+" key")
		if gu != nil || gk != nil {
			t.Fatalf("Authenticate with a %s key returned a user or key with its error", tt.name)
		}
	}
	// The good key still works.
	_, _, err = e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate with the good key")
}

func testExpiredKeys(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	exp := e.clock.Now().Add(time.Hour)
	_, plain := e.key(ctx, u.ID, "short-lived", &exp)
	_, forever := e.key(ctx, u.ID, "forever", nil)

	e.clock.Set(exp.Add(-time.Millisecond))
	_, _, err := e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate just before expiry")
	e.clock.Set(exp)
	_, _, err = e.s.Authenticate(e.anon, plain)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Authenticate at the expiry time")
	e.clock.Add(24 * time.Hour)
	_, _, err = e.s.Authenticate(e.anon, plain)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Authenticate after expiry")
	_, _, err = e.s.Authenticate(e.anon, forever)
	wantOK(t, err, "Authenticate with a key without expiry")
}

func testDisabledUsersKeys(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, plain := e.key(ctx, u.ID, "k", nil)
	_, err := e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Disabled: ptr(true)})
	wantOK(t, err, "disable")
	_, _, err = e.s.Authenticate(e.anon, plain)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Authenticate as a disabled user")
	_, err = e.s.UpdateUser(e.sys, u.ID, wasmwiz.UserUpdate{Disabled: ptr(false)})
	wantOK(t, err, "enable")
	gu, _, err := e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate after re-enabling")
	if gu.Disabled {
		t.Fatal("the re-enabled user is reported disabled")
	}
}

func testTierChangeVisible(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, plain := e.key(ctx, u.ID, "k", nil)
	_, admin := e.admin("root@example.com")
	for _, tier := range []string{wasmwiz.TierPro, wasmwiz.TierBasic, wasmwiz.TierFree, wasmwiz.TierEnterprise} {
		_, err := e.s.UpdateUser(admin, u.ID, wasmwiz.UserUpdate{Tier: ptr(tier)})
		wantOK(t, err, "UpdateUser tier "+tier)
		gu, _, err := e.s.Authenticate(e.anon, plain)
		wantOK(t, err, "Authenticate")
		e.sameTierAsFound(gu, tier, "after moving the user to "+tier)
	}
	_, err := e.s.UpdateUser(admin, u.ID, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleAdmin)})
	wantOK(t, err, "UpdateUser role")
	gu, _, err := e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate")
	if !gu.IsAdmin() {
		t.Fatalf("after making the user an admin, Authenticate says role %q", gu.Role)
	}
}

func testLastUsedAt(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	k, plain := e.key(ctx, u.ID, "k", nil)
	idle, _ := e.key(ctx, u.ID, "idle", nil)
	if k.LastUsedAt != nil || e.findKey(u, k.ID).LastUsedAt != nil {
		t.Fatal("a new key has a last-used time")
	}
	auth := func(step string) *wasmwiz.APIKey {
		t.Helper()
		_, got, err := e.s.Authenticate(e.anon, plain)
		wantOK(t, err, "Authenticate "+step)
		return got
	}
	t0 := e.clock.Add(time.Second)
	auth("first")
	if got := e.findKey(u, k.ID).LastUsedAt; !sameTime(got, &t0) {
		t.Fatalf("after the first use last_used_at = %s, want %v", fmtTime(got), t0)
	}
	// Within a minute, no write: the time stays that of the first use.
	for _, d := range []time.Duration{time.Millisecond, 10 * time.Second, 59 * time.Second} {
		e.clock.Set(t0.Add(d))
		got := auth(fmt.Sprintf("%v later", d))
		if !sameTime(got.LastUsedAt, &t0) {
			t.Fatalf("%v after the first use Authenticate reports last used %s, want %v", d, fmtTime(got.LastUsedAt), t0)
		}
		if got := e.findKey(u, k.ID).LastUsedAt; !sameTime(got, &t0) {
			t.Fatalf("%v after the first use last_used_at = %s, want it unchanged at %v", d, fmtTime(got), t0)
		}
	}
	// More than a minute after the stored time, the next use writes it.
	t1 := e.clock.Set(t0.Add(61 * time.Second))
	auth("after a minute")
	if got := e.findKey(u, k.ID).LastUsedAt; !sameTime(got, &t1) {
		t.Fatalf("61s after the first use last_used_at = %s, want %v", fmtTime(got), t1)
	}
	t2 := e.clock.Set(t1.Add(time.Hour))
	auth("an hour later")
	if got := e.findKey(u, k.ID).LastUsedAt; !sameTime(got, &t2) {
		t.Fatalf("an hour later last_used_at = %s, want %v", fmtTime(got), t2)
	}
	if got := e.findKey(u, idle.ID).LastUsedAt; got != nil {
		t.Fatalf("a key never used has last_used_at %s", fmtTime(got))
	}
}

func testFindAPIKeys(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	other, otherCtx := e.user("other@example.com", wasmwiz.TierFree)
	_, admin := e.admin("root@example.com")
	var mine []*wasmwiz.APIKey // newest last
	for i := range 5 {
		e.clock.Add(time.Second)
		k, _ := e.key(ctx, u.ID, fmt.Sprintf("k%d", i), nil)
		mine = append(mine, k)
	}
	e.clock.Add(time.Second)
	theirs, _ := e.key(otherCtx, other.ID, "theirs", nil)
	wantOK(t, e.revoke(ctx, mine[1].ID), "RevokeAPIKey")
	mine[1] = e.findKey(u, mine[1].ID)

	ids := func(keys []*wasmwiz.APIKey) []int64 {
		var out []int64
		for _, k := range keys {
			out = append(out, k.ID)
		}
		return out
	}
	tests := []struct {
		name   string
		ctx    context.Context
		filter wasmwiz.APIKeyFilter
		want   []int64
		total  int
	}{
		{"own, active", ctx, wasmwiz.APIKeyFilter{}, []int64{mine[4].ID, mine[3].ID, mine[2].ID, mine[0].ID}, 4},
		{"own, with revoked", ctx, wasmwiz.APIKeyFilter{IncludeRevoked: true},
			[]int64{mine[4].ID, mine[3].ID, mine[2].ID, mine[1].ID, mine[0].ID}, 5},
		{"own, paged", ctx, wasmwiz.APIKeyFilter{IncludeRevoked: true, Limit: 2, Offset: 2}, []int64{mine[2].ID, mine[1].ID}, 5},
		{"another user's id is ignored", ctx, wasmwiz.APIKeyFilter{UserID: other.ID}, []int64{mine[4].ID, mine[3].ID, mine[2].ID, mine[0].ID}, 4},
		{"the other user", otherCtx, wasmwiz.APIKeyFilter{IncludeRevoked: true}, []int64{theirs.ID}, 1},
		{"admin, one user", admin, wasmwiz.APIKeyFilter{UserID: other.ID}, []int64{theirs.ID}, 1},
		{"admin, everyone", admin, wasmwiz.APIKeyFilter{IncludeRevoked: true},
			[]int64{theirs.ID, mine[4].ID, mine[3].ID, mine[2].ID, mine[1].ID, mine[0].ID}, 6},
	}
	for _, tt := range tests {
		keys, total, err := e.s.FindAPIKeys(tt.ctx, tt.filter)
		wantOK(t, err, "FindAPIKeys "+tt.name)
		if fmt.Sprint(ids(keys)) != fmt.Sprint(tt.want) || total != (wasmwiz.ListTotal{Count: tt.total}) {
			t.Fatalf("FindAPIKeys %s: ids %v total %s, want %v and %d", tt.name, ids(keys), total, tt.want, tt.total)
		}
	}
	keys, _, err := e.s.FindAPIKeys(ctx, wasmwiz.APIKeyFilter{IncludeRevoked: true})
	wantOK(t, err, "FindAPIKeys")
	for i, k := range keys {
		sameKey(t, k, mine[len(mine)-1-i], "listed key")
	}
	_, _, err = e.s.FindAPIKeys(e.anon, wasmwiz.APIKeyFilter{})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindAPIKeys without a caller")
}

func testRevokeAPIKey(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	k, plain := e.key(ctx, u.ID, "k", nil)
	keep, keepPlain := e.key(ctx, u.ID, "keep", nil)
	revokedAt := e.clock.Add(time.Minute)
	wantOK(t, e.revoke(ctx, k.ID), "RevokeAPIKey")
	_, _, err := e.s.Authenticate(e.anon, plain)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Authenticate with a revoked key")
	if got := e.findKey(u, k.ID).RevokedAt; !sameTime(got, &revokedAt) {
		t.Fatalf("revoked_at = %s, want %v", fmtTime(got), revokedAt)
	}
	// Revoking again succeeds and keeps the first time.
	e.clock.Add(time.Hour)
	wantOK(t, e.revoke(ctx, k.ID), "RevokeAPIKey again")
	if got := e.findKey(u, k.ID).RevokedAt; !sameTime(got, &revokedAt) {
		t.Fatalf("second revocation moved revoked_at to %s", fmtTime(got))
	}
	_, _, err = e.s.Authenticate(e.anon, keepPlain)
	wantOK(t, err, "Authenticate with the other key")
	// Admins revoke anyone's keys.
	_, admin := e.admin("root@example.com")
	wantOK(t, e.revoke(admin, keep.ID), "RevokeAPIKey by an admin")
	_, _, err = e.s.Authenticate(e.anon, keepPlain)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Authenticate with a key an admin revoked")
	WantCode(t, e.revoke(admin, keep.ID+1000), wasmwiz.ENOTFOUND, "RevokeAPIKey of no key")
	WantCode(t, e.revoke(e.anon, keep.ID), wasmwiz.EUNAUTHORIZED, "RevokeAPIKey without a caller")
}

func testRevokeAPIKeyCrossTenant(t *testing.T, e *env) {
	victim, victimCtx := e.user("victim@example.com", wasmwiz.TierFree)
	k, plain := e.key(victimCtx, victim.ID, "k", nil)
	_, attacker := e.user("attacker@example.com", wasmwiz.TierFree)
	WantCode(t, e.revoke(attacker, k.ID), wasmwiz.ENOTFOUND, "RevokeAPIKey of another user's key")
	_, _, err := e.s.Authenticate(e.anon, plain)
	wantOK(t, err, "Authenticate with the key another user tried to revoke")
	if got := e.findKey(victim, k.ID).RevokedAt; got != nil {
		t.Fatal("another user's RevokeAPIKey revoked the key")
	}
	// A key id that exists and one that does not answer alike.
	err1 := e.revoke(attacker, k.ID)
	err2 := e.revoke(attacker, k.ID+1000)
	sameAnswer(t, err1, fmt.Sprint(k.ID), err2, fmt.Sprint(k.ID+1000), "RevokeAPIKey")
}

// testAPIKeysBounded: a user holds at most wasmwiz.MaxActiveAPIKeys keys
// that can authenticate, whoever creates them; revoked and expired ones do
// not count, and creating a key keeps only the KeptInactiveAPIKeys revoked
// or expired last, so that no loop of creating and revoking grows the table.
func testAPIKeysBounded(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, admin := e.admin("root@example.com")
	soon := e.clock.Now().Add(time.Hour)
	var active []*wasmwiz.APIKey
	for i := range wasmwiz.MaxActiveAPIKeys - 1 {
		k, _ := e.key(ctx, u.ID, fmt.Sprint("k", i), nil)
		active = append(active, k)
	}
	e.key(ctx, u.ID, "expiring", &soon)
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"the user", ctx}, {"an admin", admin}} {
		_, plain, err := e.s.CreateAPIKey(c.ctx, u.ID, "one too many", nil)
		WantCode(t, err, wasmwiz.ECONFLICT, "CreateAPIKey past MaxActiveAPIKeys by "+c.name)
		if plain != "" {
			t.Fatal("a refused CreateAPIKey returned a key")
		}
	}
	other, octx := e.user("other@example.com", wasmwiz.TierFree)
	e.key(octx, other.ID, "another user's", nil)

	e.clock.Add(2 * time.Hour) // "expiring" expires: it no longer counts
	k, _ := e.key(ctx, u.ID, "after an expiry", nil)
	active = append(active, k)
	_, _, err := e.s.CreateAPIKey(ctx, u.ID, "one too many", nil)
	WantCode(t, err, wasmwiz.ECONFLICT, "CreateAPIKey past MaxActiveAPIKeys after an expiry")

	// Revoke one, create one, again and again: the table keeps the user's
	// active keys and the inactive ones revoked or expired last.
	var revoked []int64
	for i := range wasmwiz.KeptInactiveAPIKeys + 10 {
		e.clock.Add(time.Second)
		wantOK(t, e.revoke(ctx, active[0].ID), "RevokeAPIKey")
		revoked = append(revoked, active[0].ID)
		before := e.epoch()
		k, _ := e.key(ctx, u.ID, fmt.Sprint("rotated", i), nil)
		active = append(active[1:], k)
		// From here on each creation deletes a revoked key, which no cache
		// can hold as usable: the cache epoch stays.
		if after := e.epoch(); i >= wasmwiz.KeptInactiveAPIKeys && after != before {
			t.Fatalf("creating a key that deleted a revoked one moved the cache epoch from %d to %d", before, after)
		}
	}
	keys, total, err := e.s.FindAPIKeys(ctx, wasmwiz.APIKeyFilter{IncludeRevoked: true, Limit: 1000})
	wantListed(t, "the user's keys after the rotations", keys, total, err, wasmwiz.MaxActiveAPIKeys+wasmwiz.KeptInactiveAPIKeys)
	listed := map[int64]bool{}
	for _, k := range keys {
		listed[k.ID] = true
	}
	for _, k := range active {
		if !listed[k.ID] {
			t.Fatalf("active key %d (%s) was deleted", k.ID, k.Name)
		}
	}
	for i, id := range revoked {
		if kept := i >= len(revoked)-wasmwiz.KeptInactiveAPIKeys; listed[id] != kept {
			t.Fatalf("revoked key %d of %d: listed %v, want %v", i+1, len(revoked), listed[id], kept)
		}
	}
	keys, total, err = e.s.FindAPIKeys(octx, wasmwiz.APIKeyFilter{IncludeRevoked: true})
	wantListed(t, "the other user's keys", keys, total, err, 1)
}

// testAPIKeysBoundedConcurrently: concurrent creations cannot pass
// MaxActiveAPIKeys together.
func testAPIKeysBoundedConcurrently(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	const room, tries = 3, 12
	for i := range wasmwiz.MaxActiveAPIKeys - room {
		e.key(ctx, u.ID, fmt.Sprint("k", i), nil)
	}
	created := Racing(t, tries, "concurrent CreateAPIKey calls", wasmwiz.ECONFLICT, func(i int) error {
		_, _, err := e.s.CreateAPIKey(ctx, u.ID, fmt.Sprint("racing", i), nil)
		return err
	})
	keys, total, err := e.s.FindAPIKeys(ctx, wasmwiz.APIKeyFilter{Limit: 1000})
	wantListed(t, "the user's active keys", keys, total, err, wasmwiz.MaxActiveAPIKeys-room+created)
	if created != room {
		t.Fatalf("%d concurrent creations succeeded with room for %d", created, room)
	}
}
