package api

import "testing"

// TestErrorStatusTable: every code has its own status, the table has no
// other code, and reading a status back gives its code; statuses the server
// never sends read as what they mean on the way.
func TestErrorStatusTable(t *testing.T) {
	t.Parallel()
	if len(statusOf) != len(Codes) {
		t.Fatalf("the status table has %d codes, Codes %d", len(statusOf), len(Codes))
	}
	seen := map[int]string{}
	for _, code := range Codes {
		s, ok := statusOf[code]
		if !ok {
			t.Fatalf("%s has no status", code)
		}
		if other, dup := seen[s]; dup {
			t.Fatalf("%s and %s share status %d", code, other, s)
		}
		seen[s] = code
		if HTTPStatus(code) != s || CodeOfStatus(s) != code {
			t.Errorf("%s: HTTPStatus %d, CodeOfStatus(%d) = %s", code, HTTPStatus(code), s, CodeOfStatus(s))
		}
	}
	for status, want := range map[int]string{405: EINVALID, 415: EINVALID, 502: EUNAVAILABLE, 504: EUNAVAILABLE, 418: EINTERNAL, 200: EINTERNAL} {
		if got := CodeOfStatus(status); got != want {
			t.Errorf("CodeOfStatus(%d) = %s, want %s", status, got, want)
		}
	}
	if HTTPStatus("ENOSUCHCODE") != 500 {
		t.Errorf("an unknown code's status is %d", HTTPStatus("ENOSUCHCODE"))
	}
}
