package wasmwiz

import (
	"context"
	"encoding/json"
	"sort"
	"sync/atomic"
	"time"
)

// UsageRecord is what one execution leaves: who ran what, under which tier,
// and how it ended (GET /api/v1/runs lists them), and, read one at a time,
// the run as a record to come back to: its inputs (not the module, stdin or
// env values), its state, and its output up to the tier's
// max_stored_output_bytes. A synchronous run's record is written in batches
// (internal/usage); an asynchronous run's row by row as it moves from
// queued to its end. Its JSON is the API's: the API sends it, and the Go
// client reads it, as api.Run, which is this type.
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

	// State is where the run is in its life; a synchronous run is written
	// once, done (or failed when the server failed it).
	State RunState `json:"state"`
	// StartedAt and FinishedAt are set once the guest started and once the
	// run reached a final state.
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`

	RunDetail

	// Stdout and Stderr are the output kept with the record, each cut at the
	// tier's max_stored_output_bytes (RunDetail's truncation flags say so).
	// Lists of runs leave them out.
	Stdout []byte `json:"-"`
	Stderr []byte `json:"-"`

	// Files are the files a background run's outputs matched, in path
	// order, their content kept up to the tier's max_stored_output_bytes
	// in all (the rest listed, Omitted); nil for a run that asked for
	// none. Read with one run, not in lists.
	Files []OutputFile `json:"-"`

	// Deliveries are the webhook delivery attempts, oldest first; read with
	// one run, not in lists.
	Deliveries []WebhookDelivery `json:"-"`
}

// RunDetail is the part of a run's record that is kept as one document:
// what it was asked to do and what it did beyond the usage figures.
type RunDetail struct {
	Async       bool     `json:"async"`
	Name        string   `json:"name,omitempty"` // argv[0]
	Args        []string `json:"args"`
	EnvNames    []string `json:"env_names"` // the names of the guest's env vars, sorted; never their values
	Function    string   `json:"function,omitempty"`
	Params      []string `json:"params,omitempty"`
	StdinSHA256 string   `json:"stdin_sha256,omitempty"` // hex digest of stdin; stdin itself is not kept
	// Limits are the limits the run had, by tier field name in stored units
	// (timeout_ms, max_memory_bytes, …).
	Limits          map[string]int64 `json:"limits,omitempty"`
	CPUMS           float64          `json:"cpu_ms"` // the worker's user+system CPU time for the run
	Trap            string           `json:"trap,omitempty"`
	Results         []RunValue       `json:"results,omitempty"`
	StdoutTruncated bool             `json:"stdout_truncated"` // the run or the stored cap cut stdout
	StderrTruncated bool             `json:"stderr_truncated"`
	// DetailTruncated says the record left out part of Args, EnvNames,
	// Params or Results to keep each side within RecordDetailBytes; the run
	// got and returned them whole.
	DetailTruncated bool `json:"detail_truncated,omitempty"`
	// Message says why a run was cancelled or failed, in words for people.
	Message     string `json:"message,omitempty"`
	CallbackURL string `json:"callback_url,omitempty"`
}

// RunValue is one returned value of a plain function, as text.
type RunValue struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// RunState is where a run is in its life. The guest's outcome is Status;
// State is the server's side of it.
type RunState string

// Run states.
const (
	RunQueued    RunState = "queued"    // admitted, waiting for a worker (async runs)
	RunRunning   RunState = "running"   // its guest started
	RunDone      RunState = "done"      // the guest ran to an outcome (Status)
	RunCancelled RunState = "cancelled" // stopped by its caller
	RunFailed    RunState = "failed"    // the server failed it (infrastructure, never a guest outcome)
)

// RunStates lists every RunState.
var RunStates = []RunState{RunQueued, RunRunning, RunDone, RunCancelled, RunFailed}

// Final reports whether a run in state s will not change any more.
func (s RunState) Final() bool { return s == RunDone || s == RunCancelled || s == RunFailed }

// WebhookDelivery is one attempt to POST a run's result to its callback URL.
type WebhookDelivery struct {
	RunID      string    `json:"-"`
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty"` // 0 when no answer came
	Error      string    `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
}

// runJSON is UsageRecord's JSON shape: the record with its output encoded as in
// results (UTF-8 text when valid, else base64) and the webhook attempts.
type runJSON struct {
	*runAlias
	ExitCode       *int              `json:"exit_code"` // null when the guest did not exit (Status.Exited)
	Stdout         *string           `json:"stdout,omitempty"`
	StdoutEncoding string            `json:"stdout_encoding,omitempty"`
	Stderr         *string           `json:"stderr,omitempty"`
	StderrEncoding string            `json:"stderr_encoding,omitempty"`
	Files          *[]recordFile     `json:"files,omitempty"`
	Deliveries     []WebhookDelivery `json:"webhook_deliveries,omitempty"`
}

type runAlias UsageRecord

// MarshalJSON writes the record, with exit_code null when the guest did not
// exit (Status.Exited), as results are written; stdout and stderr are
// present when the record carries them (one run read by id, not a list).
func (r UsageRecord) MarshalJSON() ([]byte, error) {
	j := runJSON{runAlias: (*runAlias)(&r), Deliveries: r.Deliveries, ExitCode: r.Status.exitCode(r.ExitCode)}
	if r.Args == nil {
		j.Args = []string{}
	}
	if r.EnvNames == nil {
		j.EnvNames = []string{}
	}
	if r.Stdout != nil || r.Stderr != nil {
		var so, se string
		so, j.StdoutEncoding = EncodeOutput(r.Stdout)
		se, j.StderrEncoding = EncodeOutput(r.Stderr)
		j.Stdout, j.Stderr = &so, &se
	}
	if r.Files != nil {
		files := recordFiles(r.Files)
		j.Files = &files
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote. It replaces all of r, so
// that a record read into one used before keeps nothing of it (no output
// a list entry does not carry), and leaves r alone on an error.
func (r *UsageRecord) UnmarshalJSON(data []byte) error {
	var out UsageRecord
	j := runJSON{runAlias: (*runAlias)(&out)}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if j.ExitCode != nil {
		out.ExitCode = *j.ExitCode
	}
	var err error
	if j.Stdout != nil {
		if out.Stdout, err = DecodeOutput(*j.Stdout, j.StdoutEncoding); err != nil {
			return err
		}
	}
	if j.Stderr != nil {
		if out.Stderr, err = DecodeOutput(*j.Stderr, j.StderrEncoding); err != nil {
			return err
		}
	}
	if j.Files != nil {
		out.Files = outputFiles(*j.Files)
	}
	out.Deliveries = j.Deliveries
	*r = out
	return nil
}

// LimitsMap returns l by tier field name in stored units, as RunDetail
// keeps it.
func LimitsMap(l Limits) map[string]int64 {
	out := map[string]int64{}
	vals := l.Values()
	i := 0
	for _, f := range TierFields() {
		if f.PerRun {
			out[f.Name] = f.ToStored(vals[i])
			i++
		}
	}
	return out
}

// LimitsFromMap reverses LimitsMap; missing names are zero.
func LimitsFromMap(m map[string]int64) Limits {
	var vals []int64
	for _, f := range TierFields() {
		if f.PerRun {
			vals = append(vals, f.FromStored(m[f.Name]))
		}
	}
	var l Limits
	_ = l.SetValues(vals)
	return l
}

// CapOutput returns b cut to max bytes (max < 0: not cut) and whether it
// was cut.
func CapOutput(b []byte, max int64) ([]byte, bool) {
	if max >= 0 && int64(len(b)) > max {
		return b[:max], true
	}
	return b, false
}

// EnvNames returns the sorted names of env, never the values.
func EnvNames(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k := range env {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RunInput is what an asynchronous run needs that its record does not
// keep: the module's bytes (empty for a stored module), stdin, the env
// values, its files (nil: none; checked), and its args and params whole
// (the record keeps them up to RecordDetailBytes).
// The store holds it from admission until the run ends.
type RunInput struct {
	Wasm  []byte
	Stdin []byte
	Env   map[string]string
	Files *RunFiles
	// Args and Params, nil in the input of a run queued before inputs kept
	// them (migration 0017 on PostgreSQL, 0016 on SQLite): such a run takes
	// its record's, which were kept whole then.
	Args   []string
	Params []string
}

// runCall is how a store keeps a RunInput's args and params: one JSON
// document, NULL when both are empty.
type runCall struct {
	Args   []string `json:"args,omitempty"`
	Params []string `json:"params,omitempty"`
}

// EncodeCall returns in's args and params as the stores keep them, nil
// when there are none.
func (in *RunInput) EncodeCall() ([]byte, error) {
	if len(in.Args) == 0 && len(in.Params) == 0 {
		return nil, nil
	}
	return json.Marshal(runCall{Args: in.Args, Params: in.Params})
}

// DecodeCall sets in's args and params from what EncodeCall returned
// (nil: none).
func (in *RunInput) DecodeCall(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var c runCall
	if err := json.Unmarshal(b, &c); err != nil {
		return WrapError(EINTERNAL, err, "a queued run's args")
	}
	in.Args, in.Params = c.Args, c.Params
	return nil
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
	Tier           string
	RunsToday      int64
	RunsPerDay     int64
	RunsThisMinute int64
	RunsPerMinute  int64

	// Stored is what the user keeps in the module registry, against the
	// tier's max_stored_modules and max_stored_module_bytes.
	Stored               StoredModules
	MaxStoredModules     int64
	MaxStoredModuleBytes int64

	// StoredRunBytes is the run output the user keeps (StoredRunBytes of
	// RunService), against the tier's max_stored_run_bytes.
	StoredRunBytes    int64
	MaxStoredRunBytes int64
}

// DailyCount is the number of runs on one UTC day.
type DailyCount struct {
	Day  string // YYYY-MM-DD
	Runs int64
}

// ModuleCount is how often a module ran.
type ModuleCount struct {
	ModuleSHA256 string
	ModuleID     string
	Runs         int64
}

// DailyRuns is one UTC day of the caller's executed runs (Status set): how
// many ended in each status, and nearest-rank duration percentiles.
type DailyRuns struct {
	Day           string // YYYY-MM-DD
	ByStatus      map[Status]int64
	P50DurationMS float64
	P95DurationMS float64
	P99DurationMS float64
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, 0 for none: the ceil(p·n/100)-th smallest value.
func Percentile(sorted []float64, p int) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := (p*n + 99) / 100
	return sorted[max(rank, 1)-1]
}

// Stats are admin totals.
type Stats struct {
	Users            int64
	ActiveKeys       int64
	RunsToday        int64
	ActiveUsersToday int64
	SuccessRate      float64 // share of today's runs with status ok
	MeanDurationMS   float64
	P95DurationMS    float64
	RunsPerDay       []DailyCount // last 30 days, oldest first
	TopModules       []ModuleCount
}

// RunService stores usage records.
type RunService interface {
	// CreateRuns inserts records in one batch. It is called by the usage
	// writer, needs no caller, and is idempotent by Run.ID. In the same
	// transaction it bumps run_count and last_run_at of the stored modules
	// that ran (ModuleID set, module still present).
	CreateRuns(ctx context.Context, runs []*UsageRecord) error
	// FindRunByID returns a run of the caller (any, for admins), or ENOTFOUND.
	FindRunByID(ctx context.Context, id string) (*UsageRecord, error)
	// FindRuns lists the caller's runs, newest first, with the matching
	// count up to MaxListTotal. EINVALID for a filter Validate refuses (an
	// unknown status, an offset past MaxListOffset).
	FindRuns(ctx context.Context, filter RunFilter) ([]*UsageRecord, ListTotal, error)
	// Usage counts the caller's runs today (UTC) and in the last minute, and
	// the modules and run output it stores, beside its tier's quotas.
	Usage(ctx context.Context, now time.Time) (*Usage, error)
	// StoredRunBytes returns the bytes of run output user keeps: the
	// stdout, stderr and files of its run records and the output its
	// running background runs' heartbeats appended. Every write and delete
	// of output counts, in its own transaction (the stores keep a counter
	// by triggers), so reading it is one indexed row. 0 for a user with
	// none. Needs no caller.
	StoredRunBytes(ctx context.Context, userID int64) (int64, error)
	// DailyRuns returns the caller's executed runs of the days UTC days
	// ending with now's (1 to 90), oldest first, every day present.
	// EUNAUTHORIZED without a caller, EINVALID for days out of range.
	DailyRuns(ctx context.Context, now time.Time, days int) ([]DailyRuns, error)
	// Stats returns admin totals at now. Admin only (EFORBIDDEN).
	Stats(ctx context.Context, now time.Time) (*Stats, error)
	// DeleteRunsBefore deletes at most batch runs created before t, of the
	// named tier (the caller's tier when it ran) or of every tier when tier
	// is "", with their stored output, inputs and webhook attempts, and
	// returns how many it deleted. Runs not in a final state are kept. Needs
	// no caller; safe to run on every replica.
	DeleteRunsBefore(ctx context.Context, t time.Time, tier string, batch int) (int, error)
}

// RunStore is a store of runs with its queue side: what background runs
// need.
type RunStore interface {
	RunService
	RunQueueService
}

// RunQueueService is the store's side of runs that outlive their request
// (asynchronous runs). Methods that need no caller are called by the queue.
type RunQueueService interface {
	// QueueRun stores r (State queued, r.UserID the caller's) and its input
	// in one transaction and, in the same transaction, calls enqueue with the
	// store's transaction (*sql.Tx for SQLite, pgx.Tx for PostgreSQL), so that
	// the run and its queue job exist together or not at all, and with the
	// run's rank: how many other runs of the caller are queued or running,
	// counted in that transaction (0: its only one). The queue takes runs by
	// rank (RunQueue.EnqueueRun), so that a caller's many runs do not make
	// another's first wait behind them all. ERATELIMIT when the caller
	// already has maxActive runs queued or running; EUNAUTHORIZED without a
	// caller.
	QueueRun(ctx context.Context, r *UsageRecord, in *RunInput, maxActive int, enqueue func(ctx context.Context, tx any, rank int) error) error
	// StartRun moves a queued run to running, in a transaction of its own,
	// and returns it with its input. A run that is not queued any more is
	// returned with ECONFLICT (its State says why): a run whose guest
	// started is never started again. ENOTFOUND for no such run. Needs no
	// caller.
	StartRun(ctx context.Context, id string) (*UsageRecord, *RunInput, error)
	// HeartbeatRun notes that the replica running id is alive and appends
	// the output the run added since the last heartbeat that reached the
	// store: stdout is the run's stdout from byte stdout.Offset on, stderr
	// likewise. Bytes the store already holds are not written again (a
	// heartbeat resent after one that failed adds each byte once), and each
	// stream is kept up to the run's tier's max_stored_output_bytes: bytes
	// past it are dropped. So the store's work is proportional to the
	// output, never to the output times the heartbeats. Reading a running
	// run returns the output appended so far. A tail that starts past the
	// bytes the store holds of its stream adds nothing: it can only follow
	// bytes the store dropped at the cap. It returns true when the run's
	// caller asked to cancel it or the run is not running any more.
	// EINVALID for a negative offset. Needs no caller.
	HeartbeatRun(ctx context.Context, id string, stdout, stderr OutputTail) (cancel bool, err error)
	// RunOutputSince returns the state of a run of the caller (any, for
	// admins) and, while it runs, the output its heartbeats appended past
	// what a follower has: stdout from byte from[0] on, stderr from from[1]
	// on, read from the pieces that hold those bytes only, so that an event
	// stream's reads are proportional to the output, not to the output
	// times its reads. A run not running has none here: its record holds
	// its output. ENOTFOUND for another tenant's run or none;
	// EUNAUTHORIZED without a caller.
	RunOutputSince(ctx context.Context, id string, from [2]int64) (RunState, [2]OutputTail, error)
	// FinishRun writes the final record of a run that is queued or running,
	// its output once in full, and deletes its input and the output its
	// heartbeats appended; it returns false, changing nothing, when the run
	// already reached a final state. A run it made final that has a
	// callback URL has its webhook enqueued in the same transaction
	// (EnqueueWebhooks). Needs no caller.
	FinishRun(ctx context.Context, r *UsageRecord, webhooks EnqueueWebhooks) (bool, error)
	// CancelRun cancels a run of the caller: a queued run is cancelled at
	// once, with its webhook enqueued in the same transaction when it has a
	// callback URL (EnqueueWebhooks); a running one is marked, and the
	// replica running it stops it at its next heartbeat (and FinishRun
	// enqueues its webhook). It returns the run as it is then. ENOTFOUND for
	// another tenant's run; ECONFLICT for a run already final.
	CancelRun(ctx context.Context, id string, webhooks EnqueueWebhooks) (*UsageRecord, error)
	// FailStaleRuns fails at most limit running runs whose replica has not
	// sent a heartbeat since before, with message, keeping the output their
	// heartbeats appended in their final record, and returns them
	// (StaleRun), read in the same statement; call it until it returns
	// fewer than limit. Each call is one transaction: one statement over
	// the runs, then one insert of the webhook jobs of those with a
	// callback URL (EnqueueWebhooks), so that a call bounded by the call
	// timeout can finish. Needs no caller; safe to run on every replica
	// (each run is failed once). EINVALID for a limit below 1;
	// EUNAVAILABLE when the database could not finish in time.
	FailStaleRuns(ctx context.Context, before time.Time, message string, limit int, webhooks EnqueueWebhooks) ([]StaleRun, error)
	// CountRuns counts runs by state, and the oldest created_at of each
	// state among queued and running ones, for metrics. Needs no caller.
	CountRuns(ctx context.Context) (map[RunState]int64, map[RunState]time.Time, error)
	// AddWebhookDelivery records one delivery attempt. Needs no caller.
	// ENOTFOUND when the run is gone (deleted while its webhook was being
	// delivered): a run's attempts never outlive it.
	AddWebhookDelivery(ctx context.Context, d *WebhookDelivery) error
	// RotateWebhookSecret makes a new webhook secret for the caller and
	// returns it; it is never shown again. EUNAUTHORIZED without a caller.
	RotateWebhookSecret(ctx context.Context) (string, error)
	// WebhookSecret returns the webhook secret of user, or ENOTFOUND when it
	// has none. Needs no caller.
	WebhookSecret(ctx context.Context, userID int64) (string, error)
}

// OutputTail is the part of a running run's output stream (stdout or
// stderr) from byte Offset on: what a heartbeat adds to what the store
// holds.
type OutputTail struct {
	Offset int64
	Data   []byte
}

// After returns the bytes of t a store holding held bytes of the stream
// appends, at offset held: those past held, cut so that the stream keeps at
// most limit bytes (limit < 0: no limit); none when t starts past held.
// EINVALID for a negative offset.
func (t OutputTail) After(held, limit int64) ([]byte, error) {
	if t.Offset < 0 {
		return nil, Errorf(EINVALID, "output from byte %d", t.Offset)
	}
	if t.Offset > held {
		return nil, nil
	}
	p := t.Data[min(held-t.Offset, int64(len(t.Data))):]
	if limit >= 0 {
		p = p[:max(min(limit-held, int64(len(p))), 0)]
	}
	return p, nil
}

// Join adds to t, which holds its stream from t.Offset on, the piece p,
// which starts at byte off of the stream: the bytes of p t already has, or
// that come before t.Offset, are dropped. A piece past a gap after t's
// bytes starts t again at off when t is empty, and is dropped otherwise.
func (t *OutputTail) Join(off int64, p []byte) {
	end := t.Offset + int64(len(t.Data))
	switch {
	case len(t.Data) == 0 && off > t.Offset:
		t.Offset, t.Data = off, append(t.Data, p...)
	case off <= end && off+int64(len(p)) > end:
		t.Data = append(t.Data, p[end-off:]...)
	}
}

// UsageRecorder takes usage records without blocking the request that made
// them. The buffered writer in usage.go is the implementation.
type UsageRecorder interface {
	// Record queues r for writing. It never blocks on the database.
	Record(r *UsageRecord)
}

// StaleRun is a run FailStaleRuns failed: whose it was and where its
// result goes, read as it was failed, so that the sweeper gives back its
// slot without reading the run again (a read that failed then lost it: the
// run is not stale any more at the next sweep).
type StaleRun struct {
	ID          string
	UserID      int64
	CallbackURL string
}

// Webhook is the delivery of a run's final record to its callback URL:
// the run, and its owner, whose deliveries a replica makes one at a time.
type Webhook struct {
	RunID  string
	UserID int64
}

// EnqueueWebhooks inserts the webhook jobs of runs that a store call made
// final, in tx, the transaction that makes them final (*sql.Tx for SQLite,
// pgx.Tx for PostgreSQL), as QueueRun's enqueue does for a run's job: so
// that a run's final state and its webhook's job are committed together or
// not at all, and neither a crash between two commits nor a queue that
// failed then loses the webhook. The store calls it once per call, with
// exactly the runs it made final that have a callback URL, and not at all
// when there are none; its error rolls the transaction back (the runs stay
// as they were) and is the call's. nil enqueues nothing (a store without a
// queue). RunQueue.EnqueueWebhooks is the one the executor passes.
type EnqueueWebhooks func(ctx context.Context, tx any, hooks []Webhook) error

// Enqueue is f, called by a store in its transaction tx, unless f is nil
// or there are no hooks.
func (f EnqueueWebhooks) Enqueue(ctx context.Context, tx any, hooks ...Webhook) error {
	if f == nil || len(hooks) == 0 {
		return nil
	}
	return f(ctx, tx, hooks)
}

// WebhooksOf returns the webhooks of the stale runs that have a callback
// URL.
func WebhooksOf(stale []StaleRun) []Webhook {
	var hooks []Webhook
	for _, r := range stale {
		if r.CallbackURL != "" {
			hooks = append(hooks, Webhook{RunID: r.ID, UserID: r.UserID})
		}
	}
	return hooks
}

// Batches sizes the batches of a background job that works through rows
// one store call at a time, each under the store's call timeout (retention,
// the stale-run sweeper): a call short enough to finish holds locks briefly
// (on SQLite, the only write lock), and a job whose one big call could not
// finish in time would fail at every round and never progress. Its zero
// value starts at the job's largest batch.
type Batches struct {
	size atomic.Int64 // the next batch; 0: the largest
}

// Run calls do with the next batch size, most at first, until a batch
// comes back short (do handled fewer rows than asked) or fails, and returns
// the rows do handled and what ended it (nil for a short batch; ctx's
// error when ctx ended). A batch that failed EUNAVAILABLE (the database
// could not finish it in time) is tried again at once a quarter as large,
// down to least, after shrunk (when not nil) hears of it; each batch that
// comes back whole doubles the next, up to most. The size carries over to
// the next Run.
func (b *Batches) Run(ctx context.Context, most, least int, do func(limit int) (int, error), shrunk func(batch int, err error)) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		batch := most
		if n := b.size.Load(); n > 0 {
			batch = int(n)
		}
		n, err := do(batch)
		total += n
		if err != nil {
			if ctx.Err() == nil && ErrorCode(err) == EUNAVAILABLE && batch > least {
				b.size.Store(int64(max(batch/4, least)))
				if shrunk != nil {
					shrunk(batch, err)
				}
				continue
			}
			return total, err
		}
		if n < batch {
			return total, nil
		}
		b.size.Store(int64(min(2*batch, most)))
	}
}
