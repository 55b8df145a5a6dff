package main

import (
	"context"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/redis"
)

// defaultEpochInterval is how often every replica reads the database's
// cache epoch and publishes it to the limiter: the bound on how long a
// change whose own publication was lost (Redis away at that moment, or the
// admin CLI run without WASMWIZ_REDIS_URL) can stay unseen.
const defaultEpochInterval = time.Second

// epochLoop publishes the database's cache epoch to the limiter at start
// and then every EpochInterval, until ctx ends (docs/RATIONALE.md, "Caches
// and the cache epoch"). Publishing the epoch already published changes
// nothing, so every replica may do it.
func (s *Server) epochLoop(ctx context.Context) {
	every := s.opts.EpochInterval
	if every <= 0 {
		every = defaultEpochInterval
	}
	runEvery(ctx, every, every, func() { s.publishEpoch(ctx) })
}

// publishEpoch reads the database's cache epoch and publishes it to the
// limiter; failures are left to the next round (the fallback decides, and
// the Directory trusts its entries a short while only, while Redis is away).
func (s *Server) publishEpoch(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := s.store.CacheEpoch(ctx)
	if err != nil {
		s.log.Debug("cache epoch: the database does not answer", "err", err)
		return
	}
	if err := s.limiter.PublishCacheEpoch(ctx, e); err != nil {
		s.log.Debug("cache epoch: not published", "err", err)
	}
}

// publishAdminChange publishes the database's cache epoch after an admin
// command changed it (before against after), so that the next request of
// every replica sees the change: through Redis when WASMWIZ_REDIS_URL is
// set; without it, or when Redis does not answer, the replicas' epoch loop
// sees it within a second, which the returned note says.
func publishAdminChange(ctx context.Context, cfg *Config, s Store, before int64) (note string) {
	after, err := s.CacheEpoch(ctx)
	if err != nil || after == before {
		return ""
	}
	later := "serving replicas apply it within " + defaultEpochInterval.String()
	if cfg.RedisURL == "" {
		return ""
	}
	c, err := redis.NewClient(cfg.RedisURL)
	if err != nil {
		return "note: the change is saved; " + later + " (" + wasmwiz.ErrorMessage(err) + ")"
	}
	defer c.Close()
	l, err := redis.New(redis.Options{Client: c, Timeout: max(cfg.RedisTimeout, time.Second)})
	if err == nil {
		err = l.PublishCacheEpoch(ctx, after)
	}
	if err != nil {
		return "note: the change is saved, but Redis did not answer; " + later
	}
	return ""
}
