package wasmwiz

import (
	"context"
	"encoding/json"
	"time"
)

// UsageRecord is what one execution leaves for usage and analytics: who ran
// what, under which tier, and how it ended. GET /api/v1/runs lists them.
type UsageRecord struct {
	ID              string    `json:"id"`
	UserID          int64     `json:"user_id"` // 0 for anonymous runs (auth off)
	APIKeyID        int64     `json:"api_key_id,omitempty"`
	ModuleID        string    `json:"module_id,omitempty"` // set when a stored module ran
	ModuleSHA256    string    `json:"module_sha256"`
	Tier            string    `json:"tier"`
	Status          Status    `json:"status"` // empty when the run was refused
	ExitCode        int       `json:"exit_code"`
	DurationMS      float64   `json:"duration_ms"` // the guest's
	CompileMS       float64   `json:"compile_ms"`  // compiling its module for this run, within the same wall time
	MemoryPeakBytes int64     `json:"memory_peak_bytes"`
	StdinBytes      int64     `json:"stdin_bytes"`
	OutputBytes     int64     `json:"output_bytes"` // stdout plus stderr
	ErrorCode       string    `json:"error_code,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
}

// MarshalJSON writes the record with exit_code null when the guest did not
// exit (Status.Exited), as results are written.
func (r UsageRecord) MarshalJSON() ([]byte, error) {
	type plain UsageRecord
	return json.Marshal(struct {
		plain
		ExitCode *int `json:"exit_code"`
	}{plain(r), r.Status.exitCode(r.ExitCode)})
}

// RunFilter selects the caller's runs.
type RunFilter struct {
	Status Status    // empty: any
	Since  time.Time // zero: no lower bound (inclusive)
	Until  time.Time // zero: no upper bound (exclusive)
	Limit  int
	Offset int
}

// Usage is a user's consumption against its tier's quotas.
type Usage struct {
	Tier           string `json:"tier"`
	RunsToday      int64  `json:"runs_today"`
	RunsPerDay     int64  `json:"runs_per_day"`
	RunsThisMinute int64  `json:"runs_this_minute"`
	RunsPerMinute  int64  `json:"runs_per_minute"`
}

// DailyCount is the number of runs on one UTC day.
type DailyCount struct {
	Day  string `json:"day"` // YYYY-MM-DD
	Runs int64  `json:"runs"`
}

// ModuleCount is how often a module ran.
type ModuleCount struct {
	ModuleSHA256 string `json:"module_sha256"`
	ModuleID     string `json:"module_id,omitempty"`
	Runs         int64  `json:"runs"`
}

// Stats are admin totals.
type Stats struct {
	Users            int64         `json:"users"`
	ActiveKeys       int64         `json:"active_keys"`
	RunsToday        int64         `json:"runs_today"`
	ActiveUsersToday int64         `json:"active_users_today"`
	SuccessRate      float64       `json:"success_rate"` // share of today's runs with status ok
	MeanDurationMS   float64       `json:"mean_duration_ms"`
	P95DurationMS    float64       `json:"p95_duration_ms"`
	RunsPerDay       []DailyCount  `json:"runs_per_day"` // last 30 days, oldest first
	TopModules       []ModuleCount `json:"top_modules"`
}

// RunService stores usage records.
type RunService interface {
	// CreateRuns inserts records in one batch. It is called by the usage
	// writer, needs no caller, and is idempotent by UsageRecord.ID. In the same
	// transaction it bumps run_count and last_run_at of the stored modules
	// that ran (ModuleID set, module still present).
	CreateRuns(ctx context.Context, runs []*UsageRecord) error
	// FindRunByID returns a run of the caller (any, for admins), or ENOTFOUND.
	FindRunByID(ctx context.Context, id string) (*UsageRecord, error)
	// FindRuns lists the caller's runs, newest first, with the total.
	FindRuns(ctx context.Context, filter RunFilter) ([]*UsageRecord, int, error)
	// Usage counts the caller's runs today (UTC) and in the last minute.
	Usage(ctx context.Context, now time.Time) (*Usage, error)
	// Stats returns admin totals at now. Admin only (EFORBIDDEN).
	Stats(ctx context.Context, now time.Time) (*Stats, error)
	// DeleteRunsBefore deletes at most batch runs created before t and returns
	// how many it deleted. Needs no caller; safe to run on every replica.
	DeleteRunsBefore(ctx context.Context, t time.Time, batch int) (int, error)
}

// UsageRecorder takes usage records without blocking the request that made
// them. The buffered writer in usage.go is the implementation.
type UsageRecorder interface {
	// Record queues r for writing. It never blocks on the database.
	Record(r *UsageRecord)
}
