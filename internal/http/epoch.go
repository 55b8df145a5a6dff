package http

import (
	"context"
	"time"
)

// publishTimeout bounds publishing the cache epoch after a change.
const publishTimeout = 2 * time.Second

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
