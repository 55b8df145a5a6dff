package queue_test

import (
	"context"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/metrictest"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// The queue's metrics count the runs not yet ended from the store and the
// webhook attempts by outcome.
func TestMetrics(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		w := newWebhooks(s, nil) // refuses the loopback receiver
		r := newRunner(nil)
		q := s.startQueue(t, queue.Options{Workers: 1, Runner: r, Runs: s, Webhooks: w})
		_, ctx := s.user(t, "u@example.com")
		// The runner does not start the run in the store: it stays queued.
		s.mustQueueRun(t, ctx, "", enqueueOn(q))
		testenv.Recv(t, r.started, "the run's job")
		hook, _ := webhookRun(t, s, newReceiver(t, 200).URL)
		if err := w.Deliver(context.Background(), hook.ID, 1, false); err == nil {
			t.Fatal("a delivery to a refused address succeeded")
		}

		got := metrictest.Values(t, q)
		for key, want := range map[string]float64{
			`wasmwiz_background_runs{state="queued"}`:                    2, // both runs of the test
			`wasmwiz_background_runs{state="running"}`:                   0,
			`wasmwiz_background_run_oldest_age_seconds{state="running"}`: 0,
			`wasmwiz_webhook_deliveries_total{outcome="delivered"}`:      0,
			`wasmwiz_webhook_deliveries_total{outcome="failed"}`:         1,
			`wasmwiz_webhook_deliveries_total{outcome="given_up"}`:       0,
			`wasmwiz_webhook_refused_addresses_total`:                    1,
		} {
			if v, ok := got[key]; !ok || v != want {
				t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
			}
		}
		if _, ok := got[`wasmwiz_background_run_oldest_age_seconds{state="queued"}`]; !ok {
			t.Error("no age of the oldest queued run")
		}
	})
}
