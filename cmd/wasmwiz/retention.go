package main

import (
	"context"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Retention defaults: how often each replica deletes old runs, and how many
// rows one statement deletes at most and at least (short statements keep
// locks short; see deleteRuns).
const (
	defaultRetentionInterval = 5 * time.Minute
	retentionBatch           = 1000
	minRetentionBatch        = 10
)

// retentionLoop deletes old runs (deleteOldRuns), in batches, soon after
// start and then every RetentionInterval; a WASMWIZ_RETENTION of 0 keeps
// every run. Every replica runs it: a
// batch deletes rows that exist, so two replicas only share the work.
func (s *Server) retentionLoop(ctx context.Context) {
	if s.cfg.Retention <= 0 {
		// "0" would mean "older than now": every record. Read it as "keep".
		s.log.Info("retention off: WASMWIZ_RETENTION is 0, usage records are kept")
		return
	}
	every := s.opts.RetentionInterval
	if every <= 0 {
		every = defaultRetentionInterval
	}
	runEvery(ctx, min(every, 10*time.Second), every, func() { s.deleteOldRuns(ctx) })
}

// deleteOldRuns deletes the runs past their tier's run_retention_ms (the
// tier a run ran under), then every run older than WASMWIZ_RETENTION, the
// server's bound that also covers runs of tiers since deleted; one batch at
// a time. It returns how many it deleted.
func (s *Server) deleteOldRuns(ctx context.Context) int {
	now := time.Now()
	total := 0
	tiers, err := s.store.ListTiers(wasmwiz.SystemContext(ctx))
	if err != nil && ctx.Err() == nil {
		s.log.Warn("retention: listing tiers failed; only WASMWIZ_RETENTION applies until the next interval", "err", err)
	}
	for _, t := range tiers {
		if t.RunRetention > 0 && t.RunRetention < s.cfg.Retention {
			total += s.deleteRuns(ctx, now.Add(-t.RunRetention), t.Name)
		}
	}
	return total + s.deleteRuns(ctx, now.Add(-s.cfg.Retention), "")
}

// deleteRuns deletes the runs of tier (every tier when "") created before
// before, in batches, and returns how many it deleted. Each batch runs
// under the store's call timeout (WASMWIZ_DATABASE_TIMEOUT), not a longer
// deadline of its own (wasmwiz.WithOwnDeadline): on SQLite a batch holds the
// only write lock, and one that held it longer would make the requests'
// writes fail. So the batch adapts (wasmwiz.Batches): a batch the database
// could not finish in time (runs with much stored output, a loaded
// database) is tried again a quarter as large, down to minRetentionBatch,
// and the size kept for the next interval, doubling back after each batch
// that finishes whole; any other failure waits for the next interval.
// Without it, one batch too large to commit in time failed at every
// interval, and nothing was ever deleted again.
func (s *Server) deleteRuns(ctx context.Context, before time.Time, tier string) int {
	total, err := s.retention.Run(ctx, retentionBatch, minRetentionBatch, func(limit int) (int, error) {
		return s.store.DeleteRunsBefore(ctx, before, tier, limit)
	}, func(batch int, err error) {
		s.log.Warn("retention: a batch of old runs did not finish; trying a smaller one", "tier", tier, "batch", batch, "err", err)
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("retention: deleting old runs failed; retrying at the next interval", "tier", tier, "err", err)
	}
	if total > 0 {
		s.log.Info("retention: deleted old runs", "runs", total, "tier", tier, "before", before.UTC().Format(time.RFC3339))
	}
	return total
}
