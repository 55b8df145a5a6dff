package http

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// listRuns is GET /api/v1/runs.
func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) error {
	limit, offset, err := pageParams(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := wasmwiz.RunFilter{Status: wasmwiz.Status(q.Get("status")), Limit: limit, Offset: offset}
	if f.Status != "" && !slices.Contains(wasmwiz.Statuses, f.Status) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown status %q", f.Status)
	}
	for name, t := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			if *t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "%s must be an RFC 3339 time", name)
			}
		}
	}
	runs, total, err := s.opts.Runs.FindRuns(r.Context(), f)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []*api.Run{} // an empty page is [], not null
	}
	writeJSON(w, http.StatusOK, api.RunList{Runs: runs, Total: total.Count, TotalCapped: total.Capped})
	return nil
}

// getRun is GET /api/v1/runs/{id}.
func (s *Server) getRun(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !wasmwiz.ValidRunID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
	}
	run, err := s.findRun(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, run)
	return nil
}

// runRecordWait is how long after its id's time a run may still be on its
// way to the store: in this replica's usage buffer, or in another
// replica's (which writes at least every second, and retries a failed
// batch). A run younger than that is waited for instead of answered 404.
const runRecordWait = 5 * time.Second

// runRecordPoll is how long findRun waits before it asks the store again,
// doubling after each ask up to runRecordPollMax: a record on its way is
// found within about a second of being written, and an id made up by a
// caller, which any caller may send at will, costs about ten store reads
// over runRecordWait, not one every 50 ms.
const (
	runRecordPoll    = 50 * time.Millisecond
	runRecordPollMax = time.Second
)

// pendingRuns is the usage writer's look-up of records not yet written.
type pendingRuns interface {
	Pending(id string) *wasmwiz.UsageRecord
}

// findRun reads a run of the caller from the moment its execute answer is
// sent: from this replica's usage buffer while the record waits there, and
// from the store, asked again for a few seconds when the id says the run is
// younger than runRecordWait (its record may be in another replica's batch),
// less often as the wait goes on (runRecordPoll). An id dated after now is
// waited for as one made now: replicas' clocks differ by little, and a
// caller may write any time into an id, so the wait is never longer than
// runRecordWait.
func (s *Server) findRun(ctx context.Context, id string) (*wasmwiz.UsageRecord, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	pending, _ := s.opts.Usage.(pendingRuns)
	var deadline time.Time
	if t, ok := wasmwiz.RunIDTime(id); ok {
		if now := s.now(); t.After(now) {
			t = now
		}
		deadline = t.Add(runRecordWait)
	}
	poll := runRecordPoll
	for {
		run, err := s.opts.Runs.FindRunByID(ctx, id)
		if wasmwiz.ErrorCode(err) != wasmwiz.ENOTFOUND {
			return run, err
		}
		if pending != nil {
			if p := pending.Pending(id); p != nil && (p.UserID == caller.ID || caller.IsAdmin()) {
				if p.Stdout == nil {
					p.Stdout = []byte{}
				}
				if p.Stderr == nil {
					p.Stderr = []byte{}
				}
				return p, nil
			}
		}
		left := deadline.Sub(s.now())
		if left <= 0 {
			return nil, err
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		poll = min(2*poll, runRecordPollMax)
	}
}

// usage is GET /api/v1/usage.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	u, err := s.opts.Runs.Usage(r.Context(), s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiUsage(u))
	return nil
}

// dailyUsage is GET /api/v1/usage/daily?days=30: the caller's runs per UTC
// day by status, with duration percentiles, for the web page's charts.
func (s *Server) dailyUsage(w http.ResponseWriter, r *http.Request) error {
	days := 30
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "days must be a whole number")
		}
		days = n
	}
	out, err := s.opts.Runs.DailyRuns(r.Context(), s.now(), days)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.DailyRunsList{Days: apiList(out, apiDailyRuns)})
	return nil
}

// me is GET /api/v1/me: the caller and its tier, with the per-run limits as
// they apply (under the server's maxima).
func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	u, err := wasmwiz.RequireUser(r.Context())
	if err != nil {
		return err
	}
	t, err := s.exec.CallerTier(r.Context())
	if err != nil {
		return err
	}
	t.Limits = s.exec.TierLimits(t)
	writeJSON(w, http.StatusOK, api.Me{User: apiUser(u), Tier: apiTier(t), Limits: tierLimits(t)})
	return nil
}

// adminStats is GET /api/v1/admin/stats.
func (s *Server) adminStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.opts.Runs.Stats(r.Context(), s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiStats(st))
	return nil
}

// tierLimits describes every limit of a tier for people: the web page, the
// CLI and the client show these without knowing the fields.
func tierLimits(t *wasmwiz.Tier) []api.TierLimit {
	fs := wasmwiz.TierFields()
	out := make([]api.TierLimit, len(fs))
	for i, f := range fs {
		v := f.Get(t)
		out[i] = api.TierLimit{Name: f.Name, Help: f.Help, Value: f.ToStored(v), Text: f.Format(v)}
	}
	return out
}

// cancelRun is POST /api/v1/runs/{id}/cancel: a queued run is cancelled at
// once, a running one within a heartbeat (its worker is killed). 200 with
// the run as it is then; 409 for a run already over.
func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !wasmwiz.ValidRunID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
	}
	rec, err := s.exec.CancelRun(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rec)
	return nil
}

// rotateWebhookSecret is POST /api/v1/webhook-secret: a new secret that
// signs the caller's webhooks from now on, shown this once.
func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request) error {
	runs, ok := s.opts.Runs.(wasmwiz.RunQueueService)
	if !ok {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "webhooks are not available on this server")
	}
	secret, err := runs.RotateWebhookSecret(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.WebhookSecret{Secret: secret,
		Signature: "WasmWiz-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" under this secret>"})
	return nil
}
