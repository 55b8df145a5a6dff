package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Run serves until ctx ends, then shuts down gracefully (see Shutdown). It
// returns the first failure of a listener or of the shutdown.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.srv.Serve(s.ln) }()
	if s.metricsSrv != nil {
		go func() { errc <- s.metricsSrv.Serve(s.metricsLn) }()
	}
	retCtx, stopRetention := context.WithCancel(context.WithoutCancel(ctx))
	var retWG sync.WaitGroup
	retWG.Go(func() { s.retentionLoop(retCtx) })
	retWG.Go(func() { s.epochLoop(retCtx) })
	if err := s.queue.Start(ctx); err != nil {
		s.log.Error("the queue of background runs did not start; they stay queued", "err", err)
	}
	retWG.Go(func() { s.staleRunsLoop(retCtx) })
	retWG.Go(func() { s.abandonedRunsLoop(retCtx) })

	attrs := []any{"addr", s.Addr(), "database", storeKind(s.cfg), "redis", s.cfg.RedisURL != "", "workers", s.cfg.Workers, "auth", s.cfg.Auth, "profile", s.cfg.Profile}
	if u := s.MetricsURL(); u != "" {
		attrs = append(attrs, "metrics", u+"/metrics")
	}
	s.log.Info("serving", attrs...)
	fmt.Fprintf(s.env.Stdout, "wasmwiz: listening on %s\n", s.URL())
	if s.opts.Listening != nil {
		s.opts.Listening(s)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		if errors.Is(serveErr, http.ErrServerClosed) {
			serveErr = nil // Shutdown was called
		} else {
			s.log.Error("a listener failed; shutting down", "err", serveErr)
		}
	}
	stopRetention()
	retWG.Wait()
	err := s.Shutdown(context.WithoutCancel(ctx))
	if serveErr != nil {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, serveErr, "serving: %v", serveErr)
	}
	return err
}

// Shutdown stops the server as Run does when its context ends: /readyz
// turns 503 at once while requests are still served (with Connection:
// close) for WASMWIZ_DRAIN_DELAY, so that load balancers stop sending
// requests before the listener closes; then it stops accepting, lets
// in-flight requests (and their runs) finish within WASMWIZ_SHUTDOWN_GRACE,
// flushes the usage records, and closes the worker pool, the limiter and the
// store. Later calls return the first one's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.api.Drain()
		if d := s.cfg.DrainDelay; d > 0 {
			s.log.Info("draining: /readyz answers 503; requests are still served until the drain delay ends", "drain_delay", d)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-s.drainCut:
				t.Stop()
			}
		}
		s.log.Info("shutting down: no new requests; in-flight runs may finish", "grace", s.cfg.ShutdownGrace)
		graceCtx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownGrace)
		defer cancel()
		var errs []error
		if err := s.srv.Shutdown(graceCtx); err != nil {
			s.log.Warn("requests still running at the end of the grace period; closing them", "err", err, "requests", s.handlers.Load())
			_ = s.srv.Close()
			// Closing their connections cancels their contexts, which stops
			// their runs (the pool kills the workers); wait a little for the
			// handlers to hand their usage records over before the flush.
			deadline := time.Now().Add(handlerDrain)
			for s.handlers.Load() > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if s.metricsSrv != nil {
			_ = s.metricsSrv.Shutdown(graceCtx)
			_ = s.metricsSrv.Close()
		}
		errs = append(errs, s.closeParts(ctx))
		s.closeErr = errors.Join(errs...)
		s.log.Info("shut down", "usage_written", s.usage.Stats().Written, "usage_dropped", s.usage.Stats().Dropped)
	})
	return s.closeErr
}

// cutDrain ends the drain delay of a shutdown now (tests).
func (s *Server) cutDrain() { s.drainCutOnce.Do(func() { close(s.drainCut) }) }

// closeParts closes what NewServer started, in reverse order: workers
// first (no run may start after), then the usage writer (flushing), the
// limiter's Redis client and the store.
func (s *Server) closeParts(ctx context.Context) error {
	var errs []error
	// Listeners a server never served (NewServer failed) are still open;
	// closing one that Shutdown closed is harmless.
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.metricsLn != nil {
		_ = s.metricsLn.Close()
	}
	if s.queue != nil {
		// Background runs still running get the shutdown grace, then are
		// stopped and failed (never run again).
		qctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownGrace)
		if err := s.queue.Stop(qctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the queue: %w", err))
		}
		cancel()
	}
	if s.bus != nil {
		s.bus.Close()
	}
	if s.pool != nil {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := s.pool.Close(pctx); err != nil {
			errs = append(errs, fmt.Errorf("closing the worker pool: %w", err))
		}
		cancel()
	}
	if s.usage != nil {
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := s.usage.Close(uctx); err != nil {
			errs = append(errs, fmt.Errorf("flushing usage records: %w", err))
		}
		cancel()
	}
	if s.rclient != nil {
		_ = s.rclient.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the database: %w", err))
		}
	}
	return errors.Join(errs...)
}
