package deploytest

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/engine"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// exported is what one scrape of /metrics held: every series name (with
// _bucket, _sum, _count as written) and the label names seen on it.
type exported map[string]map[string]bool

var seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s`)
var labelName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)

func parseExposition(t *testing.T, text string) exported {
	t.Helper()
	out := exported{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := seriesLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsable /metrics line %q", line)
		}
		if out[m[1]] == nil {
			out[m[1]] = map[string]bool{}
		}
		for _, l := range labelName.FindAllStringSubmatch(m[3], -1) {
			out[m[1]][l[1]] = true
		}
	}
	return out
}

// query is one PromQL expression of the rules or the dashboard.
type query struct {
	Where string
	Expr  string
}

func alertQueries(t *testing.T) []query {
	t.Helper()
	docs := deployDocs(t, "deploy/monitoring/alerts.yml")
	return exprs("alerts.yml", docs[0].Doc)
}

func dashboardQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, d := range dashboards(t) {
		qs = append(qs, exprs(d.File, d.Doc)...)
	}
	return qs
}

// exprs returns the PromQL expressions of doc (its "expr" values), each
// where it stands in the file where.
func exprs(where string, doc any) []query {
	var qs []query
	walk(doc, nil, func(path []string, v any) {
		if s, ok := v.(string); ok && len(path) > 0 && path[len(path)-1] == "expr" {
			qs = append(qs, query{where + ":" + strings.Join(path, "."), s})
		}
	})
	return qs
}

// dashboards returns the dashboards in deploy/monitoring/grafana/dashboards,
// failing t when there are none.
func dashboards(t *testing.T) []deployDoc {
	t.Helper()
	var out []deployDoc
	for _, f := range deployFiles(t) {
		if strings.HasPrefix(f, "deploy/monitoring/grafana/dashboards/") && strings.HasSuffix(f, ".json") {
			out = append(out, deployDocs(t, f)...)
		}
	}
	if len(out) == 0 {
		t.Fatal("no dashboards in deploy/monitoring/grafana/dashboards")
	}
	return out
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promMatchers = regexp.MustCompile(`\{([^}]*)\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promVar      = regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)
)

// promKeywords are PromQL words that are not metric names.
var promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true}

// promNames returns the metric names an expression selects, the label names
// its matchers use (per metric), and the label names it groups by.
func promNames(expr string) (metrics []string, matcherLabels map[string][]string, groupLabels []string) {
	matcherLabels = map[string][]string{}
	e := promVar.ReplaceAllString(expr, "1m")
	// Label names in matchers belong to the metric right before the brace.
	for _, m := range regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`).FindAllStringSubmatch(e, -1) {
		for _, l := range regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`).FindAllStringSubmatch(promString.ReplaceAllString(m[2], `""`), -1) {
			matcherLabels[m[1]] = append(matcherLabels[m[1]], l[1])
		}
	}
	e = promString.ReplaceAllString(e, `""`)
	for _, m := range promGrouping.FindAllStringSubmatch(e, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				groupLabels = append(groupLabels, l)
			}
		}
	}
	e = promGrouping.ReplaceAllString(e, " ")
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if promKeywords[word] || strings.HasPrefix(rest, "(") {
			continue // a keyword or a function
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // the unit of a number, e.g. the e of 1e3
		}
		metrics = append(metrics, word)
	}
	return metrics, matcherLabels, groupLabels
}

func TestPromNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, expr  string
		wantMetrics []string
		wantGroup   []string
	}{
		{"ratio", `sum(rate(a_total{status=~"5..", route!="GET /x"}[5m])) / sum(rate(a_total[5m])) > 0.05`,
			[]string{"a_total", "a_total"}, nil},
		{"quantile", `histogram_quantile(0.95, sum by (le, route) (rate(b_bucket[$__rate_interval])))`,
			[]string{"b_bucket"}, []string{"le", "route"}},
		{"bare", `up{job="w"} == 0`, []string{"up"}, nil},
		{"two", `max by (instance) (c / d) < 0.1`, []string{"c", "d"}, []string{"instance"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _, g := promNames(tt.expr)
			if fmt.Sprint(m) != fmt.Sprint(tt.wantMetrics) || fmt.Sprint(g) != fmt.Sprint(tt.wantGroup) {
				t.Errorf("promNames(%q) = %v, %v; want %v, %v", tt.expr, m, g, tt.wantMetrics, tt.wantGroup)
			}
		})
	}
}

// targetLabels are attached by Prometheus when it scrapes, not exported.
var targetLabels = map[string]bool{"job": true, "instance": true, "le": true, "quantile": true, "pod": true}

// prometheusMetrics are made by Prometheus itself.
var prometheusMetrics = map[string]bool{"up": true}

// checkQueries fails for every metric name, matcher label or grouping label
// of qs that the scrape does not show, and for every route label value that
// is not a route of the server.
func checkQueries(t *testing.T, qs []query, got exported, routes map[string]bool) {
	t.Helper()
	if len(qs) < 5 {
		t.Fatalf("only %d queries found", len(qs))
	}
	routeValue := regexp.MustCompile(`route\s*!?=\s*"([^"]*)"`)
	for _, q := range qs {
		metrics, matchers, groups := promNames(q.Expr)
		if len(metrics) == 0 {
			t.Errorf("%s: no metric in %q", q.Where, q.Expr)
		}
		labels := map[string]bool{}
		for _, m := range metrics {
			if prometheusMetrics[m] {
				continue
			}
			ls, ok := got[m]
			if !ok {
				t.Errorf("%s uses %s, which the server does not export", q.Where, m)
				continue
			}
			for l := range ls {
				labels[l] = true
			}
			for _, l := range matchers[m] {
				if !targetLabels[l] && !ls[l] {
					t.Errorf("%s matches label %s on %s, which has no such label", q.Where, l, m)
				}
			}
		}
		for _, l := range groups {
			if !targetLabels[l] && !labels[l] {
				t.Errorf("%s groups by %s, which none of %v has", q.Where, l, metrics)
			}
		}
		for _, m := range routeValue.FindAllStringSubmatch(q.Expr, -1) {
			if !routes[m[1]] {
				t.Errorf("%s names route %q, which internal/http does not register", q.Where, m[1])
			}
		}
	}
}

// Keys of the shape the server accepts (ww_ and 43 characters).
const (
	keyOne = "ww_one0000000000000000000000000000000000000000"
	keyTwo = "ww_two0000000000000000000000000000000000000000"
)

// blockingEngine is the real engine, except that a run whose stdin is
// "block" waits inside Run until released: it holds a run slot and the
// user's concurrency slot for as long as the test needs, without timing.
type blockingEngine struct {
	*engine.Engine
	entered chan struct{}
	release *testenv.Gate
}

func (b *blockingEngine) Run(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
	if string(req.Stdin) == "block" {
		b.entered <- struct{}{}
		if err := b.release.Wait(ctx); err != nil {
			return nil, err
		}
	}
	return b.Engine.Run(ctx, req)
}

// inProcessExposition builds a server with internal/http, the real engine
// and the in-memory limiter, has it serve traffic of every kind the panels
// show (ok runs, refused runs, a concurrency 429, a saturation 503, probes,
// a 404), and returns its /metrics.
func inProcessExposition(t *testing.T) exported {
	ctx := context.Background()
	eng, err := engine.New(ctx, engine.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	be := &blockingEngine{Engine: eng, entered: make(chan struct{}, 1)}
	// The Redis limiter on a Redis that is not there, deciding through its
	// in-memory fallback: its own metrics (which the dashboard shows) are
	// exported without a Redis server.
	rc, err := redis.NewClient("redis://" + tcpproxy.ClosedAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	lim, err := redis.New(redis.Options{Client: rc, Fallback: inmem.New(inmem.Options{}),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(lim.Metrics()...)

	tiers := map[string]*wasmwiz.Tier{}
	for _, tr := range wasmwiz.DefaultTiers() {
		tiers[tr.Name] = tr
	}
	users := map[string]*wasmwiz.User{
		keyOne: {ID: 1, Email: "one@example.com", Role: wasmwiz.RoleUser, Tier: "free"},
		keyTwo: {ID: 2, Email: "two@example.com", Role: wasmwiz.RoleUser, Tier: "free"},
	}
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Keys: &mock.APIKeyService{AuthenticateFn: func(ctx context.Context, key string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
			u, ok := users[key]
			if !ok {
				return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "invalid API key")
			}
			return u, &wasmwiz.APIKey{ID: u.ID, UserID: u.ID, Name: "test"}, nil
		}},
		Tiers: &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) {
			if tr, ok := tiers[name]; ok {
				return tr, nil
			}
			return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "no tier %s", name)
		}},
		Engine:            be,
		Limiter:           lim,
		Registerer:        reg,
		Auth:              true,
		MaxConcurrentRuns: 2,
		QueueSize:         0,
		Readiness:         []wwhttp.ReadinessCheck{{Name: "database", Ping: func(context.Context) error { return nil }}},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	be.release = testenv.NewGate(t) // opens before ts.Close waits for the blocked run

	hello := testmodule.Read(t, "hello.wasm")
	do := func(method, path, key string, body any) int {
		t.Helper()
		code, _, _ := testenv.DoJSON(t, method, ts.URL+path, key, body, nil)
		return code
	}
	run := func(stdin string) map[string]any {
		return map[string]any{"wasm_base64": base64.StdEncoding.EncodeToString(hello), "stdin": stdin}
	}

	steps := []struct {
		name   string
		method string
		path   string
		key    string
		body   any
		want   int
	}{
		{"healthz", "GET", "/healthz", "", nil, 200},
		{"readyz", "GET", "/readyz", "", nil, 200},
		{"unknown path", "GET", "/nope", "", nil, 404},
		{"no key", "POST", "/api/v1/execute", "", run(""), 401},
		{"hello", "POST", "/api/v1/execute", keyOne, run(""), 200},
		{"hello again (cached)", "POST", "/api/v1/execute", keyOne, run(""), 200},
		{"not wasm", "POST", "/api/v1/execute", keyOne, map[string]any{"wasm_base64": base64.StdEncoding.EncodeToString([]byte("hello"))}, 400},
	}
	for _, s := range steps {
		if got := do(s.method, s.path, s.key, s.body); got != s.want {
			t.Errorf("%s: %s %s answered %d, want %d", s.name, s.method, s.path, got, s.want)
		}
	}

	// One run of each user holds one of the replica's two run slots and
	// the user's only concurrency slot (tier free: 1): after the first, a
	// second run of user one is over its own limit (429); after both, the
	// replica is saturated and every run is refused (503) before any work.
	blocked := make(chan int, 2)
	block := func(key string) {
		go func() { blocked <- do("POST", "/api/v1/execute", key, run("block")) }()
		select {
		case <-be.entered:
		case code := <-blocked:
			t.Fatalf("the run meant to block answered %d before it reached the engine", code)
		case <-time.After(testenv.Patience):
			t.Fatal("the run meant to block neither reached the engine nor answered")
		}
	}
	block(keyOne)
	if got := do("POST", "/api/v1/execute", keyOne, run("")); got != http.StatusTooManyRequests {
		t.Errorf("second run of a free user in flight answered %d, want 429", got)
	}
	block(keyTwo)
	if got := do("POST", "/api/v1/execute", keyTwo, run("")); got != http.StatusServiceUnavailable {
		t.Errorf("run on a saturated replica answered %d, want 503", got)
	}
	be.release.Open()
	for range 2 {
		if code := testenv.Recv(t, blocked, "a blocked run's answer"); code != 200 {
			t.Errorf("blocked run answered %d, want 200", code)
		}
	}

	resp, body := testenv.Do(t, "GET", ts.URL+"/metrics", "", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics answered %d", resp.StatusCode)
	}
	return parseExposition(t, string(body))
}

// The alert rules use only metrics (and labels) that the real program
// exports after serving traffic; the dashboard only those that it or a
// server of internal/http under every kind of traffic exports; every
// exported wasmwiz_ metric is documented in docs/METRICS.md.
func TestMonitoringNamesAreExported(t *testing.T) {
	t.Parallel()
	served := servedExposition(t)
	inProcess := inProcessExposition(t)
	union := exported{}
	for _, e := range []exported{served, inProcess} {
		for name, labels := range e {
			if union[name] == nil {
				union[name] = map[string]bool{}
			}
			for l := range labels {
				union[name][l] = true
			}
		}
	}
	rs := routes(t)
	t.Run("alert rules", func(t *testing.T) {
		testenv.RedisURL(t) // the alert rules use the Redis limiter's metrics
		checkQueries(t, alertQueries(t), served, rs)
	})
	t.Run("dashboard", func(t *testing.T) { checkQueries(t, dashboardQueries(t), union, rs) })
	t.Run("docs/METRICS.md", func(t *testing.T) {
		doc := readFile(t, "docs/METRICS.md")
		var missing []string
		for name := range union {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if strings.HasPrefix(name, "wasmwiz_") && !strings.Contains(doc, base) {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("exported but not in docs/METRICS.md: %v", missing)
		}
	})
}
