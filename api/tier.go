package api

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Tier is a named set of limits (GET /api/v1/admin/tiers, GET /api/v1/me).
//
// Limits holds every limit the server declares, by its name, in the unit
// the name says: "…_bytes" in bytes, "…_ms" in milliseconds, anything else a
// count (e.g. "runs_per_minute", "max_memory_bytes", "timeout_ms"). GET
// /api/v1/me describes each one (TierLimit). In JSON the limits are members
// of the tier object beside "name" and "updated_at":
//
//	{"name":"free","runs_per_minute":10,…,"timeout_ms":5000,…,"updated_at":"…"}
//
// so a limit the server adds arrives in Limits without a change here.
type Tier struct {
	Name      string
	Limits    map[string]int64
	UpdatedAt time.Time // ignored by the server in requests
}

// MarshalJSON writes the tier as one flat object (wasmwiz.MarshalTierJSON):
// name, the limits by name in sorted order, updated_at (omitted when zero).
func (t Tier) MarshalJSON() ([]byte, error) {
	names := slices.Sorted(maps.Keys(t.Limits))
	return wasmwiz.MarshalTierJSON(t.Name, func(yield func(string, int64) bool) {
		for _, n := range names {
			if !yield(n, t.Limits[n]) {
				return
			}
		}
	}, t.UpdatedAt)
}

// UnmarshalJSON reads a tier: "name", "updated_at", and every member whose
// value is an integer as a limit. Members of other kinds are left out, so
// that a field a newer server adds does not break this reader.
func (t *Tier) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	out := Tier{Limits: map[string]int64{}}
	for k, v := range raw {
		switch k {
		case "name":
			if err := json.Unmarshal(v, &out.Name); err != nil {
				return fmt.Errorf("api: tier name: %w", err)
			}
		case "updated_at":
			if string(v) != "null" {
				if err := json.Unmarshal(v, &out.UpdatedAt); err != nil {
					return fmt.Errorf("api: tier updated_at: %w", err)
				}
			}
		default:
			var n int64
			if err := json.Unmarshal(v, &n); err == nil {
				out.Limits[k] = n
			}
		}
	}
	*t = out
	return nil
}

// TierList is every tier.
type TierList struct {
	Tiers []*Tier `json:"tiers"`
}

// TierLimit describes one limit of the caller's tier (GET /api/v1/me), so
// that a program can show limits it does not know by name.
type TierLimit struct {
	Name  string `json:"name"`  // the key in Tier.Limits, e.g. "max_memory_bytes"
	Help  string `json:"help"`  // what it bounds, e.g. "linear memory of a run"
	Value int64  `json:"value"` // as in Tier.Limits: bytes, milliseconds or a count
	Text  string `json:"text"`  // the value for people, e.g. "128MiB", "5s", "10"
}

// Me is the answer of GET /api/v1/me: the caller, its tier with the per-run
// limits as they apply (under the server's maxima), and each limit
// described.
type Me struct {
	User   *User       `json:"user"`
	Tier   *Tier       `json:"tier"`
	Limits []TierLimit `json:"limits"`
}
