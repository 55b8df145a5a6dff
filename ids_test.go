package wasmwiz

import (
	"math/big"
	"net/url"
	"sort"
	"testing"
	"time"
)

func TestNewModuleID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := NewModuleID()
		if !ValidModuleID(id) {
			t.Fatalf("NewModuleID() = %q, not a valid module id", id)
		}
		if url.PathEscape(id) != id {
			t.Fatalf("NewModuleID() = %q is not URL-safe", id)
		}
		if seen[id] {
			t.Fatalf("NewModuleID() repeated %q", id)
		}
		seen[id] = true
	}
}

// Not parallel: ids of one millisecond are ordered only among consecutive
// calls, and parallel tests make ids of other times in between.
func TestNewRunIDSortsByCreation(t *testing.T) {
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var ids []string
	// Several ids per millisecond, and milliseconds in increasing order.
	for ms := range 50 {
		for range 20 {
			ids = append(ids, NewRunID(base.Add(time.Duration(ms)*time.Millisecond)))
		}
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("run ids made in order do not sort in order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("NewRunID repeated %q", id)
		}
		seen[id] = true
		if !ValidRunID(id) || url.PathEscape(id) != id {
			t.Fatalf("NewRunID() = %q is not a valid URL-safe run id", id)
		}
	}
	// Later times sort later whatever the random parts are.
	if a, b := NewRunID(base.Add(time.Hour)), NewRunID(base); a <= b {
		t.Fatalf("id of a later time %q sorts before %q", a, b)
	}
}

func TestRunIDTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		at   time.Time
	}{
		{"epoch", time.UnixMilli(0).UTC()},
		{"now", time.Now().UTC().Truncate(time.Millisecond)},
		{"far future", time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := RunIDTime(NewRunID(tt.at))
			if !ok || !got.Equal(tt.at) {
				t.Fatalf("RunIDTime(NewRunID(%v)) = %v, %v", tt.at, got, ok)
			}
		})
	}
}

func TestValidIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		id    string
		valid func(string) bool
		want  bool
	}{
		{"module", "mod_0123456789ABCDEFabcdef", ValidModuleID, true},
		{"module too short", "mod_0123456789ABCDEFabcde", ValidModuleID, false},
		{"module bad char", "mod_0123456789ABCDEFabcd-f", ValidModuleID, false},
		{"module wrong prefix", "run_0123456789ABCDEFabcdef", ValidModuleID, false},
		{"empty", "", ValidModuleID, false},
		{"run", "run_00000000000000000000000", ValidRunID, true},
		{"run path traversal", "run_../../../../etc/passwd1", ValidRunID, false},
		{"run wrong prefix", "mod_00000000000000000000000", ValidRunID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.valid(tt.id); got != tt.want {
				t.Fatalf("valid(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestEncode128(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		hi, lo uint64
		width  int
	}{
		{"zero", 0, 0, 5},
		{"small", 0, 61, 3},
		{"max 64", 0, ^uint64(0), 11},
		{"max 80", 1<<16 - 1, ^uint64(0), 14},
		{"max 128", ^uint64(0), ^uint64(0), 22},
		{"mixed", 0xdeadbeef, 0x0123456789abcdef, 22},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := new(big.Int).Lsh(new(big.Int).SetUint64(tt.hi), 64)
			n.Or(n, new(big.Int).SetUint64(tt.lo))
			want := n.Text(62)
			// big.Int's base-62 digits are 0-9a-zA-Z; ours are 0-9A-Za-z.
			conv := []byte(want)
			for i, c := range conv {
				switch {
				case c >= 'a' && c <= 'z':
					conv[i] = 'A' + (c - 'a')
				case c >= 'A' && c <= 'Z':
					conv[i] = 'a' + (c - 'A')
				}
			}
			want = string(conv)
			for len(want) < tt.width {
				want = "0" + want
			}
			if got := encode128(tt.hi, tt.lo, tt.width); got != want {
				t.Fatalf("encode128 = %q, want %q", got, want)
			}
		})
	}
}
