package http_test

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) {
		o.MaxConcurrentRuns, o.QueueSize = 4, 2
	})
	f.decision.Fallback = true
	for range 2 {
		res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
		if res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
	}
	res := f.do(request{method: "GET", path: "/metrics"})
	if res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	for _, want := range []string{
		`wasmwiz_http_requests_total{method="POST",route="POST /api/v1/execute",status="200"} 2`,
		`wasmwiz_http_request_duration_seconds_count{route="POST /api/v1/execute"} 2`,
		`wasmwiz_http_requests_in_flight 1`, // the scrape itself
		`wasmwiz_runs_total{status="ok",tier="free"} 2`,
		`wasmwiz_run_duration_seconds_count{tier="free"} 2`,
		`wasmwiz_run_memory_peak_bytes_count{tier="free"} 2`,
		`wasmwiz_compile_cache_hits_total 2`,
		`wasmwiz_compile_cache_misses_total 0`,
		`wasmwiz_ratelimit_decisions_total{result="allowed"} 2`,
		`wasmwiz_ratelimit_decisions_total{result="fallback"} 2`,
		`wasmwiz_ratelimit_decisions_total{result="limited"} 0`,
		`wasmwiz_run_slots 4`,
		`wasmwiz_runs_in_flight 0`,
		`wasmwiz_run_queue_length 0`,
		`wasmwiz_host_cpu_seconds_total{mode="idle"}`,
		`wasmwiz_host_memory_total_bytes`,
		`wasmwiz_host_memory_available_bytes`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestMetricsToken: with a token, /metrics answers only a request that
// carries it (on the API address and the separate one alike).
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) { o.MetricsToken = "s3cret" })
	for _, tt := range []struct {
		name, auth string
		status     int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"an API key", "Bearer " + userKey, 401},
		{"the token", "Bearer s3cret", 200},
	} {
		res := f.do(request{method: "GET", path: "/metrics", header: map[string]string{"Authorization": tt.auth}})
		if res.status != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, res.status, tt.status)
		}
		if tt.status == 200 && !bytes.Contains(res.body, []byte("wasmwiz_http_requests_total")) {
			t.Errorf("%s: no metrics in %s", tt.name, res.body)
		}
		if tt.status == 401 && (res.header.Get("WWW-Authenticate") == "" || bytes.Contains(res.body, []byte("wasmwiz_"))) {
			t.Errorf("%s: refused without a challenge, or with metrics: %s", tt.name, res.body)
		}
	}
	w := httptest.NewRecorder()
	f.srv.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 401 {
		t.Errorf("MetricsHandler without the token: %d, want 401", w.Code)
	}
}

func TestSeparateMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(o *wwhttp.Options) { o.SeparateMetrics, o.Registerer = true, reg })
	if res := f.do(request{method: "GET", path: "/metrics"}); res.status != 404 {
		t.Errorf("/metrics on the API address: %d, want 404", res.status)
	}
	w := httptest.NewRecorder()
	f.srv.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "wasmwiz_http_requests_total") {
		t.Errorf("MetricsHandler: %d", w.Code)
	}
	// A second server on the same registry is refused, not a panic.
	if _, err := wwhttp.NewServer(wwhttp.Options{Registerer: reg}); err == nil {
		t.Error("a second server registered the same metrics")
	}
}

// TestMetricsLabelRefusedRoutes: a request refused by authentication is
// counted under the route it was for, not "unmatched"; a path no route
// matches still is, and answers 404 whatever its key.
func TestMetricsLabelRefusedRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	badKey := "ww_" + strings.Repeat("0", 40)
	for _, r := range []request{
		{method: "GET", path: "/api/v1/me", key: badKey},
		{method: "POST", path: "/api/v1/execute", key: badKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"},
		{method: "GET", path: "/api/v1/modules/mod_x", key: "not-a-key"},
	} {
		if res := f.do(r); res.status != 401 {
			t.Fatalf("%s %s: %d, want 401", r.method, r.path, res.status)
		}
	}
	if res := f.do(request{method: "GET", path: "/api/v1/nowhere", key: badKey}); res.status != 404 {
		t.Fatalf("GET /api/v1/nowhere: %d, want 404", res.status)
	}
	res := f.do(request{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`wasmwiz_http_requests_total{method="GET",route="GET /api/v1/me",status="401"} 1`,
		`wasmwiz_http_requests_total{method="POST",route="POST /api/v1/execute",status="401"} 1`,
		`wasmwiz_http_requests_total{method="GET",route="GET /api/v1/modules/{id}",status="401"} 1`,
		`wasmwiz_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
	} {
		if !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
