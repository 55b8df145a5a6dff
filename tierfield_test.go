package wasmwiz_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

func TestTierFieldsDeclared(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	flags := map[string]bool{}
	for _, f := range wasmwiz.TierFields() {
		if seen[f.Name] || flags[f.Flag] {
			t.Fatalf("tier field %s (flag %s) declared twice", f.Name, f.Flag)
		}
		seen[f.Name], flags[f.Flag] = true, true
		if f.Name != strings.ToLower(f.Name) || strings.ContainsAny(f.Name, " -") {
			t.Errorf("tier field %s: names are snake_case", f.Name)
		}
		// Every default tier is inside every field's range.
		for _, d := range wasmwiz.DefaultTiers() {
			if err := d.Validate(); err != nil {
				t.Fatalf("default tier %s: %v", d.Name, err)
			}
		}
	}
	for _, want := range []string{"runs_per_minute", "runs_per_day", "max_concurrent", "timeout_ms", "max_memory_bytes",
		"max_module_bytes", "max_stdin_bytes", "max_output_bytes"} {
		if !seen[want] {
			t.Errorf("tier field %s is missing", want)
		}
	}
	if got := strings.Count(wasmwiz.LimitsSchema(), ",") + 1; got != len(wasmwiz.Limits{}.Values()) {
		t.Fatalf("LimitsSchema names %d fields, Limits has %d", got, len(wasmwiz.Limits{}.Values()))
	}
}

func TestTierJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, d := range wasmwiz.DefaultTiers() {
		d.UpdatedAt = time.Date(2026, 12, 3, 1, 2, 3, 0, time.UTC)
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["timeout_ms"] != float64(d.Timeout.Milliseconds()) || m["max_memory_bytes"] != float64(d.MaxMemoryBytes) {
			t.Fatalf("JSON %s: timeout_ms and max_memory_bytes are milliseconds and bytes", b)
		}
		var back wasmwiz.Tier
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		back.UpdatedAt = d.UpdatedAt // ignored on input
		if back != *d {
			t.Fatalf("round trip:\n%+v\nwant\n%+v", back, *d)
		}
		// The value (not only the pointer) encodes the same.
		if b2, _ := json.Marshal(*d); string(b2) != string(b) {
			t.Fatalf("value and pointer encode differently:\n%s\n%s", b2, b)
		}
	}
}

// TestTierJSONShape: a tier is written as the API sends one: "name", the
// limits in TierFields order, "updated_at" only when set; the API's tier
// (package api) writes through the same function, and a limit may not take
// the name of the other members.
func TestTierJSONShape(t *testing.T) {
	t.Parallel()
	tier := wasmwiz.DefaultTiers()[0]
	b, err := json.Marshal(tier)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"free"`
	for _, f := range wasmwiz.TierFields() {
		want += fmt.Sprintf(`,%q:%d`, f.Name, f.ToStored(f.Get(tier)))
	}
	if string(b) != want+"}" {
		t.Fatalf("wrote %s\n want %s}", b, want)
	}
	tier.UpdatedAt = time.Date(2026, 12, 3, 1, 2, 3, 0, time.UTC)
	if b, _ = json.Marshal(tier); string(b) != want+`,"updated_at":"2026-12-03T01:02:03Z"}` {
		t.Fatalf("wrote %s with updated_at", b)
	}
	for _, name := range []string{"name", "updated_at"} {
		limits := func(yield func(string, int64) bool) { yield(name, 1) }
		if b, err := wasmwiz.MarshalTierJSON("x", limits, time.Time{}); err == nil {
			t.Errorf("a limit called %s was written: %s", name, b)
		}
	}
}

func TestTierJSONInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		check      func(*wasmwiz.Tier) bool
		code       string
		msg        string
	}{
		{"strings for people", `{"name":"x","max_memory_bytes":"64MiB","timeout_ms":"2s"}`,
			func(t *wasmwiz.Tier) bool { return t.MaxMemoryBytes == 64*wasmwiz.MiB && t.Timeout == 2*time.Second }, "", ""},
		{"duration alias", `{"timeout":"1.5s"}`,
			func(t *wasmwiz.Tier) bool { return t.Timeout == 1500*time.Millisecond }, "", ""},
		{"milliseconds", `{"timeout_ms":250}`,
			func(t *wasmwiz.Tier) bool { return t.Timeout == 250*time.Millisecond }, "", ""},
		{"both names", `{"timeout":"1s","timeout_ms":5}`, nil, wasmwiz.EINVALID, "not both"},
		{"unknown field", `{"name":"x","max_bananas":3}`, nil, wasmwiz.EINVALID, `"max_bananas"`},
		{"bad size", `{"max_memory_bytes":"lots"}`, nil, wasmwiz.EINVALID, "max_memory_bytes"},
		{"bad type", `{"runs_per_day":true}`, nil, wasmwiz.EINVALID, "runs_per_day"},
		{"not an object", `[1]`, nil, wasmwiz.EINVALID, "object"},
	}
	for _, tt := range tests {
		var tier wasmwiz.Tier
		err := json.Unmarshal([]byte(tt.body), &tier)
		if tt.code != "" {
			if wasmwiz.ErrorCode(err) != tt.code || !strings.Contains(wasmwiz.ErrorMessage(err), tt.msg) {
				t.Errorf("%s: error %v, want %s naming %q", tt.name, err, tt.code, tt.msg)
			}
			continue
		}
		if err != nil || !tt.check(&tier) {
			t.Errorf("%s: %+v, %v", tt.name, tier, err)
		}
	}
}

func TestTierValidateNamesTheField(t *testing.T) {
	t.Parallel()
	for _, f := range wasmwiz.TierFields() {
		tier := wasmwiz.DefaultTiers()[0]
		f.Set(tier, f.Min-1)
		err := tier.Validate()
		if f.Min == 0 && f.Kind != wasmwiz.LimitDuration {
			f.Set(tier, -1)
			err = tier.Validate()
		}
		if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(wasmwiz.ErrorMessage(err), f.Name) {
			t.Errorf("%s below its minimum: %v, want EINVALID naming it", f.Name, err)
		}
		if f.Max > 0 {
			tier = wasmwiz.DefaultTiers()[0]
			f.Set(tier, f.Max+1)
			if err := tier.Validate(); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
				t.Errorf("%s above its maximum: %v, want EINVALID", f.Name, err)
			}
		}
	}
}

func TestTierCheckMax(t *testing.T) {
	t.Parallel()
	tier := wasmwiz.DefaultTiers()[3] // enterprise: 120s, 1GiB
	if err := tier.CheckMax(wasmwiz.Limits{}); err != nil {
		t.Fatalf("no maxima: %v", err)
	}
	if err := tier.CheckMax(wasmwiz.Limits{Timeout: 120 * time.Second, MaxMemoryBytes: wasmwiz.GiB}); err != nil {
		t.Fatalf("at the maxima: %v", err)
	}
	err := tier.CheckMax(wasmwiz.Limits{Timeout: time.Minute, MaxMemoryBytes: 512 * wasmwiz.MiB})
	msg := wasmwiz.ErrorMessage(err)
	if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(msg, "timeout_ms 2m0s") || !strings.Contains(msg, "max_memory_bytes 1GiB") {
		t.Fatalf("over both maxima: %v", err)
	}
}

func TestLimitsValuesAndClamp(t *testing.T) {
	t.Parallel()
	l := wasmwiz.DefaultTiers()[1].Limits
	var back wasmwiz.Limits
	if err := back.SetValues(l.Values()); err != nil || back != l {
		t.Fatalf("SetValues(Values()) = %+v, %v; want %+v", back, err, l)
	}
	if err := back.SetValues(l.Values()[1:]); err == nil {
		t.Fatal("SetValues with a value missing succeeded")
	}
	got := l.Clamp(wasmwiz.Limits{Timeout: time.Second, MaxOutputBytes: 1 << 40})
	if got.Timeout != time.Second || got.MaxOutputBytes != l.MaxOutputBytes || got.MaxMemoryBytes != l.MaxMemoryBytes {
		t.Fatalf("Clamp = %+v", got)
	}
	if z := (wasmwiz.Limits{}).Clamp(l); z != l {
		t.Fatalf("zero limits clamped = %+v, want the maxima %+v", z, l)
	}
}
