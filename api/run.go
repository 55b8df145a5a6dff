package api

import (
	"encoding/json"
	"time"
)

// Run is the record one execution left (GET /api/v1/runs): who ran what,
// under which tier, and how it ended.
type Run struct {
	ID              string    `json:"id"`      // run_…, as in the execute answer
	UserID          int64     `json:"user_id"` // 0 for anonymous runs
	APIKeyID        int64     `json:"api_key_id,omitempty"`
	ModuleID        string    `json:"module_id,omitempty"` // set when a stored module ran
	ModuleSHA256    string    `json:"module_sha256"`
	Tier            string    `json:"tier"`
	Status          Status    `json:"status"`      // empty when the run was refused
	ExitCode        int       `json:"exit_code"`   // as in Result: JSON null unless Status.Exited()
	DurationMS      float64   `json:"duration_ms"` // the guest's
	CompileMS       float64   `json:"compile_ms"`  // compiling its module, within the same wall time
	MemoryPeakBytes int64     `json:"memory_peak_bytes"`
	StdinBytes      int64     `json:"stdin_bytes"`
	OutputBytes     int64     `json:"output_bytes"`         // stdout plus stderr
	ErrorCode       string    `json:"error_code,omitempty"` // why it was refused
	CreatedAt       time.Time `json:"created_at"`
}

// MarshalJSON writes the record with exit_code null when the guest did not
// exit, as results are written.
func (r Run) MarshalJSON() ([]byte, error) {
	type plain Run
	return json.Marshal(struct {
		plain
		ExitCode *int `json:"exit_code"`
	}{plain(r), exitCode(r.Status, r.ExitCode)})
}

// RunList is a page of runs and how many there are in all.
type RunList struct {
	Runs  []*Run `json:"runs"`
	Total int    `json:"total"`
}

// Usage is the caller's runs against its tier's quotas (GET /api/v1/usage).
type Usage struct {
	Tier           string `json:"tier"`
	RunsToday      int64  `json:"runs_today"` // UTC day
	RunsPerDay     int64  `json:"runs_per_day"`
	RunsThisMinute int64  `json:"runs_this_minute"`
	RunsPerMinute  int64  `json:"runs_per_minute"`
}

// Stats are the service's totals (GET /api/v1/admin/stats).
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
