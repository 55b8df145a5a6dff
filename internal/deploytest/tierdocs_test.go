package deploytest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

var apiLimitRow = regexp.MustCompile("(?m)^\\s*\\| `([a-z0-9_]+)` \\| ([a-z]+) \\| (.*) \\((.*)\\) \\|$")

// docs/API.md's table of tier limits says what wasmwiz.TierFields declares:
// every limit, its unit, its help and the four defaults, in order.
func TestAPIDocTierLimits(t *testing.T) {
	t.Parallel()
	rows := apiLimitRow.FindAllStringSubmatch(readFile(t, "docs/API.md"), -1)
	fields := wasmwiz.TierFields()
	if len(rows) != len(fields) {
		t.Fatalf("docs/API.md lists %d tier limits, wasmwiz.TierFields has %d", len(rows), len(fields))
	}
	units := map[wasmwiz.LimitKind]string{wasmwiz.LimitCount: "count", wasmwiz.LimitBytes: "bytes", wasmwiz.LimitDuration: "ms"}
	for i, f := range fields {
		r := rows[i]
		var defaults []string
		for _, d := range wasmwiz.DefaultTiers() {
			defaults = append(defaults, f.Format(f.Get(d)))
		}
		want := []string{f.Name, units[f.Kind], f.Help, strings.Join(defaults, " / ")}
		if got := r[1:]; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("docs/API.md tier limit row %d: %q, want %q", i+1, got, want)
		}
	}
}

// docs/SCHEMA.md lists the tiers table's columns as the stores build them.
func TestSchemaDocTierColumns(t *testing.T) {
	t.Parallel()
	want := "| tiers | name (pk), " + wasmwiz.TierColumns("") + ", updated_at |"
	if !strings.Contains(readFile(t, "docs/SCHEMA.md"), want) {
		t.Fatalf("docs/SCHEMA.md lacks the line\n%s", want)
	}
}
