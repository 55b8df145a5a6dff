package wasmwiz

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"
)

// RunQueue is the durable queue of background runs (internal/queue, on
// River).
type RunQueue interface {
	// EnqueueRun inserts the job of run id in tx, the store's transaction
	// that RunQueueService.QueueRun hands to its enqueue function, so that a
	// run and its job are committed together. rank is the one QueueRun
	// gives it (how many other runs its owner had queued or running): a
	// worker takes the runs of a lower rank first, and those of one rank
	// first come, first served, so that each user's first outstanding run
	// goes before anyone's second; in one FIFO, a user who queued many
	// long runs held the workers for all of them while everyone else's
	// waited. The queue may tell fewer ranks apart than a tier allows runs
	// (River has four priorities): the ranks past its last share that.
	EnqueueRun(ctx context.Context, tx any, id string, rank int) error
	// EnqueueWebhooks inserts, in tx, the store's transaction that makes
	// the hooks' runs final (the EnqueueWebhooks that RunQueueService's
	// FinishRun, CancelRun and FailStaleRuns call), the delivery of each
	// run's record to its callback URL, so that a run never ends without
	// its webhook; the queue retries each delivery with backoff. A hook's
	// UserID is its run's owner: a replica delivers one webhook of each
	// user at a time, so that one user's slow receivers do not make the
	// others' wait.
	EnqueueWebhooks(ctx context.Context, tx any, hooks []Webhook) error
}

// maxCallbackURLBytes bounds a callback URL.
const maxCallbackURLBytes = 2048

// errCancelled is the cause of a background run's context when its caller
// cancelled it.
var errCancelled = errors.New("cancelled by its caller")

// errStarted is the failure of a run whose guest had started on a replica
// that stopped before the run ended: it is never run again.
var errStarted = Errorf(EINTERNAL, "the replica running this run stopped before it ended; a run whose guest started is never run again")

// AsyncLimits returns the limits of a background run of tier t: the tier's,
// with its async_timeout as the wall time, the rest clamped by the server's
// maximum.
func (e *Executor) AsyncLimits(t *Tier) Limits {
	max := e.MaxLimits
	max.Timeout = 0 // a background run's wall time is async_timeout's
	l := t.Limits.Clamp(max)
	l.Timeout = t.AsyncTimeout
	return l
}

// ExecuteAsync admits req as a background run for the caller c (nil: asks
// Caller) and returns at once: the run is stored as queued with its input,
// its job is in the queue, and one event of each of the caller's quotas is
// spent now. The caller's runs queued or running together are bounded by
// the tier's max_concurrent. The run's wall time is the tier's
// async_timeout (req.Limits.Timeout may lower it); callbackURL, when set,
// receives the run's record when it ends.
//
// Errors: those of Execute for the request itself; EUNAUTHORIZED without a
// user (background runs need an API key); EINVALID for files over the
// tier's limits (kept with the run, checked as for Execute; the files its
// outputs match are kept with its record, within max_stored_output_bytes),
// a callback URL that is not http(s) or a caller without a webhook secret;
// ETOOLARGE when the caller's stored run output fills its tier's
// max_stored_run_bytes (nothing is queued or spent); ERATELIMIT for a
// quota, or for too many background runs in flight (refused by the
// limiter: ConcurrencyLimited, nothing spent; or by the store, see below);
// EUNAVAILABLE when background runs are not configured or the queue cannot
// take the run.
//
// The caller's background runs in flight are counted twice. The limiter
// holds a slot of the caller's BackgroundSlots for each, named by the
// run's id, taken with the quota events in one admission before anything
// is read from the database, and given back when the run ends, by whichever
// replica ends it (RateLimiter.ReleaseSlot): a caller at its bound is
// refused by the limiter alone, so a loop of refused requests costs no
// database work and no connection. The limiter is shared by every replica
// (Redis), so its count holds across them; but its slots can be lost (a
// replica that stopped between a run's end and its release; Redis lost or
// away, its fallback counting per replica), so the store counts again in
// QueueRun's write transaction and stays the authority. A run the store
// refuses for the caller's runs in flight keeps its quota events: it cost
// a write transaction, and the refund would let the next one in.
func (e *Executor) ExecuteAsync(ctx context.Context, c *Caller, req *RunRequest, callbackURL string) (*Execution, error) {
	ex := &Execution{}
	if c == nil {
		var err error
		if c, err = e.Caller(ctx, ""); err != nil {
			return ex, err
		}
	}
	if c.User == nil || c.User.Disabled {
		return ex, Errorf(EUNAUTHORIZED, "background runs need an API key")
	}
	if err := e.validate(c.User, req); err != nil {
		return ex, err // a request the caller got wrong, whatever this server offers
	}
	if e.Runs == nil || e.Queue == nil || e.Limiter == nil {
		return ex, Errorf(EUNAVAILABLE, "background runs are not available on this server")
	}
	tier := c.Tier
	ex.Tier = tier
	limits := e.AsyncLimits(tier).Clamp(Limits{Timeout: req.Limits.Timeout, MaxMemoryBytes: req.Limits.MaxMemoryBytes})
	ex.Limits = limits
	if req.ModuleID == "" { // a stored module's size is read once admitted
		if err := limits.CheckSizes(int64(len(req.Wasm)), int64(len(req.Stdin)), tier.Name); err != nil {
			return ex, err
		}
	}
	files, err := checkedFiles(req.Files, limits)
	if err != nil {
		return ex, err
	}
	if callbackURL != "" {
		if err := checkCallbackURL(callbackURL); err != nil {
			return ex, err
		}
	}

	// A record that could keep no output is refused before anything is
	// spent: a background run leaves nothing else.
	if err := e.outputKeep(ctx, c.User.ID, tier).refuseBackground(); err != nil {
		return ex, err
	}

	now := e.now()
	id := NewRunID(now)
	adm, err := e.admitBackground(ctx, c, id, limits, ex)
	if err != nil {
		return ex, err
	}

	// Admitted: what needs the database now, each read given back with
	// the admission when it refuses the run.
	name := req.Name
	if req.ModuleID != "" {
		// The module must be visible now; it is loaded again when the run
		// starts (it may be gone by then: the run says so).
		mod, _, err := e.module(ctx, req.ModuleID, false)
		if err == nil {
			err = limits.CheckSizes(mod.SizeBytes, int64(len(req.Stdin)), tier.Name)
		}
		if err != nil {
			adm.end(false, true)
			return ex, err
		}
		if name == "" {
			name = mod.Name
		}
	}
	if name == "" {
		name = "module.wasm"
	}
	if callbackURL != "" {
		if _, err := e.Runs.WebhookSecret(ctx, c.User.ID); err != nil {
			adm.end(false, true)
			if ErrorCode(err) == ENOTFOUND {
				return ex, Errorf(EINVALID, "a callback_url needs your webhook secret first: POST /api/v1/webhook-secret")
			}
			return ex, err
		}
	}

	ex.ID = id
	rec := &UsageRecord{ID: id, UserID: c.User.ID, ModuleID: req.ModuleID, Tier: tier.Name, CreatedAt: now.UTC(), State: RunQueued}
	if c.Key != nil {
		rec.APIKeyID = c.Key.ID
	}
	described := *req
	described.Name, described.Limits = name, limits
	rec.describe(&described)
	rec.Async = true
	rec.CallbackURL = callbackURL
	if req.ModuleID != "" {
		rec.Name = "" // a stored module runs under its own name, read when it starts
	}
	in := &RunInput{Wasm: req.Wasm, Stdin: req.Stdin, Env: req.Env, Files: files, Args: req.Args, Params: req.Params}
	// The write runs to its end (under the store's own deadlines) even when
	// the caller goes away meanwhile: cut short, its commit could land with
	// its outcome unknown here, and the run would be queued with its quota
	// events given back below.
	err = e.Runs.QueueRun(context.WithoutCancel(ctx), rec, in, tier.MaxConcurrent, func(ctx context.Context, tx any, rank int) error {
		return e.Queue.EnqueueRun(ctx, tx, rec.ID, rank)
	})
	if err != nil {
		// The store refusing the run for the caller's runs in flight (the
		// limiter had lost count of them) keeps the quota events: see above.
		adm.end(false, ErrorCode(err) != ERATELIMIT)
		ex.ID = ""
		return ex, err
	}
	adm.end(true, false)
	ex.Record = rec
	return ex, nil
}

// BackgroundSlots is the set of a caller's limiter slots (Admission.SlotSet)
// that counts its background runs queued or running, one slot per run,
// named by the run's id.
const BackgroundSlots = "background"

// backgroundSlotAllowance is what a background run's slot lives beyond the
// run's wall time: its wait in the queue, its start, its end. The slot is
// given back when the run ends; the ttl only frees one whose release was
// lost. Too short, and a run waiting longer in the queue stops being
// counted by the limiter: the store then refuses the caller's next run
// itself, at the price of a write transaction and the caller's quota event.
// Too long, and a lost release refuses the caller's runs for that long.
const backgroundSlotAllowance = 10 * time.Minute

// backgroundAdmission is what ExecuteAsync took from the limiter: the
// background run's slot, and the quota events, taken with it or earlier by
// Executor.Admit (held: with one of the runs' slots, for the body).
type backgroundAdmission struct {
	slot Admitted // the run's slot (and the quota events, unless held)
	held *Admitted
}

// end gives back, once the run was queued or refused, what the run does not
// keep: the runs' slot Admit held (at once: the body was read), the
// background slot unless the run was queued (its end gives it back), and
// with refund the quota events.
func (a *backgroundAdmission) end(queued, refund bool) {
	if a.held != nil {
		a.held.Release(refund)
	}
	if !queued {
		a.slot.Release(refund)
	}
}

// admitBackground takes the slot of the background run id of c and, unless
// Executor.Admit spent them for c already, one event of each quota. It sets
// ex.RateLimit to the quota decision.
func (e *Executor) admitBackground(ctx context.Context, c *Caller, id string, limits Limits, ex *Execution) (*backgroundAdmission, error) {
	tier := c.Tier
	a := Admission{Key: c.RateKey, SlotSet: BackgroundSlots, Holder: id,
		MaxConcurrent: tier.MaxConcurrent, SlotTTL: limits.Timeout + backgroundSlotAllowance}
	held, fromAdmit := c.held.take()
	if !fromAdmit {
		a.Quotas = TierRateLimits(tier)
	}
	adm, err := e.Limiter.Admit(ctx, a)
	if err != nil {
		if fromAdmit {
			held.Release(true)
		}
		return nil, WrapError(EUNAVAILABLE, err, "rate limiter unavailable; retry later")
	}
	if fromAdmit {
		dec := held.Decision
		ex.RateLimit = &dec
	} else if !adm.Concurrency {
		dec := adm.Decision
		ex.RateLimit = &dec
	}
	if !adm.OK() {
		if fromAdmit {
			held.Release(true)
		}
		if adm.Concurrency {
			return nil, &Error{Code: ERATELIMIT,
				Message: fmt.Sprintf("too many background runs queued or running: tier %s allows %d at a time", tier.Name, tier.MaxConcurrent),
				Err:     errors.Join(&concurrencyError{max: tier.MaxConcurrent}, &RetryAfterError{After: time.Second})}
		}
		return nil, refusal(tier, &adm)
	}
	b := &backgroundAdmission{slot: adm}
	if fromAdmit {
		b.held = &held
	}
	return b, nil
}

// releaseBackground gives back the limiter slot of the background run rec,
// which ended (or was found ended), on whichever replica admitted it.
func (e *Executor) releaseBackground(ctx context.Context, rec *UsageRecord) {
	if e.Limiter == nil || rec == nil || rec.UserID == 0 {
		return
	}
	_ = e.Limiter.ReleaseSlot(context.WithoutCancel(ctx), RateKey(&User{ID: rec.UserID}, ""), BackgroundSlots, rec.ID)
}

// checkCallbackURL accepts an absolute http or https URL with a host. Where
// it may connect is checked at connect time, on the resolved address, by
// the queue's webhook sender.
func checkCallbackURL(s string) error {
	if len(s) > maxCallbackURLBytes {
		return Errorf(EINVALID, "callback_url is longer than %d bytes", maxCallbackURLBytes)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return Errorf(EINVALID, "callback_url must be an http or https URL without credentials")
	}
	return nil
}

func (e *Executor) heartbeatInterval() time.Duration {
	if e.HeartbeatInterval > 0 {
		return e.HeartbeatInterval
	}
	return 2 * time.Second
}

// RunQueued runs the queued run id on this replica; the queue's job calls
// it. The run moves to running in a transaction of its own before its guest
// starts; a run that is not queued any more is left alone, never run
// twice. One found running is a job the queue rescued or retried while its
// guest runs, on a replica that is alive (it finishes the run) or stopped
// (its heartbeats stopped, and the stale-run sweeper fails the run,
// FailStaleRuns): either way, not this job's to end. While the guest runs, the replica sends a
// heartbeat every HeartbeatInterval with the output added since the last
// heartbeat the store took (RunQueueService.HeartbeatRun), and stops the
// guest (killing its worker) when the caller cancelled the run. The final
// record is written, with a webhook delivery enqueued in its transaction
// when the run has a callback URL, and a result event published.
//
// It returns an error only when the run did not start and may be tried
// again (the store was unavailable); everything after the start is the
// run's record.
func (e *Executor) RunQueued(ctx context.Context, id string) error {
	rec, in, err := e.Runs.StartRun(ctx, id)
	switch {
	case ErrorCode(err) == ECONFLICT && rec != nil && rec.State == RunRunning:
		return nil // its replica's, or the sweeper's (see above)
	case ErrorCode(err) == ECONFLICT || ErrorCode(err) == ENOTFOUND:
		// Cancelled or already ended: its slot was given back then, or is
		// now (a release that was lost). Deleted (ENOTFOUND, no record):
		// nothing says whose slot it held, which expires at its TTL.
		e.releaseBackground(ctx, rec)
		return nil
	case err != nil:
		return err
	}
	e.publish(RunEvent{RunID: id, Kind: EventState, Data: []byte(RunRunning)})

	// What the record keeps is decided as the guest starts: the quota may
	// have filled since the run was admitted.
	k := outputKeep{each: -1}
	if t, err := e.Tiers.FindTier(SystemContext(ctx), rec.Tier); err == nil {
		k = e.outputKeep(ctx, rec.UserID, t)
	}
	live := newLiveOutput(id, e.Events, k.each)
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		e.heartbeat(runCtx, id, live, stop, cancel)
	}()

	// The guest acts for the run's owner: a stored module is loaded as
	// that user sees it.
	owner := NewContextWithUser(runCtx, &User{ID: rec.UserID, Role: RoleUser, Tier: rec.Tier})
	req := &RunRequest{Wasm: in.Wasm, Name: rec.Name, Stdin: in.Stdin, Args: in.Args, Env: in.Env, Files: in.Files,
		Function: rec.Function, Params: in.Params, Limits: LimitsFromMap(rec.Limits), OnOutput: live.add}
	if in.Args == nil && in.Params == nil { // queued before inputs kept them: the record's are whole
		req.Args, req.Params = rec.Args, rec.Params
	}
	res, runErr := e.runQueued(owner, rec, req)
	close(stop)
	wg.Wait()
	live.flush()

	switch cause := context.Cause(runCtx); {
	case errors.Is(cause, errCancelled):
		rec.State, rec.Message = RunCancelled, "cancelled while running"
		rec.Stdout, rec.Stderr, rec.StdoutTruncated, rec.StderrTruncated = live.kept()
		k.noteLiveCut(rec)
		now := e.now().UTC()
		rec.FinishedAt = &now
		if rec.StartedAt != nil {
			rec.DurationMS = float64(now.Sub(*rec.StartedAt).Microseconds()) / 1000
		}
	case errors.Is(cause, errStarted):
		return nil // the sweeper failed it: its heartbeats stopped reaching the store
	case runErr != nil && ctx.Err() != nil:
		rec.setFailed(Errorf(EUNAVAILABLE, "the replica stopped while the run was running; it is not run again"), e.now())
		rec.Stdout, rec.Stderr, rec.StdoutTruncated, rec.StderrTruncated = live.kept()
		k.noteLiveCut(rec)
	case runErr != nil:
		switch code := ErrorCode(runErr); code {
		case EINVALID, ETOOLARGE, ENOTFOUND:
			// The caller's mistake, found when the guest was to start: done,
			// with the error as for a synchronous run.
			rec.State, rec.ErrorCode, rec.Message = RunDone, code, ErrorMessage(runErr)
			now := e.now().UTC()
			rec.FinishedAt = &now
		default:
			rec.setFailed(runErr, e.now())
		}
	default:
		k.keep(rec, res)
		k.keepFiles(rec, res.Files)
	}
	e.chargeStoredRun(rec.UserID, rec)
	_ = e.finish(context.WithoutCancel(ctx), rec) // not written: still running, for the sweeper
	return nil
}

// AbandonQueued fails the queued run id that its job could not start on its
// last attempt (cause: that attempt's error): the queue gives the job up,
// and the run would stay queued for good, holding a place of its owner's
// max_concurrent. Its followers are told, its slot given back and its
// webhook queued, as for any run that ends. A run no longer queued is left
// as it is. It returns the store's error when the run could not be read or
// failed (it is still queued).
func (e *Executor) AbandonQueued(ctx context.Context, id string, cause error) error {
	if e.Runs == nil {
		return Errorf(EUNAVAILABLE, "background runs are not available on this server")
	}
	rec, err := e.Runs.FindRunByID(SystemContext(ctx), id)
	switch {
	case ErrorCode(err) == ENOTFOUND:
		return nil
	case err != nil:
		return err
	case rec.State != RunQueued:
		return nil
	}
	rec.setFailed(WrapError(EUNAVAILABLE, cause, "the run could not be started; it is not run again"), e.now())
	// A failed write leaves the run queued, which no sweeper fails: the
	// caller (the queue) keeps what it needs to try again.
	return e.finish(ctx, rec)
}

// runQueued loads a background run's stored module, if it has one, and
// runs the request on the engine.
func (e *Executor) runQueued(ctx context.Context, rec *UsageRecord, req *RunRequest) (*Result, error) {
	if rec.ModuleID != "" {
		mod, _, err := e.module(ctx, rec.ModuleID, false)
		if err != nil {
			return nil, err
		}
		req.SHA256, req.Wasm, req.LoadWasm, req.Name = mod.SHA256, nil, e.loader(mod), mod.Name
		rec.ModuleSHA256 = mod.SHA256
	} else {
		req.SHA256 = ModuleDigest(req.Wasm)
	}
	if req.Name == "" {
		req.Name = "module.wasm"
	}
	res, err := e.Engine.Run(ctx, req)
	if err == nil && res == nil {
		err = Errorf(EINTERNAL, "engine returned no result")
	}
	return res, err
}

// heartbeat publishes the output every liveFlushInterval and tells the
// store the run is alive every interval until stop, with the output added
// since the last heartbeat the store took (one that failed is sent again
// with the next), and cancels the run when its caller asked, or when the
// store says it is not running any more.
func (e *Executor) heartbeat(ctx context.Context, id string, live *liveOutput, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	t := time.NewTicker(e.heartbeatInterval())
	defer t.Stop()
	flush := time.NewTicker(liveFlushInterval)
	defer flush.Stop()
	var stored [2]int64 // bytes of each stream the store took
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-flush.C:
			live.flush()
			continue
		case <-t.C:
		}
		live.flush()
		stdout, stderr := live.since(stored)
		hctx, done := context.WithTimeout(ctx, e.heartbeatInterval())
		stopRun, err := e.Runs.HeartbeatRun(hctx, id, OutputTail{stored[0], stdout}, OutputTail{stored[1], stderr})
		done()
		if err == nil {
			stored[0] += int64(len(stdout))
			stored[1] += int64(len(stderr))
		}
		if err == nil && stopRun {
			// Cancelled by its caller, or failed by a sweeper that took this
			// replica for dead: either way the guest stops now.
			cancel(e.stopCause(ctx, id))
			return
		}
	}
}

// stopCause tells a cancel from a run failed by the sweeper.
func (e *Executor) stopCause(ctx context.Context, id string) error {
	rec, err := e.Runs.FindRunByID(SystemContext(context.WithoutCancel(ctx)), id)
	if err == nil && rec.State == RunFailed {
		return errStarted
	}
	return errCancelled
}

// How finish writes a background run's final record: within finishTimeout
// in all, which the writing's own deadline bounds instead of the store's
// call timeout (WithOwnDeadline), in at most finishAttempts tries while the
// store answers EUNAVAILABLE, the first pause finishRetry, doubling.
// finishTimeout is the server's default wait of the stale-run sweeper
// (staleRunsAfter in cmd/wasmwiz): the run's heartbeats stopped as its
// guest ended, so past it the sweeper fails the run anyway.
const (
	finishTimeout  = 30 * time.Second
	finishAttempts = 4
	finishRetry    = 100 * time.Millisecond
)

// finish writes a background run's final record with its webhook's job
// (in one transaction), gives back its limiter slot and tells its
// followers. A record not written loses the run's result: the run stays
// running for the store until the sweeper fails it, and its webhook says
// failed. So it waits for the database longer than a request would (a
// queue for SQLite's one writer, PostgreSQL slow for a while), and tries
// again when the store is unavailable.
//
// It returns the store's error when the record was not written (the run
// is still as it was), nil when it was or another ended the run first.
func (e *Executor) finish(ctx context.Context, rec *UsageRecord) error {
	fctx, cancel := context.WithTimeout(WithOwnDeadline(ctx), finishTimeout)
	defer cancel()
	done, err := e.finishRun(fctx, rec)
	if err != nil {
		return err // still running for the store: the sweeper fails it and gives its slot back
	}
	e.releaseBackground(ctx, rec) // also when another ended it first: a release is idempotent
	if !done {
		return nil
	}
	e.publish(RunEvent{RunID: rec.ID, Kind: EventState, Data: []byte(rec.State)})
	e.publish(RunEvent{RunID: rec.ID, Kind: EventResult})
	return nil
}

// finishRun is Runs.FinishRun, with the webhook's job in its transaction,
// tried again while the store answers EUNAVAILABLE (finishAttempts,
// finishRetry) and ctx lasts: a queue that could not take the job is
// such an answer, the record not written. A try whose commit's answer was
// lost leaves the run final, its webhook's job with it, so a later try
// changes nothing and says so: then the record the store holds tells
// whether it is this finish's (its state and finish time), and done is
// true if it is.
func (e *Executor) finishRun(ctx context.Context, rec *UsageRecord) (done bool, err error) {
	pause := finishRetry
	for attempt := 1; ; attempt++ {
		done, err = e.Runs.FinishRun(ctx, rec, e.webhooks())
		if err == nil && !done && attempt > 1 {
			done = e.finishedAs(ctx, rec)
		}
		if err == nil || ErrorCode(err) != EUNAVAILABLE || attempt == finishAttempts {
			return done, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return done, err
		case <-t.C:
		}
		pause *= 2
	}
}

// finishedAs reports whether the store holds rec's final record: its
// state and finish time (FinishRun sets rec.FinishedAt before its first
// try, and the store keeps milliseconds).
func (e *Executor) finishedAs(ctx context.Context, rec *UsageRecord) bool {
	got, err := e.Runs.FindRunByID(SystemContext(ctx), rec.ID)
	return err == nil && rec.FinishedAt != nil && got.FinishedAt != nil && got.State == rec.State &&
		got.FinishedAt.UnixMilli() == rec.FinishedAt.UnixMilli()
}

func (e *Executor) publish(ev RunEvent) {
	if e.Events != nil {
		e.Events.Publish(ev)
	}
}

// CancelRun cancels the caller's run id: a queued run at once, a running
// one at its replica's next heartbeat (which kills its worker). It returns
// the run as it is then. Errors: those of RunQueueService.CancelRun.
func (e *Executor) CancelRun(ctx context.Context, id string) (*UsageRecord, error) {
	if e.Runs == nil {
		return nil, Errorf(EUNAVAILABLE, "background runs are not available on this server")
	}
	// A cancel runs to its end (under the store's own deadlines) even when
	// its caller goes away meanwhile: cut short after its commit, the run
	// would be cancelled without its slot given back or its followers
	// told. Its webhook's job is in the cancel's transaction.
	ctx = context.WithoutCancel(ctx)
	rec, err := e.Runs.CancelRun(ctx, id, e.webhooks())
	if err != nil {
		return nil, err
	}
	if rec.State == RunCancelled {
		e.releaseBackground(ctx, rec)
		e.publish(RunEvent{RunID: id, Kind: EventState, Data: []byte(RunCancelled)})
		e.publish(RunEvent{RunID: id, Kind: EventResult})
	}
	return rec, nil
}

// webhooks is what the store calls to enqueue the webhooks of the runs it
// makes final, in its transaction; nil on a server without a queue (whose
// runs have no callback URL: ExecuteAsync needs the queue).
func (e *Executor) webhooks() EnqueueWebhooks {
	if e.Queue == nil {
		return nil
	}
	return e.Queue.EnqueueWebhooks
}

// Stale-run sweep batches: the most and the least runs one store call
// fails (see FailStaleRuns).
const (
	staleRunsBatch    = 100
	minStaleRunsBatch = 10
)

// FailStaleRuns fails the running runs whose replica has sent no heartbeat
// for staleAfter, with their webhooks' jobs in the same transaction, and
// tells their followers and gives back their background slots. Every
// replica calls it now and then; a failed run is never run again. It
// returns how many runs it failed, also with an error (those of
// RunQueueService.FailStaleRuns).
//
// It fails them in batches (Batches: at most staleRunsBatch a store call,
// smaller while the database cannot finish one in time). Without them, one
// statement over every stale run could fail at every sweep, and those runs
// stayed running for good.
func (e *Executor) FailStaleRuns(ctx context.Context, staleAfter time.Duration) (int, error) {
	before, message := e.now().Add(-staleAfter), ErrorMessage(errStarted)
	return e.staleBatches.Run(ctx, staleRunsBatch, minStaleRunsBatch, func(limit int) (int, error) {
		stale, err := e.Runs.FailStaleRuns(ctx, before, message, limit, e.webhooks())
		if err != nil {
			return 0, err // none failed: the transaction did not commit
		}
		for _, r := range stale {
			e.publish(RunEvent{RunID: r.ID, Kind: EventState, Data: []byte(RunFailed)})
			e.publish(RunEvent{RunID: r.ID, Kind: EventResult})
			e.releaseBackground(ctx, &UsageRecord{ID: r.ID, UserID: r.UserID})
		}
		return len(stale), nil
	}, nil)
}

// liveOutput collects a running guest's output: it publishes it in pieces
// (at most every flush, so that a guest writing a byte at a time does not
// make an event per byte) and keeps the first keep bytes of each stream for
// heartbeats and for a run stopped before its result.
type liveOutput struct {
	mu      sync.Mutex
	runID   string
	events  RunEvents
	keep    int64
	streams [2]liveStream
}

type liveStream struct {
	kept      []byte
	truncated bool
	offset    int64  // bytes seen
	pending   []byte // not yet published, starting at offset-len(pending)
}

// livePending is how much output waits before it is published at once,
// and liveFlushInterval how long a smaller piece may wait.
const (
	livePending       = 16 << 10
	liveFlushInterval = 100 * time.Millisecond
)

func newLiveOutput(runID string, events RunEvents, keep int64) *liveOutput {
	return &liveOutput{runID: runID, events: events, keep: keep}
}

func (l *liveOutput) add(stderr bool, p []byte) {
	i := 0
	if stderr {
		i = 1
	}
	l.mu.Lock()
	s := &l.streams[i]
	if l.keep < 0 || int64(len(s.kept)) < l.keep {
		n := len(p)
		if l.keep >= 0 && int64(len(s.kept)+n) > l.keep {
			n = int(l.keep - int64(len(s.kept)))
			s.truncated = true
		}
		s.kept = append(s.kept, p[:n]...)
	} else if len(p) > 0 {
		s.truncated = true
	}
	s.offset += int64(len(p))
	if l.events != nil {
		s.pending = append(s.pending, p...)
	}
	full := len(s.pending) >= livePending
	l.mu.Unlock()
	if full {
		l.flush()
	}
}

// flush publishes the output not yet published.
func (l *liveOutput) flush() {
	if l.events == nil {
		return
	}
	var evs []RunEvent
	l.mu.Lock()
	for i := range l.streams {
		s := &l.streams[i]
		if len(s.pending) == 0 {
			continue
		}
		kind := EventStdout
		if i == 1 {
			kind = EventStderr
		}
		evs = append(evs, RunEvent{RunID: l.runID, Kind: kind, Offset: s.offset - int64(len(s.pending)), Data: s.pending})
		s.pending = nil
	}
	l.mu.Unlock()
	for _, ev := range evs {
		l.events.Publish(ev)
	}
}

// since returns the output kept of each stream from byte from[i] on. Kept
// bytes are only ever appended to, so the slices stay as they are.
func (l *liveOutput) since(from [2]int64) (stdout, stderr []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tail := func(i int) []byte {
		k := l.streams[i].kept
		return k[min(from[i], int64(len(k))):len(k):len(k)]
	}
	return tail(0), tail(1)
}

// kept returns the output kept and whether each stream was cut.
func (l *liveOutput) kept() (stdout, stderr []byte, outTrunc, errTrunc bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.streams[0].kept, l.streams[1].kept, l.streams[0].truncated, l.streams[1].truncated
}
