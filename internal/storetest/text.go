package storetest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

var textTests = []test{
	{"NULAndInvalidUTF8AreRefusedAlike", testBadText},
	{"ControlCharactersInNamesAreRefused", testControlInNames},
}

// testBadText: a NUL byte or invalid UTF-8 in any text a caller sends is the
// caller's mistake on every store: EINVALID naming the field where it would
// be stored or matched, ENOTFOUND where it names something that cannot
// exist. Never an internal error (PostgreSQL refuses such text itself, with
// SQLSTATE 22021), and nothing is stored.
func testBadText(t *testing.T, e *env) {
	_, admin := e.admin("root@example.com")
	u, ctx := e.user("someone@example.com", wasmwiz.TierFree)
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	for _, bad := range []string{"nul\x00byte", "bad\xffutf8", "\xc3"} {
		check := func(err error, code, what, field string) {
			t.Helper()
			WantCode(t, err, code, what+" with "+strings.ToValidUTF8(strings.ReplaceAll(bad, "\x00", `\0`), "?"))
			if field != "" && !strings.Contains(wasmwiz.ErrorMessage(err), field) {
				t.Fatalf("%s: message %q does not name %s", what, wasmwiz.ErrorMessage(err), field)
			}
		}
		check(e.s.CreateUser(e.sys, &wasmwiz.User{Email: "x" + bad + "@example.com"}), wasmwiz.EINVALID, "CreateUser email", "email")
		check(e.s.CreateUser(e.sys, &wasmwiz.User{Email: "t@example.com", Tier: bad}), wasmwiz.EINVALID, "CreateUser tier", "tier")
		_, _, err := e.s.FindUsers(admin, wasmwiz.UserFilter{Email: bad})
		check(err, wasmwiz.EINVALID, "FindUsers email filter", "email")
		_, err = e.s.UpdateUser(admin, u.ID, wasmwiz.UserUpdate{Tier: &bad})
		check(err, wasmwiz.EINVALID, "UpdateUser tier", "tier")
		_, _, err = e.s.CreateAPIKey(ctx, u.ID, bad, nil)
		check(err, wasmwiz.EINVALID, "CreateAPIKey name", "key name")
		check(e.s.CreateModule(ctx, &wasmwiz.Module{Name: bad, Wasm: wasm}), wasmwiz.EINVALID, "CreateModule name", "module name")
		check(e.s.CreateModule(ctx, &wasmwiz.Module{Description: bad, Wasm: wasm}), wasmwiz.EINVALID, "CreateModule description", "module description")
		_, _, err = e.s.FindModules(ctx, wasmwiz.ModuleFilter{Name: bad})
		check(err, wasmwiz.EINVALID, "FindModules name filter", "name")
		_, _, err = e.s.FindRuns(ctx, wasmwiz.RunFilter{Status: wasmwiz.Status(bad)})
		check(err, wasmwiz.EINVALID, "FindRuns status filter", "status")
		_, err = e.s.FindTier(ctx, bad)
		check(err, wasmwiz.ENOTFOUND, "FindTier", "")
		_, err = e.s.FindModuleByID(ctx, "mod_"+bad)
		check(err, wasmwiz.ENOTFOUND, "FindModuleByID", "")
		_, err = e.s.FindModuleWasm(ctx, "mod_"+bad)
		check(err, wasmwiz.ENOTFOUND, "FindModuleWasm", "")
		check(e.s.DeleteModule(ctx, "mod_"+bad), wasmwiz.ENOTFOUND, "DeleteModule", "")
		_, err = e.s.FindRunByID(ctx, "run_"+bad)
		check(err, wasmwiz.ENOTFOUND, "FindRunByID", "")
	}
	// Nothing was stored, and a good text of the same kinds still works.
	users, total, err := e.s.FindUsers(admin, wasmwiz.UserFilter{})
	wantListed(t, "FindUsers after the refusals (the 2 made)", users, total, err, 2)
	mods, _, err := e.s.FindModules(ctx, wasmwiz.ModuleFilter{})
	wantOK(t, err, "FindModules")
	if len(mods) != 0 {
		t.Fatalf("%d modules stored from bad text", len(mods))
	}
	wantOK(t, e.s.CreateModule(ctx, &wasmwiz.Module{Name: "ünïcödé ✓", Description: "fine", Wasm: wasm}), "CreateModule with good UTF-8")
}

// testControlInNames: a key's or a module's name is one line of a listing
// (and of an admin's terminal): a newline, a tab, an escape sequence or any
// other control character in it is EINVALID naming the field, on every
// store, and nothing is stored; a description may still span lines.
func testControlInNames(t *testing.T, e *env) {
	u, ctx := e.user("someone@example.com", wasmwiz.TierFree)
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	m := e.module(ctx, "fine.wasm", wasm, false)
	for _, bad := range []string{"two\nlines", "carriage\rreturn", "tab\there", "red\x1b[31m", "title\x1b]0;pwned\x07", "del\x7f", "c1\u009b31m", "next\u0085line"} {
		what := fmt.Sprintf(" with %q", bad)
		_, plain, err := e.s.CreateAPIKey(ctx, u.ID, bad, nil)
		WantCode(t, err, wasmwiz.EINVALID, "CreateAPIKey name"+what)
		if plain != "" || !strings.Contains(wasmwiz.ErrorMessage(err), "key name") {
			t.Fatalf("CreateAPIKey name%s: key %q, message %q", what, plain, wasmwiz.ErrorMessage(err))
		}
		err = e.s.CreateModule(ctx, &wasmwiz.Module{Name: bad, Wasm: wasm})
		WantCode(t, err, wasmwiz.EINVALID, "CreateModule name"+what)
		_, err = e.updateModule(ctx, m.ID, wasmwiz.ModuleUpdate{Name: &bad})
		WantCode(t, err, wasmwiz.EINVALID, "UpdateModule name"+what)
	}
	keys, total, err := e.s.FindAPIKeys(ctx, wasmwiz.APIKeyFilter{IncludeRevoked: true})
	wantListed(t, "keys after the refusals", keys, total, err, 0)
	mods, total, err := e.s.FindModules(ctx, wasmwiz.ModuleFilter{})
	wantListed(t, "modules after the refusals", mods, total, err, 1)
	if mods[0].Name != "fine.wasm" {
		t.Fatalf("the module was renamed to %q", mods[0].Name)
	}
	desc := "a description\nof two lines"
	_, err = e.updateModule(ctx, m.ID, wasmwiz.ModuleUpdate{Description: &desc})
	wantOK(t, err, "UpdateModule with a description of two lines")
	e.key(ctx, u.ID, "laptop ✓", nil)
}
