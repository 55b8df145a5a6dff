package http

import (
	"context"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// publishTimeout bounds publishing the cache epoch after a change.
const publishTimeout = 2 * time.Second

// MaxChangesPerMinute bounds the writes of one user (not an admin) that may
// move the cache epoch: creating or revoking an API key, changing or
// deleting a stored module. Every change of what replicas cache empties
// every replica's caches for every tenant; a tenant may change its own
// keys and modules, but not at a rate that keeps those caches empty.
const MaxChangesPerMinute = 30

// changeWindow is the window MaxChangesPerMinute counts in.
const changeWindow = time.Minute

// limitChange counts one write of the caller that may move the cache epoch
// (MaxChangesPerMinute) through the RateLimiter, shared by the replicas, and
// returns ERATELIMIT with a Retry-After past the bound. Admins are not
// counted. A limiter that cannot decide lets the write through: its outage
// must not stop tenants managing their keys (revoking a leaked one).
func (s *Server) limitChange(ctx context.Context) error {
	u, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return err
	}
	if u.IsAdmin() || s.opts.Limiter == nil {
		return nil
	}
	dec, err := s.opts.Limiter.Allow(ctx, "changes:user:"+strconv.FormatInt(u.ID, 10),
		[]wasmwiz.RateLimit{{Name: "changes", Limit: MaxChangesPerMinute, Window: changeWindow}})
	if err != nil {
		s.log.WarnContext(ctx, "cannot count a change; let through", "err", err, "user_id", u.ID)
		return nil
	}
	if dec.Allowed {
		return nil
	}
	return wasmwiz.RetryLater(wasmwiz.ERATELIMIT, dec.RetryAfter, "too many changes to your keys and modules: at most %d a minute; retry in %s",
		MaxChangesPerMinute, dec.RetryAfter.Round(100*time.Millisecond))
}

// changed publishes the database's cache epoch after a change that a
// replica's cache must not survive (what names it), before the change is
// answered: the next request of every replica then reads what changed.
// Callers call it only when the store says it changed something: a write
// that changed nothing leaves the epoch where it was. The change itself
// has committed, with the epoch in its transaction; when publishing fails
// it is logged, and serve publishes the epoch again within a second (its
// epoch loop).
func (s *Server) changed(ctx context.Context, what string) {
	if s.opts.Epochs == nil || s.opts.Limiter == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	e, err := s.opts.Epochs.CacheEpoch(ctx)
	if err == nil {
		err = s.opts.Limiter.PublishCacheEpoch(ctx, e)
	}
	if err != nil {
		s.log.WarnContext(ctx, "cache epoch not published after a change; replicas see it within a second", "change", what, "err", err)
	}
}
