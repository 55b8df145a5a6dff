package api

import (
	"encoding/json"

	"github.com/wasmwiz/wasmwiz"
)

// Run is the record one execution left (GET /api/v1/runs, GET
// /api/v1/runs/{id}): who ran what, under which tier, how it ended, and
// the run as a record to come back to: its inputs (not the module, stdin or
// env values), its state, and, read one at a time, its output up to the
// tier's max_stored_output_bytes and its webhook attempts. A background
// run's callback gets the same JSON.
//
// It is the domain's record and its codec: exit_code is JSON null unless
// Status.Exited(); Stdout and Stderr, nil when the answer did not carry
// them (lists leave them out), travel as in Result ("stdout" with
// "stdout_encoding"); Deliveries, the webhook delivery attempts oldest
// first (one run read by id), travel as "webhook_deliveries". The fields
// of what the run was asked to do and what it did beyond the usage figures
// (Async, Name, Args, …, Trap, Results, Message) are those of the embedded
// RunDetail.
type Run = wasmwiz.UsageRecord

// RunDetail is the part of a Run that says what it was asked to do and
// what it did beyond the usage figures; its fields are members of the
// run's JSON object.
type RunDetail = wasmwiz.RunDetail

// RunState is where a run is in its life; the guest's outcome is Status.
type RunState = wasmwiz.RunState

// Run states.
const (
	RunQueued    = wasmwiz.RunQueued    // admitted, waiting for a worker (background runs)
	RunRunning   = wasmwiz.RunRunning   // its guest started
	RunDone      = wasmwiz.RunDone      // the guest ran to an outcome (Status)
	RunCancelled = wasmwiz.RunCancelled // stopped by its caller
	RunFailed    = wasmwiz.RunFailed    // the server failed it (never a guest outcome)
)

// RunStates lists every run state.
var RunStates = wasmwiz.RunStates

// RunValue is one value a plain function returned, as a run's record keeps
// it: the decimal as text (results answer numbers; see Value).
type RunValue = wasmwiz.RunValue

// WebhookDelivery is one attempt to POST a run's record to its callback
// URL (its RunID is not in the JSON).
type WebhookDelivery = wasmwiz.WebhookDelivery

// Accepted is the answer (202) to a background run: its id, to read or
// follow (GET /api/v1/runs/{id}, …/events), and its state.
type Accepted struct {
	ID    string   `json:"id"`
	State RunState `json:"state"`
}

// Run event kinds, as GET /api/v1/runs/{id}/events and a streamed execute
// name them: the domain's, and the error of a streamed execute.
const (
	EventStdout = wasmwiz.EventStdout // OutputEvent: a piece of the guest's stdout
	EventStderr = wasmwiz.EventStderr // OutputEvent: a piece of its stderr
	EventState  = wasmwiz.EventState  // StateEvent: the run's state changed
	EventResult = wasmwiz.EventResult // the end: the Run (run events) or the Result (a streamed execute)
	EventError  = "error"             // ErrorDetail: a streamed execute failed
)

// OutputEvent is a piece of a guest's output: Data starts at Offset of its
// stream. In JSON, data travels as in Result ("data" with "encoding").
type OutputEvent struct {
	Offset int64
	Data   []byte
}

type outputEventJSON struct {
	Offset   int64  `json:"offset"`
	Data     string `json:"data"`
	Encoding string `json:"encoding"`
}

// MarshalJSON writes {"offset":…,"data":…,"encoding":…}.
func (e OutputEvent) MarshalJSON() ([]byte, error) {
	j := outputEventJSON{Offset: e.Offset}
	j.Data, j.Encoding = wasmwiz.EncodeOutput(e.Data)
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *OutputEvent) UnmarshalJSON(data []byte) error {
	var j outputEventJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	b, err := wasmwiz.DecodeOutput(j.Data, j.Encoding)
	if err != nil {
		return err
	}
	*e = OutputEvent{Offset: j.Offset, Data: b}
	return nil
}

// StateEvent says a run's state changed.
type StateEvent struct {
	State RunState `json:"state"`
}

// WebhookSecret is the answer of POST /api/v1/webhook-secret: the secret
// that signs the caller's webhooks from now on, shown this once, and how
// the signature is written.
type WebhookSecret struct {
	Secret    string `json:"secret"`
	Signature string `json:"signature"`
}

// RunList is a page of runs and how many there are in all, counted up to
// MaxListTotal: past it Total is MaxListTotal and TotalCapped is set.
type RunList struct {
	Runs        []*Run `json:"runs"`
	Total       int    `json:"total"`
	TotalCapped bool   `json:"total_capped"`
}

// Usage is the caller's runs and stored modules against its tier's quotas
// (GET /api/v1/usage).
type Usage struct {
	Tier           string `json:"tier"`
	RunsToday      int64  `json:"runs_today"` // UTC day
	RunsPerDay     int64  `json:"runs_per_day"`
	RunsThisMinute int64  `json:"runs_this_minute"`
	RunsPerMinute  int64  `json:"runs_per_minute"`
	// StoredModules and StoredModuleBytes are the caller's modules in the
	// registry and their bytes together; an upload past either maximum is
	// 413 ETOOLARGE.
	StoredModules        int64 `json:"stored_modules"`
	MaxStoredModules     int64 `json:"max_stored_modules"`
	StoredModuleBytes    int64 `json:"stored_module_bytes"`
	MaxStoredModuleBytes int64 `json:"max_stored_module_bytes"`
	// StoredRunBytes is the run output the caller's records keep (stdout,
	// stderr and files together); once it reaches MaxStoredRunBytes new
	// records keep no output and background runs are 413 ETOOLARGE, until
	// retention frees older records.
	StoredRunBytes    int64 `json:"stored_run_bytes"`
	MaxStoredRunBytes int64 `json:"max_stored_run_bytes"`
}

// DailyRuns is one UTC day of the caller's executed runs: how many ended
// in each status, and nearest-rank duration percentiles.
type DailyRuns struct {
	Day           string           `json:"day"` // YYYY-MM-DD
	ByStatus      map[Status]int64 `json:"by_status"`
	P50DurationMS float64          `json:"p50_duration_ms"`
	P95DurationMS float64          `json:"p95_duration_ms"`
	P99DurationMS float64          `json:"p99_duration_ms"`
}

// DailyRunsList is the answer of GET /api/v1/usage/daily, oldest day first.
type DailyRunsList struct {
	Days []DailyRuns `json:"days"`
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
