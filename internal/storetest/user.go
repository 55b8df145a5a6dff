package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var userTests = []test{
	{"CreateUser", testCreateUser},
	{"CreateUserDefaults", testCreateUserDefaults},
	{"CreateUserRefusals", testCreateUserRefusals},
	{"EmailIsUniqueWhateverTheCase", testEmailUnique},
	{"FindUserByID", testFindUserByID},
	{"FindUsers", testFindUsers},
	{"UpdateUser", testUpdateUser},
	{"UpdateUserRefusals", testUpdateUserRefusals},
	{"LastAdminStays", testLastAdminStays},
	{"LastAdminStaysUnderRacingDemotions", testLastAdminRace},
	{"CountUsersNeedsNoCaller", testCountUsers},
}

func sameUser(t *testing.T, got, want *wasmwiz.User, what string) {
	t.Helper()
	g, w := *got, *want
	sameInstant(t, what+": created", &g.CreatedAt, &w.CreatedAt)
	if g != w {
		t.Fatalf("%s: user\n%+v\nwant\n%+v", what, g, w)
	}
}

func testCreateUser(t *testing.T, e *env) {
	e.clock.Add(90 * time.Second)
	u := &wasmwiz.User{Email: "  Ada.Lovelace@Example.COM ", Role: wasmwiz.RoleUser, Tier: wasmwiz.TierBasic}
	wantOK(t, e.s.CreateUser(e.sys, u), "CreateUser")
	if u.ID == 0 {
		t.Fatal("CreateUser did not set ID")
	}
	if u.Email != "ada.lovelace@example.com" {
		t.Fatalf("Email = %q, want it trimmed and lower-cased", u.Email)
	}
	if !u.CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("CreatedAt = %v, want the clock's %v", u.CreatedAt, e.clock.Now())
	}
	got, err := e.s.FindUserByID(e.sys, u.ID)
	wantOK(t, err, "FindUserByID")
	sameUser(t, got, &wasmwiz.User{ID: u.ID, Email: "ada.lovelace@example.com", Role: wasmwiz.RoleUser,
		Tier: wasmwiz.TierBasic, CreatedAt: e.clock.Now()}, "stored user")

	// An admin (not only the system) may create users, including admins.
	_, admin := e.admin("root@example.com")
	a2 := &wasmwiz.User{Email: "second-admin@example.com", Role: wasmwiz.RoleAdmin, Tier: wasmwiz.TierEnterprise}
	wantOK(t, e.s.CreateUser(admin, a2), "CreateUser by an admin")
	if a2.ID == 0 || a2.ID == u.ID {
		t.Fatalf("second user got id %d (first %d)", a2.ID, u.ID)
	}
}

func testCreateUserDefaults(t *testing.T, e *env) {
	u := &wasmwiz.User{Email: "plain@example.com"}
	wantOK(t, e.s.CreateUser(e.sys, u), "CreateUser without role and tier")
	got, err := e.s.FindUserByID(e.sys, u.ID)
	wantOK(t, err, "FindUserByID")
	if got.Role != wasmwiz.RoleUser || got.Tier != wasmwiz.TierFree || got.Disabled {
		t.Fatalf("defaults: role %q tier %q disabled %v; want user, free, enabled", got.Role, got.Tier, got.Disabled)
	}
}

func testCreateUserRefusals(t *testing.T, e *env) {
	_, userCtx := e.user("plain@example.com", wasmwiz.TierFree)
	tests := []struct {
		name string
		user wasmwiz.User
		code string
	}{
		{"bad email", wasmwiz.User{Email: "not-an-email"}, wasmwiz.EINVALID},
		{"empty email", wasmwiz.User{Email: ""}, wasmwiz.EINVALID},
		{"bad role", wasmwiz.User{Email: "r@example.com", Role: "root"}, wasmwiz.EINVALID},
		{"unknown tier", wasmwiz.User{Email: "t@example.com", Tier: "platinum"}, wasmwiz.EINVALID},
	}
	for _, tt := range tests {
		u := tt.user
		WantCode(t, e.s.CreateUser(e.sys, &u), tt.code, "CreateUser with "+tt.name)
	}
	u := &wasmwiz.User{Email: "sneaky@example.com", Role: wasmwiz.RoleAdmin}
	WantCode(t, e.s.CreateUser(userCtx, u), wasmwiz.EFORBIDDEN, "CreateUser by a user")
	WantCode(t, e.s.CreateUser(e.anon, u), wasmwiz.EUNAUTHORIZED, "CreateUser without a caller")
	n, err := e.s.CountUsers(e.anon)
	wantOK(t, err, "CountUsers")
	if n != 1 {
		t.Fatalf("refused CreateUser calls left %d users, want 1", n)
	}
}

func testEmailUnique(t *testing.T, e *env) {
	e.user("grace@example.com", wasmwiz.TierFree)
	for _, email := range []string{"grace@example.com", "GRACE@example.com", "Grace@Example.Com", " grace@EXAMPLE.com"} {
		u := &wasmwiz.User{Email: email}
		WantCode(t, e.s.CreateUser(e.sys, u), wasmwiz.ECONFLICT, "CreateUser "+email)
	}
	users, total, err := e.s.FindUsers(e.sys, wasmwiz.UserFilter{Email: "GRACE@EXAMPLE.COM"})
	wantOK(t, err, "FindUsers by email in another case")
	if total != (wasmwiz.ListTotal{Count: 1}) || len(users) != 1 || users[0].Email != "grace@example.com" {
		t.Fatalf("FindUsers by email: %d users, total %s", len(users), total)
	}
}

func testFindUserByID(t *testing.T, e *env) {
	a, aCtx := e.user("a@example.com", wasmwiz.TierFree)
	b, _ := e.user("b@example.com", wasmwiz.TierBasic)
	_, admin := e.admin("root@example.com")

	got, err := e.s.FindUserByID(aCtx, a.ID)
	wantOK(t, err, "FindUserByID of oneself")
	sameUser(t, got, a, "oneself")
	_, err = e.s.FindUserByID(aCtx, b.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindUserByID of another user")
	got, err = e.s.FindUserByID(admin, b.ID)
	wantOK(t, err, "FindUserByID by an admin")
	sameUser(t, got, b, "found by an admin")
	_, err = e.s.FindUserByID(admin, b.ID+1000)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindUserByID of nobody")
	_, err = e.s.FindUserByID(e.anon, a.ID)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindUserByID without a caller")
}

func testFindUsers(t *testing.T, e *env) {
	var want []*wasmwiz.User
	for i := range 7 {
		u, _ := e.user(fmt.Sprintf("user%d@example.com", i), wasmwiz.TierFree)
		want = append(want, u)
	}
	userCtx := wasmwiz.NewContextWithUser(e.anon, want[0])

	all, total, err := e.s.FindUsers(e.sys, wasmwiz.UserFilter{})
	wantListed(t, "FindUsers", all, total, err, 7)
	for i := range all {
		sameUser(t, all[i], want[i], fmt.Sprintf("user %d in id order", i))
	}
	tests := []struct {
		name          string
		filter        wasmwiz.UserFilter
		first, n, tot int
	}{
		{"first page", wasmwiz.UserFilter{Limit: 3}, 0, 3, 7},
		{"second page", wasmwiz.UserFilter{Limit: 3, Offset: 3}, 3, 3, 7},
		{"last page", wasmwiz.UserFilter{Limit: 3, Offset: 6}, 6, 1, 7},
		{"past the end", wasmwiz.UserFilter{Limit: 3, Offset: 9}, 0, 0, 7},
		{"by email", wasmwiz.UserFilter{Email: "User4@Example.com"}, 4, 1, 1},
		{"unknown email", wasmwiz.UserFilter{Email: "nobody@example.com"}, 0, 0, 0},
	}
	for _, tt := range tests {
		got, total, err := e.s.FindUsers(e.sys, tt.filter)
		wantOK(t, err, "FindUsers "+tt.name)
		if len(got) != tt.n || total != (wasmwiz.ListTotal{Count: tt.tot}) {
			t.Fatalf("FindUsers %s: %d users, total %s; want %d and %d", tt.name, len(got), total, tt.n, tt.tot)
		}
		for i := range got {
			sameUser(t, got[i], want[tt.first+i], "FindUsers "+tt.name)
		}
	}
	_, _, err = e.s.FindUsers(userCtx, wasmwiz.UserFilter{})
	WantCode(t, err, wasmwiz.EFORBIDDEN, "FindUsers by a user")
	_, _, err = e.s.FindUsers(e.anon, wasmwiz.UserFilter{})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindUsers without a caller")
}

func testUpdateUser(t *testing.T, e *env) {
	u, _ := e.user("u@example.com", wasmwiz.TierFree)
	_, admin := e.admin("root@example.com")
	tests := []struct {
		name string
		upd  wasmwiz.UserUpdate
		want func(*wasmwiz.User)
	}{
		{"tier", wasmwiz.UserUpdate{Tier: ptr(wasmwiz.TierPro)}, func(w *wasmwiz.User) { w.Tier = wasmwiz.TierPro }},
		{"role", wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleAdmin)}, func(w *wasmwiz.User) { w.Role = wasmwiz.RoleAdmin }},
		{"disable", wasmwiz.UserUpdate{Disabled: ptr(true)}, func(w *wasmwiz.User) { w.Disabled = true }},
		{"nothing", wasmwiz.UserUpdate{}, func(*wasmwiz.User) {}},
		{"all at once", wasmwiz.UserUpdate{Tier: ptr(wasmwiz.TierBasic), Role: ptr(wasmwiz.RoleUser), Disabled: ptr(false)},
			func(w *wasmwiz.User) { w.Tier, w.Role, w.Disabled = wasmwiz.TierBasic, wasmwiz.RoleUser, false }},
	}
	want := *u
	for _, tt := range tests {
		tt.want(&want)
		got, err := e.s.UpdateUser(admin, u.ID, tt.upd)
		wantOK(t, err, "UpdateUser "+tt.name)
		sameUser(t, got, &want, "UpdateUser "+tt.name+" answer")
		stored, err := e.s.FindUserByID(admin, u.ID)
		wantOK(t, err, "FindUserByID")
		sameUser(t, stored, &want, "UpdateUser "+tt.name+" stored")
	}
}

func testUpdateUserRefusals(t *testing.T, e *env) {
	u, uCtx := e.user("u@example.com", wasmwiz.TierFree)
	other, _ := e.user("other@example.com", wasmwiz.TierFree)
	_, admin := e.admin("root@example.com")

	_, err := e.s.UpdateUser(admin, u.ID, wasmwiz.UserUpdate{Tier: ptr("platinum")})
	WantCode(t, err, wasmwiz.EINVALID, "UpdateUser to an unknown tier")
	_, err = e.s.UpdateUser(admin, u.ID, wasmwiz.UserUpdate{Role: ptr(wasmwiz.Role("owner"))})
	WantCode(t, err, wasmwiz.EINVALID, "UpdateUser to an unknown role")
	_, err = e.s.UpdateUser(admin, other.ID+1000, wasmwiz.UserUpdate{Disabled: ptr(true)})
	WantCode(t, err, wasmwiz.ENOTFOUND, "UpdateUser of nobody")
	// No caller raises its own tier or role, or touches another user.
	_, err = e.s.UpdateUser(uCtx, u.ID, wasmwiz.UserUpdate{Tier: ptr(wasmwiz.TierEnterprise)})
	WantCode(t, err, wasmwiz.EFORBIDDEN, "UpdateUser of one's own tier")
	_, err = e.s.UpdateUser(uCtx, u.ID, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleAdmin)})
	WantCode(t, err, wasmwiz.EFORBIDDEN, "UpdateUser of one's own role")
	_, err = e.s.UpdateUser(uCtx, other.ID, wasmwiz.UserUpdate{Disabled: ptr(true)})
	WantCode(t, err, wasmwiz.EFORBIDDEN, "UpdateUser of another user")
	_, err = e.s.UpdateUser(e.anon, u.ID, wasmwiz.UserUpdate{Disabled: ptr(true)})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "UpdateUser without a caller")

	for _, id := range []int64{u.ID, other.ID} {
		got, err := e.s.FindUserByID(admin, id)
		wantOK(t, err, "FindUserByID")
		if got.Tier != wasmwiz.TierFree || got.Role != wasmwiz.RoleUser || got.Disabled {
			t.Fatalf("refused updates changed user %d: %+v", id, got)
		}
	}
}

func testCountUsers(t *testing.T, e *env) {
	n, err := e.s.CountUsers(e.anon)
	wantOK(t, err, "CountUsers on an empty database")
	if n != 0 {
		t.Fatalf("CountUsers on a new database = %d, want 0", n)
	}
	e.user("a@example.com", wasmwiz.TierFree)
	e.user("b@example.com", wasmwiz.TierFree)
	n, err = e.s.CountUsers(e.anon)
	wantOK(t, err, "CountUsers")
	if n != 2 {
		t.Fatalf("CountUsers = %d, want 2", n)
	}
}

// testLastAdminStays: the only active admin cannot be demoted or disabled,
// by another caller or by itself; with a second admin it can, and then the
// second is the last.
func testLastAdminStays(t *testing.T, e *env) {
	root, rootCtx := e.admin("root@example.com")
	user, _ := e.user("someone@example.com", wasmwiz.TierFree)
	for _, tt := range []struct {
		name string
		ctx  context.Context
		upd  wasmwiz.UserUpdate
	}{
		{"demoted by the system", e.sys, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleUser)}},
		{"disabled by the system", e.sys, wasmwiz.UserUpdate{Disabled: ptr(true)}},
		{"demoted by itself", rootCtx, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleUser)}},
		{"disabled by itself", rootCtx, wasmwiz.UserUpdate{Disabled: ptr(true), Tier: ptr(wasmwiz.TierBasic)}},
	} {
		_, err := e.s.UpdateUser(tt.ctx, root.ID, tt.upd)
		WantCode(t, err, wasmwiz.ECONFLICT, "the last admin "+tt.name)
		if !strings.Contains(wasmwiz.ErrorMessage(err), "last active admin") {
			t.Fatalf("%s: message %q does not say why", tt.name, wasmwiz.ErrorMessage(err))
		}
	}
	got, err := e.s.FindUserByID(e.sys, root.ID)
	wantOK(t, err, "FindUserByID")
	if !got.IsAdmin() || got.Tier != wasmwiz.TierPro {
		t.Fatalf("after the refused updates: %+v, want an enabled admin on its tier", got)
	}
	// Other changes to the last admin, and any change to others, go through.
	_, err = e.s.UpdateUser(e.sys, root.ID, wasmwiz.UserUpdate{Tier: ptr(wasmwiz.TierBasic), Disabled: ptr(false), Role: ptr(wasmwiz.RoleAdmin)})
	wantOK(t, err, "keeping the last admin an admin")
	_, err = e.s.UpdateUser(e.sys, user.ID, wasmwiz.UserUpdate{Disabled: ptr(true)})
	wantOK(t, err, "disabling a user")
	// With a second admin, the first may go; then the second is the last.
	second, _ := e.admin("second@example.com")
	_, err = e.s.UpdateUser(rootCtx, root.ID, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleUser)})
	wantOK(t, err, "demoting one of two admins")
	_, err = e.s.UpdateUser(e.sys, second.ID, wasmwiz.UserUpdate{Disabled: ptr(true)})
	WantCode(t, err, wasmwiz.ECONFLICT, "disabling the admin left")
	// A disabled admin does not count.
	_, err = e.s.UpdateUser(e.sys, root.ID, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleAdmin), Disabled: ptr(true)})
	wantOK(t, err, "a disabled admin")
	_, err = e.s.UpdateUser(e.sys, second.ID, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleUser)})
	WantCode(t, err, wasmwiz.ECONFLICT, "demoting the only enabled admin beside a disabled one")
}

// testLastAdminRace: four admins demoted at the same moment leave exactly
// one admin; the others' demotions go through, its own is ECONFLICT.
func testLastAdminRace(t *testing.T, e *env) {
	var ids []int64
	for i := range 4 {
		a, _ := e.admin(fmt.Sprintf("admin%d@example.com", i))
		ids = append(ids, a.ID)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	start := make(chan struct{})
	for i, id := range ids {
		wg.Go(func() {
			<-start
			_, errs[i] = e.s.UpdateUser(e.sys, id, wasmwiz.UserUpdate{Role: ptr(wasmwiz.RoleUser)})
		})
	}
	close(start)
	wg.Wait()
	refused := 0
	for _, err := range errs {
		switch wasmwiz.ErrorCode(err) {
		case "":
		case wasmwiz.ECONFLICT:
			refused++
		default:
			t.Fatalf("a demotion failed otherwise: %v", err)
		}
	}
	admins := 0
	for _, id := range ids {
		u, err := e.s.FindUserByID(e.sys, id)
		wantOK(t, err, "FindUserByID")
		if u.IsAdmin() {
			admins++
		}
	}
	if admins != 1 || refused != 1 {
		t.Fatalf("after four racing demotions: %d admins left and %d refusals (%v), want 1 and 1", admins, refused, errs)
	}
}
