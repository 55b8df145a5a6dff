package wasmwiz

import (
	"context"
	"time"
)

// Tier is a named set of limits. Users belong to one tier; only an admin can
// change a user's tier or a tier's limits, and a change applies to the next
// request of every replica.
//
// Every limit is declared once, here or in Limits, as a field with a `tier`
// tag (see tierfield.go): its JSON and column name, kind, range, CLI flag and
// help. The stores' SQL, the JSON codec, the OpenAPI schema, the CLI and the
// worker protocol derive from that declaration. Adding a limit is the field,
// its defaults in DefaultTiers, one migration per store, and the code that
// enforces it.
type Tier struct {
	Name string

	RunsPerMinute int64 `tier:"runs_per_minute,count,min=1" flag:"runs-per-minute" help:"runs per minute"`
	RunsPerDay    int64 `tier:"runs_per_day,count,min=1" flag:"runs-per-day" help:"runs per UTC day"`
	MaxConcurrent int   `tier:"max_concurrent,count,min=1,max=100000" flag:"concurrent" help:"runs in flight at once"`

	// Limits are the tier's per-run limits.
	Limits

	// MaxStoredOutputBytes caps the stdout and stderr (each) kept with a
	// run's record: what passes it is cut and the record says so.
	MaxStoredOutputBytes int64 `tier:"max_stored_output_bytes,bytes,min=0,max=1GiB" flag:"max-stored-output" help:"stdout and stderr kept with a run's record, each"`
	// AsyncTimeout is the wall time of a background run ("async": true):
	// longer than Timeout, since no connection waits for it.
	AsyncTimeout time.Duration `tier:"async_timeout_ms,duration,min=1ms,max=24h" flag:"async-timeout" help:"wall time of a background run"`

	// MaxStoredModules and MaxStoredModuleBytes are the registry quota: how
	// many modules a user may keep stored, and their bytes together. An
	// upload that would pass either is refused (ETOOLARGE) and nothing is
	// stored; deleting a module frees its share. 0 allows none.
	MaxStoredModules     int64 `tier:"max_stored_modules,count,min=0,max=1000000" flag:"max-stored-modules" help:"modules a user may keep stored"`
	MaxStoredModuleBytes int64 `tier:"max_stored_module_bytes,bytes,min=0,max=1024GiB" flag:"max-stored-module-bytes" help:"bytes of a user's stored modules together"`
	// RunRetention is how long the tier's runs are kept, their records with
	// their output and inputs; WASMWIZ_RETENTION bounds it on a server, and
	// applies alone when it is 0.
	RunRetention time.Duration `tier:"run_retention_ms,duration,min=0,max=87600h" flag:"run-retention" help:"how long a run's record and output are kept (0: as long as WASMWIZ_RETENTION)"`
	// MaxStoredRunBytes is the quota of run output a user keeps: the
	// stdout, stderr and files of its run records together (retention
	// frees them). A new run's record keeps at most what is left of it
	// (each part within max_stored_output_bytes); once it is full a
	// synchronous run still runs and answers in full but its record keeps
	// no output, and a background run is refused (ETOOLARGE). 0 keeps no
	// run output.
	MaxStoredRunBytes int64 `tier:"max_stored_run_bytes,bytes,min=0,max=1024GiB" flag:"max-stored-run-bytes" help:"run output a user's records keep together (0: none)"`

	UpdatedAt time.Time
}

// Validate returns EINVALID when the name or a limit is out of range; the
// message names the field and its range.
func (t *Tier) Validate() error {
	if !validName(t.Name) {
		return Errorf(EINVALID, "tier name must be 1-32 characters of a-z, 0-9, - and _")
	}
	for _, f := range TierFields() {
		if err := f.check(f.Get(t)); err != nil {
			return err
		}
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

// DefaultTiers returns the tiers a new database has (DESIGN §4). Output caps
// are not in the table there; they follow the stdin caps. Files in and out
// follow the module caps (at most 100 MiB a request holds in memory), and
// the bytes a run may write grow with the tier. The registry quota holds
// two of the largest modules on free and ten times more at each tier up
// (10 / 100 / 1000 / 10000 modules). The stored run output holds a day of
// runs at the stored output cap on free and grows tenfold and more
// (32MiB / 1GiB / 10GiB / 100GiB). The migrations seed the
// same values as frozen SQL; a conformance test compares them.
func DefaultTiers() []*Tier {
	return []*Tier{
		{Name: TierFree, RunsPerMinute: 10, RunsPerDay: 500, MaxConcurrent: 1, Limits: Limits{
			Timeout: 5 * time.Second, MaxMemoryBytes: 128 * MiB,
			MaxModuleBytes: 10 * MiB, MaxStdinBytes: 1 * MiB, MaxOutputBytes: 1 * MiB,
			MaxFilesInBytes: 1 * MiB, MaxFiles: 100, MaxFileWriteBytes: 16 * MiB, MaxFilesOutBytes: 1 * MiB},
			MaxStoredOutputBytes: 64 * KiB, AsyncTimeout: 30 * time.Second,
			MaxStoredModules: 10, MaxStoredModuleBytes: 20 * MiB, RunRetention: 7 * 24 * time.Hour,
			MaxStoredRunBytes: 32 * MiB},
		{Name: TierBasic, RunsPerMinute: 100, RunsPerDay: 10_000, MaxConcurrent: 5, Limits: Limits{
			Timeout: 10 * time.Second, MaxMemoryBytes: 256 * MiB,
			MaxModuleBytes: 25 * MiB, MaxStdinBytes: 5 * MiB, MaxOutputBytes: 5 * MiB,
			MaxFilesInBytes: 10 * MiB, MaxFiles: 1000, MaxFileWriteBytes: 128 * MiB, MaxFilesOutBytes: 10 * MiB},
			MaxStoredOutputBytes: 256 * KiB, AsyncTimeout: 5 * time.Minute,
			MaxStoredModules: 100, MaxStoredModuleBytes: 200 * MiB, RunRetention: 30 * 24 * time.Hour,
			MaxStoredRunBytes: 1 * GiB},
		{Name: TierPro, RunsPerMinute: 500, RunsPerDay: 50_000, MaxConcurrent: 20, Limits: Limits{
			Timeout: 30 * time.Second, MaxMemoryBytes: 512 * MiB,
			MaxModuleBytes: 50 * MiB, MaxStdinBytes: 10 * MiB, MaxOutputBytes: 10 * MiB,
			MaxFilesInBytes: 50 * MiB, MaxFiles: 10_000, MaxFileWriteBytes: 1 * GiB, MaxFilesOutBytes: 50 * MiB},
			MaxStoredOutputBytes: 1 * MiB, AsyncTimeout: 15 * time.Minute,
			MaxStoredModules: 1000, MaxStoredModuleBytes: 2 * GiB, RunRetention: 90 * 24 * time.Hour,
			MaxStoredRunBytes: 10 * GiB},
		{Name: TierEnterprise, RunsPerMinute: 5_000, RunsPerDay: 1_000_000, MaxConcurrent: 100, Limits: Limits{
			Timeout: 120 * time.Second, MaxMemoryBytes: 1 * GiB,
			MaxModuleBytes: 100 * MiB, MaxStdinBytes: 50 * MiB, MaxOutputBytes: 50 * MiB,
			MaxFilesInBytes: 100 * MiB, MaxFiles: 50_000, MaxFileWriteBytes: 4 * GiB, MaxFilesOutBytes: 100 * MiB},
			MaxStoredOutputBytes: 4 * MiB, AsyncTimeout: time.Hour,
			MaxStoredModules: 10_000, MaxStoredModuleBytes: 20 * GiB, RunRetention: 365 * 24 * time.Hour,
			MaxStoredRunBytes: 100 * GiB},
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
