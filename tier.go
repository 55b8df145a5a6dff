package wasmwiz

import (
	"context"
	"time"
)

// Tier is a named set of limits. Users belong to one tier; only an admin can
// change a user's tier or a tier's limits, and a change applies to the next
// request of every replica.
type Tier struct {
	Name           string        `json:"name"`
	RunsPerMinute  int64         `json:"runs_per_minute"`
	RunsPerDay     int64         `json:"runs_per_day"`
	MaxMemoryBytes int64         `json:"max_memory_bytes"`
	Timeout        time.Duration `json:"-"`
	MaxModuleBytes int64         `json:"max_module_bytes"`
	MaxStdinBytes  int64         `json:"max_stdin_bytes"`
	MaxOutputBytes int64         `json:"max_output_bytes"`
	MaxConcurrent  int           `json:"max_concurrent"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

// Limits returns the per-run limits of the tier.
func (t *Tier) Limits() Limits {
	return Limits{
		Timeout:        t.Timeout,
		MaxMemoryBytes: t.MaxMemoryBytes,
		MaxOutputBytes: t.MaxOutputBytes,
		MaxModuleBytes: t.MaxModuleBytes,
		MaxStdinBytes:  t.MaxStdinBytes,
	}
}

// Validate returns EINVALID when a field is out of range.
func (t *Tier) Validate() error {
	switch {
	case !validName(t.Name):
		return Errorf(EINVALID, "tier name must be 1-32 characters of a-z, 0-9, - and _")
	case t.RunsPerMinute <= 0 || t.RunsPerDay <= 0:
		return Errorf(EINVALID, "runs per minute and per day must be positive")
	case t.MaxMemoryBytes < 64*KiB || t.MaxMemoryBytes > 4*GiB:
		return Errorf(EINVALID, "memory must be between 64KiB and 4GiB")
	case t.Timeout < time.Millisecond || t.Timeout > time.Hour:
		return Errorf(EINVALID, "timeout must be between 1ms and 1h")
	case t.MaxModuleBytes <= 0 || t.MaxStdinBytes < 0 || t.MaxOutputBytes <= 0:
		return Errorf(EINVALID, "module, stdin and output sizes must be positive")
	case t.MaxConcurrent <= 0:
		return Errorf(EINVALID, "concurrent runs must be positive")
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Default tier names.
const (
	TierFree       = "free"
	TierBasic      = "basic"
	TierPro        = "pro"
	TierEnterprise = "enterprise"
)

// DefaultTiers returns the tiers a new database is seeded with (DESIGN §4).
// Output caps are not in the table there; they follow the stdin caps.
func DefaultTiers() []*Tier {
	return []*Tier{
		{Name: TierFree, RunsPerMinute: 10, RunsPerDay: 500, MaxMemoryBytes: 128 * MiB, Timeout: 5 * time.Second,
			MaxModuleBytes: 10 * MiB, MaxStdinBytes: 1 * MiB, MaxOutputBytes: 1 * MiB, MaxConcurrent: 1},
		{Name: TierBasic, RunsPerMinute: 100, RunsPerDay: 10_000, MaxMemoryBytes: 256 * MiB, Timeout: 10 * time.Second,
			MaxModuleBytes: 25 * MiB, MaxStdinBytes: 5 * MiB, MaxOutputBytes: 5 * MiB, MaxConcurrent: 5},
		{Name: TierPro, RunsPerMinute: 500, RunsPerDay: 50_000, MaxMemoryBytes: 512 * MiB, Timeout: 30 * time.Second,
			MaxModuleBytes: 50 * MiB, MaxStdinBytes: 10 * MiB, MaxOutputBytes: 10 * MiB, MaxConcurrent: 20},
		{Name: TierEnterprise, RunsPerMinute: 5_000, RunsPerDay: 1_000_000, MaxMemoryBytes: 1 * GiB, Timeout: 120 * time.Second,
			MaxModuleBytes: 100 * MiB, MaxStdinBytes: 50 * MiB, MaxOutputBytes: 50 * MiB, MaxConcurrent: 100},
	}
}

// TierService stores tiers.
type TierService interface {
	// FindTier returns the named tier, or ENOTFOUND. Any authenticated caller
	// may read tiers (a user sees its own tier's quotas).
	FindTier(ctx context.Context, name string) (*Tier, error)
	// ListTiers returns every tier ordered by name.
	ListTiers(ctx context.Context) ([]*Tier, error)
	// PutTier creates or replaces a tier. Admin only (EFORBIDDEN otherwise);
	// EINVALID for a tier that fails Validate.
	PutTier(ctx context.Context, t *Tier) error
}
