package migration_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/wasmwiz/wasmwiz/internal/migration"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name  string
		files fstest.MapFS
		want  string // versions joined, or the error's start
	}{
		{"in order", fstest.MapFS{"m/0002_b.sql": file("B"), "m/0001_a.sql": file("A")}, "1:0001_a.sql:A 2:0002_b.sql:B"},
		{"gap", fstest.MapFS{"m/0001_a.sql": file("A"), "m/0003_c.sql": file("C")}, "error: migration 0003_c.sql: want version 2"},
		{"repeat", fstest.MapFS{"m/0001_a.sql": file("A"), "m/0001_b.sql": file("B")}, "error: migration 0001_b.sql: want version 2"},
		{"bad name", fstest.MapFS{"m/init.sql": file("A")}, `error: migration file "init.sql" is not named NNNN_name.sql`},
		{"not sql", fstest.MapFS{"m/0001_a.txt": file("A")}, `error: migration file "0001_a.txt" is not named NNNN_name.sql`},
	}
	for _, tt := range tests {
		steps, err := migration.Load(tt.files, "m")
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			var parts []string
			for _, s := range steps {
				parts = append(parts, strings.Join([]string{itoa(s.Version), s.Name, s.SQL}, ":"))
			}
			got = strings.Join(parts, " ")
		}
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func itoa(n int) string { return string(rune('0' + n)) }
