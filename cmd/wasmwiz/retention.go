package main

import (
	"context"
	"time"
)

// Retention defaults: how often each replica deletes old runs, and how many
// rows one statement deletes (short statements keep locks short).
const (
	defaultRetentionInterval = 5 * time.Minute
	retentionBatch           = 1000
)

// retentionLoop deletes runs older than WASMWIZ_RETENTION, in batches, soon
// after start and then every RetentionInterval; a retention of 0 keeps
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
	first := time.NewTimer(min(every, 10*time.Second))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.deleteOldRuns(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deleteOldRuns deletes every run older than the retention, one batch at a
// time, and returns how many it deleted.
func (s *Server) deleteOldRuns(ctx context.Context) int {
	before := time.Now().Add(-s.cfg.Retention)
	total := 0
	for ctx.Err() == nil {
		n, err := s.store.DeleteRunsBefore(ctx, before, retentionBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("retention: deleting old runs failed; retrying at the next interval", "err", err)
			}
			break
		}
		total += n
		if n < retentionBatch {
			break
		}
	}
	if total > 0 {
		s.log.Info("retention: deleted old runs", "runs", total, "before", before.UTC().Format(time.RFC3339))
	}
	return total
}
