package api

import (
	"encoding/json"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Run is the record one execution left (GET /api/v1/runs, GET
// /api/v1/runs/{id}): who ran what, under which tier, how it ended, and
// the run as a record to come back to: its inputs (not the module, stdin or
// env values), its state, and, read one at a time, its output up to the
// tier's max_stored_output_bytes and its webhook attempts. A background
// run's callback gets the same JSON.
type Run struct {
	ID              string    `json:"id"`      // run_…, as in the execute answer
	UserID          int64     `json:"user_id"` // 0 for anonymous runs
	APIKeyID        int64     `json:"api_key_id,omitempty"`
	ModuleID        string    `json:"module_id,omitempty"` // set when a stored module ran
	ModuleSHA256    string    `json:"module_sha256"`
	Tier            string    `json:"tier"`
	Status          Status    `json:"status"`      // empty when the run was refused or has not ended
	ExitCode        int       `json:"exit_code"`   // as in Result: JSON null unless Status.Exited()
	DurationMS      float64   `json:"duration_ms"` // the guest's
	CompileMS       float64   `json:"compile_ms"`  // compiling its module, within the same wall time
	MemoryPeakBytes int64     `json:"memory_peak_bytes"`
	StdinBytes      int64     `json:"stdin_bytes"`
	OutputBytes     int64     `json:"output_bytes"`         // stdout plus stderr
	ErrorCode       string    `json:"error_code,omitempty"` // why it was refused or failed
	CreatedAt       time.Time `json:"created_at"`

	State      RunState   `json:"state"`
	StartedAt  *time.Time `json:"started_at,omitempty"`  // the guest started
	FinishedAt *time.Time `json:"finished_at,omitempty"` // the run reached a final state

	Async       bool     `json:"async"`
	Name        string   `json:"name,omitempty"` // argv[0]
	Args        []string `json:"args"`
	EnvNames    []string `json:"env_names"` // the names of the guest's env vars, sorted; never their values
	Function    string   `json:"function,omitempty"`
	Params      []string `json:"params,omitempty"`
	StdinSHA256 string   `json:"stdin_sha256,omitempty"` // hex digest of stdin; stdin itself is not kept
	// Limits are the limits the run had, by tier limit name in the units
	// of Tier.Limits (timeout_ms, max_memory_bytes, …).
	Limits          map[string]int64 `json:"limits,omitempty"`
	CPUMS           float64          `json:"cpu_ms"` // the worker's user+system CPU time for the run
	Trap            string           `json:"trap,omitempty"`
	Results         []RunValue       `json:"results,omitempty"`
	StdoutTruncated bool             `json:"stdout_truncated"` // the run or the stored cap cut stdout
	StderrTruncated bool             `json:"stderr_truncated"`
	Message         string           `json:"message,omitempty"` // why a run was cancelled or failed
	CallbackURL     string           `json:"callback_url,omitempty"`

	// Stdout and Stderr are the output kept with the record, nil when the
	// answer did not carry it (lists leave it out). In JSON they travel as
	// in Result ("stdout" with "stdout_encoding").
	Stdout []byte `json:"-"`
	Stderr []byte `json:"-"`

	// Deliveries are the webhook delivery attempts, oldest first (one run
	// read by id).
	Deliveries []WebhookDelivery `json:"-"`
}

// runJSON is Run on the wire.
type runJSON struct {
	*runAlias
	ExitCode       *int              `json:"exit_code"`
	Stdout         *string           `json:"stdout,omitempty"`
	StdoutEncoding string            `json:"stdout_encoding,omitempty"`
	Stderr         *string           `json:"stderr,omitempty"`
	StderrEncoding string            `json:"stderr_encoding,omitempty"`
	Deliveries     []WebhookDelivery `json:"webhook_deliveries,omitempty"`
}

type runAlias Run

// MarshalJSON writes the record with exit_code null when the guest did not
// exit, as results are written, and its output when it carries it.
func (r Run) MarshalJSON() ([]byte, error) {
	j := runJSON{runAlias: (*runAlias)(&r), ExitCode: exitCode(r.Status, r.ExitCode), Deliveries: r.Deliveries}
	if r.Args == nil {
		j.Args = []string{}
	}
	if r.EnvNames == nil {
		j.EnvNames = []string{}
	}
	if r.Stdout != nil || r.Stderr != nil {
		var so, se string
		so, j.StdoutEncoding = wasmwiz.EncodeOutput(r.Stdout)
		se, j.StderrEncoding = wasmwiz.EncodeOutput(r.Stderr)
		j.Stdout, j.Stderr = &so, &se
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the record.
func (r *Run) UnmarshalJSON(data []byte) error {
	var out Run
	j := runJSON{runAlias: (*runAlias)(&out)}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if j.ExitCode != nil {
		out.ExitCode = *j.ExitCode
	}
	var err error
	if j.Stdout != nil {
		if out.Stdout, err = wasmwiz.DecodeOutput(*j.Stdout, j.StdoutEncoding); err != nil {
			return err
		}
	}
	if j.Stderr != nil {
		if out.Stderr, err = wasmwiz.DecodeOutput(*j.Stderr, j.StderrEncoding); err != nil {
			return err
		}
	}
	out.Deliveries = j.Deliveries
	*r = out
	return nil
}

// RunState is where a run is in its life; the guest's outcome is Status.
type RunState string

// Run states.
const (
	RunQueued    RunState = "queued"    // admitted, waiting for a worker (background runs)
	RunRunning   RunState = "running"   // its guest started
	RunDone      RunState = "done"      // the guest ran to an outcome (Status)
	RunCancelled RunState = "cancelled" // stopped by its caller
	RunFailed    RunState = "failed"    // the server failed it (never a guest outcome)
)

// RunStates lists every run state.
var RunStates = []RunState{RunQueued, RunRunning, RunDone, RunCancelled, RunFailed}

// Final reports whether a run in state s will not change any more.
func (s RunState) Final() bool { return s == RunDone || s == RunCancelled || s == RunFailed }

// RunValue is one value a plain function returned, as a run's record keeps
// it: the decimal as text (results answer numbers; see Value).
type RunValue struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// WebhookDelivery is one attempt to POST a run's record to its callback URL.
type WebhookDelivery struct {
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty"` // 0 when no answer came
	Error      string    `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
}

// Accepted is the answer (202) to a background run: its id, to read or
// follow (GET /api/v1/runs/{id}, …/events), and its state.
type Accepted struct {
	ID    string   `json:"id"`
	State RunState `json:"state"`
}

// Run event kinds, as GET /api/v1/runs/{id}/events and a streamed execute
// name them.
const (
	EventStdout = "stdout" // OutputEvent: a piece of the guest's stdout
	EventStderr = "stderr" // OutputEvent: a piece of its stderr
	EventState  = "state"  // StateEvent: the run's state changed
	EventResult = "result" // the end: the Run (run events) or the Result (a streamed execute)
	EventError  = "error"  // ErrorDetail: a streamed execute failed
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

// RunList is a page of runs and how many there are in all.
type RunList struct {
	Runs  []*Run `json:"runs"`
	Total int    `json:"total"`
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
