package wasmwiz_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

// TestExitCodeNullWhenTheGuestDidNotExit: results and run records write
// exit_code as null for a guest stopped by a trap or a limit, and as the
// code when it exited or returned; a result read back keeps the code.
func TestExitCodeNullWhenTheGuestDidNotExit(t *testing.T) {
	t.Parallel()
	for _, st := range wasmwiz.Statuses {
		code := 0
		if st == wasmwiz.StatusExit {
			code = 3
		}
		want := `"exit_code":null`
		if st.Exited() {
			want = `"exit_code":` + map[bool]string{true: "3", false: "0"}[code == 3]
		}
		b, err := json.Marshal(wasmwiz.ResultJSON{ID: "run_x", Result: &wasmwiz.Result{Status: st, ExitCode: code}})
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("result %s: %s, %v; want %s", st, b, err, want)
		}
		var back wasmwiz.ResultJSON
		if err := json.Unmarshal(b, &back); err != nil || back.ExitCode != code || back.Status != st {
			t.Errorf("result %s read back: %+v, %v", st, back.Result, err)
		}
		rb, err := json.Marshal(wasmwiz.UsageRecord{ID: "run_x", Status: st, ExitCode: code})
		if err != nil || !strings.Contains(string(rb), want) || strings.Count(string(rb), `"exit_code"`) != 1 {
			t.Errorf("record %s: %s, %v; want %s once", st, rb, err, want)
		}
	}
	if rb, _ := json.Marshal(wasmwiz.UsageRecord{ID: "run_refused", ErrorCode: wasmwiz.ERATELIMIT}); !strings.Contains(string(rb), `"exit_code":null`) {
		t.Errorf("a refused run's record: %s, want exit_code null", rb)
	}
}
