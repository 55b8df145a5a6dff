package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeGracefulShutdown: runs in flight when the server is told to stop
// are all answered, and their usage records are in the database afterwards.
func TestServeGracefulShutdown(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		db := be.env(t)
		s := startServe(t, serveEnv(t, db, map[string]string{
			"WASMWIZ_WORKERS":             "3",
			"WASMWIZ_MAX_CONCURRENT_RUNS": "3",
			"WASMWIZ_SHUTDOWN_GRACE":      "60s",
		}), ServeOptions{UsageFlushInterval: time.Hour}) // only Close flushes
		user, _, _ := s.newUser(wasmwiz.TierBasic)
		sleep := testmodule.Read(t, "sleep.wasm")
		const n = 3
		type answer struct {
			res *api.Result
			err error
		}
		answers := make(chan answer, n)
		for i := 0; i < n; i++ {
			go func() {
				res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: sleep, Args: []string{"1500"}})
				answers <- answer{res, err}
			}()
		}
		testenv.WaitFor(t, "three runs in workers", func() bool { return s.srv.PoolStats().Busy == n })
		stopped := make(chan error, 1)
		go func() { stopped <- s.stop() }()
		var ids []string
		for i := 0; i < n; i++ {
			a := testenv.Recv(t, answers, "the runs in flight to answer")
			if a.err != nil || a.res.Status != api.StatusOK || string(a.res.Stdout) != "slept\n" {
				t.Fatalf("run in flight at shutdown: %+v, %v", a.res, a.err)
			}
			ids = append(ids, a.res.ID)
		}
		if err := testenv.Recv(t, stopped, "serve to stop"); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if st := s.srv.UsageStats(); st.Written < n || st.Dropped != 0 {
			t.Fatalf("usage after shutdown: %+v", st)
		}
		// The records are in the database: read them back on a new server.
		again := startServe(t, serveEnv(t, db), ServeOptions{})
		for _, id := range ids {
			run, err := again.client(s.adminKey).GetRun(ctx, id)
			if err != nil || run.Status != api.StatusOK {
				t.Fatalf("run %s after the restart: %+v, %v", id, run, err)
			}
		}
		// A stopped server refuses connections.
		if _, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: sleep}); codeOf(err) != wasmwiz.EUNAVAILABLE {
			t.Fatalf("execute on the stopped server: %v", err)
		}
	})
}

// TestServeShutdownGraceExpires: a run longer than WASMWIZ_SHUTDOWN_GRACE
// does not hold the shutdown: serve ends soon after the grace period, the
// run's worker is stopped, and its usage record is still written.
func TestServeShutdownGraceExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[0].env(t)
	s := startServe(t, serveEnv(t, db, map[string]string{"WASMWIZ_SHUTDOWN_GRACE": "300ms"}), ServeOptions{})
	user, me, key := s.newUser(wasmwiz.TierBasic)
	answered := make(chan error, 1)
	go func() {
		_, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"60000"}})
		answered <- err
	}()
	testenv.WaitFor(t, "the long run to be in a worker", func() bool { return s.srv.PoolStats().Busy == 1 })
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(50 * time.Second):
		t.Fatal("serve waited for a 60s run past its 300ms grace period")
	}
	if err := testenv.Recv(t, answered, "the cut-off run's answer"); err == nil {
		t.Fatal("the cut-off run answered a result")
	}
	// Its record is in the database, with the error it ended with.
	again := startServe(t, serveEnv(t, db), ServeOptions{})
	runs, _, err := again.client(key).ListRuns(ctx, client.RunQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].UserID != me.ID {
		t.Fatalf("the cut-off run's usage record: %+v", runs)
	}
	if found := runs[0]; found.Status == api.StatusOK || (found.Status == "" && found.ErrorCode == "") {
		t.Fatalf("the cut-off run's record: %+v", found)
	}
}

// TestServeDrainsBeforeClosing: on shutdown /readyz answers 503 at once
// while requests are still served for WASMWIZ_DRAIN_DELAY; a request sent
// then on a kept-alive connection is answered (with Connection: close)
// instead of being cut; after the delay the listener closes and the runs
// drain. The drain is logged with its delay as text.
func TestServeDrainsBeforeClosing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serveWith(t, map[string]string{
		"WASMWIZ_DRAIN_DELAY": "10m", // ended by the test once it has looked
		"WASMWIZ_LOG_FORMAT":  "json",
		"WASMWIZ_LOG_LEVEL":   "info",
	}, ServeOptions{})
	_, _, key := s.newUser(wasmwiz.TierBasic)

	keepAlive := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(c *http.Client, path string) (*http.Response, bool) {
		t.Helper()
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, s.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, reused
	}
	if resp, _ := get(keepAlive, "/api/v1/me"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before shutdown: %d, close %v", resp.StatusCode, resp.Close)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	testenv.WaitFor(t, "/readyz to answer 503", func() bool {
		resp, _ := get(fresh, "/readyz")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	resp, reused := get(keepAlive, "/api/v1/me")
	if resp.StatusCode != 200 || !reused || !resp.Close {
		t.Fatalf("on the kept-alive connection while draining: %d, reused %v, Connection: close %v", resp.StatusCode, reused, resp.Close)
	}
	if resp, _ := get(fresh, "/api/v1/me"); resp.StatusCode != 200 {
		t.Fatalf("a new connection while draining: %d", resp.StatusCode)
	}
	select {
	case err := <-stopped:
		t.Fatalf("serve stopped during the drain delay: %v", err)
	default:
	}

	s.srv.cutDrain()
	if err := testenv.Recv(t, stopped, "serve to stop"); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := fresh.Get(s.url + "/healthz"); err == nil {
		t.Fatal("the listener still accepts after the shutdown")
	}
	var drained bool
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if strings.HasPrefix(rec["msg"].(string), "draining") {
			drained = rec["drain_delay"] == "10m0s"
		}
		if rec["msg"] == "shutting down: no new requests; in-flight runs may finish" && rec["grace"] != "30s" {
			t.Errorf("grace logged as %#v, want \"30s\"", rec["grace"])
		}
	}
	if !drained {
		t.Fatalf("no drain line with drain_delay \"10m0s\" in the log:\n%s", s.stderr)
	}
}

// TestServeProcess runs the real binary: serve prints its key and address,
// runs guests in `wasmwiz worker` processes it starts from itself, and
// exits 0 on SIGTERM after answering the run in flight.
func TestServeProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := testenv.StartServe(t, map[string]string{"WASMWIZ_WORKERS": "1"})
	c := processAPI(t, p).admin()
	res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
	if err != nil || string(res.Stdout) != "Hello, World!\n" {
		t.Fatalf("execute on the real binary: %+v, %v\nstderr: %s", res, err, p.Stderr)
	}
	// A run in flight at SIGTERM is answered before the process exits.
	inflight := make(chan error, 1)
	go func() {
		res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"1000"}})
		if err == nil && string(res.Stdout) != "slept\n" {
			err = errors.New("wrong output: " + string(res.Stdout))
		}
		inflight <- err
	}()
	testenv.WaitFor(t, "the run to be in flight", func() bool {
		m, err := c.Metrics(ctx)
		return err == nil && regexp.MustCompile(`(?m)^wasmwiz_http_requests_in_flight 2$`).MatchString(m)
	})
	if err := p.Terminate(t); err != nil {
		t.Fatalf("serve after SIGTERM: %v\nstderr: %s", err, p.Stderr)
	}
	if err := testenv.Recv(t, inflight, "the run in flight at SIGTERM"); err != nil {
		t.Fatalf("the run in flight at SIGTERM: %v", err)
	}
	if !regexp.MustCompile(`msg="shut down" usage_written=2 usage_dropped=0`).MatchString(p.Stderr.String()) {
		t.Fatalf("shutdown did not flush both usage records:\n%s", p.Stderr)
	}
}

// TestServeProcessesShareRedis: two serve processes on one PostgreSQL and
// one Redis share one user's per-minute quota.
func TestServeProcessesShareRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	vars := postgresEnv(t, emptyRedisDB(t, 11))
	vars["WASMWIZ_WORKERS"] = "1"
	a := testenv.StartServe(t, vars)
	b := testenv.StartServe(t, vars)
	sa := processAPI(t, a) // the first to start bootstrapped the admin
	ca, _, key := sa.newTierUser("shared", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 4 })
	cb := processAPI(t, b).client(key)
	hello := testmodule.Read(t, "hello.wasm")
	for i, c := range []*client.Client{ca, cb, ca, cb} {
		ex, err := c.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: hello})
		if err != nil || ex.RateLimit.Remaining != int64(3-i) {
			t.Fatalf("run %d: %+v, %v", i+1, ex, err)
		}
	}
	for _, c := range []*client.Client{ca, cb} {
		_, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		wantCode(t, "fifth run", err, wasmwiz.ERATELIMIT)
	}
	for _, p := range []*testenv.ServeProcess{a, b} {
		if err := p.Terminate(t); err != nil {
			t.Fatalf("SIGTERM: %v\nstderr: %s", err, p.Stderr)
		}
	}
}

// TestServeBootstrap: the first start on an empty database prints an admin
// key once, with the URL; the second start on the same database prints none.
func TestServeBootstrap(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		db := be.env(t)
		first := startServe(t, serveEnv(t, db), ServeOptions{})
		out := first.stdout.String()
		if first.adminKey == "" || !strings.Contains(out, "listening on "+first.url) || !strings.Contains(out, first.url+"/api/v1/me") {
			t.Fatalf("first start printed no key and URL:\n%s", out)
		}
		// `grep -i key` of the output finds the key (README).
		if !regexp.MustCompile(`(?im)^.*key.*` + first.adminKey + `$`).MatchString(out) {
			t.Fatalf("no line with the word key and the key:\n%s", out)
		}
		if strings.Contains(first.stderr.String(), first.adminKey) {
			t.Fatalf("the key is in the log:\n%s", first.stderr)
		}
		me, err := first.admin().Me(context.Background())
		if err != nil || me.User.Role != api.RoleAdmin || me.User.Email != BootstrapEmail {
			t.Fatalf("Me with the printed key: %+v, %v", me, err)
		}
		if err := first.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		second := startServe(t, serveEnv(t, db), ServeOptions{})
		if k := keyPattern.FindString(second.stdout.String()); k != "" {
			t.Fatalf("second start printed a key again:\n%s", second.stdout)
		}
		if _, err := second.client(first.adminKey).Me(context.Background()); err != nil {
			t.Fatalf("the first key after a restart: %v", err)
		}
	})
}

// TestServeMetricsAddr: with WASMWIZ_METRICS_ADDR, /metrics is served there
// and not on the API's address.
func TestServeMetricsAddr(t *testing.T) {
	t.Parallel()
	s := backends[0].serveWith(t, map[string]string{"WASMWIZ_METRICS_ADDR": "127.0.0.1:0"}, ServeOptions{})
	if res, _ := testenv.Do(t, http.MethodGet, s.url+"/metrics", "", "", nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on the API address: %d, want 404", res.StatusCode)
	}
	res, body := testenv.Do(t, http.MethodGet, s.srv.MetricsURL()+"/metrics", "", "", nil)
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("wasmwiz_http_requests_total")) {
		t.Fatalf("/metrics on the metrics address: %d %.200s", res.StatusCode, body)
	}
}

// TestServeStartFailures: serve refuses to start with a clear error, naming
// the variable, and leaves nothing running.
func TestServeStartFailures(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // the subtests are parallel: they run after this function returns
	tests := []struct {
		name     string
		vars     map[string]string
		opts     ServeOptions
		wantCode string
		wantText string
	}{
		{"bad config", map[string]string{"WASMWIZ_WORKERS": "0"}, ServeOptions{}, wasmwiz.EINVALID, "WASMWIZ_WORKERS"},
		{"address in use", map[string]string{"WASMWIZ_ADDR": busy.Addr().String()}, ServeOptions{}, wasmwiz.EUNAVAILABLE, "WASMWIZ_ADDR"},
		{"metrics address in use", map[string]string{"WASMWIZ_METRICS_ADDR": busy.Addr().String()}, ServeOptions{}, wasmwiz.EUNAVAILABLE, "WASMWIZ_METRICS_ADDR"},
		{"database unreachable", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"}, ServeOptions{}, wasmwiz.EUNAVAILABLE, ""},
		{"worker cannot start", nil, ServeOptions{WorkerCommand: []string{filepath.Join(t.TempDir(), "no-such-program")}}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := serveEnv(t, map[string]string{"WASMWIZ_DATABASE_URL": filepath.Join(t.TempDir(), "w.db")})
			for k, v := range tt.vars {
				env[k] = v
			}
			var stdout, stderr testenv.Buffer
			e := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}
			opts := tt.opts
			if opts.WorkerCommand == nil {
				opts = testServeOptions()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			opts.Listening = func(*Server) { t.Errorf("serve listened"); cancel() }
			err := Serve(ctx, e, opts)
			if err == nil {
				t.Fatal("serve started")
			}
			if tt.wantCode != "" && codeOf(err) != tt.wantCode {
				t.Errorf("error %v, want code %s", err, tt.wantCode)
			}
			if !strings.Contains(messageOf(err), tt.wantText) {
				t.Errorf("error %q does not name %s", messageOf(err), tt.wantText)
			}
			if keyPattern.MatchString(stdout.String()) {
				t.Errorf("a key was printed although serve did not start: %s", stdout.String())
			}
		})
	}
	// The API listener of the failed start was closed: its port is free.
	t.Run("listener closed after a failed start", func(t *testing.T) {
		t.Parallel()
		addr := tcpproxy.ClosedAddr(t)
		env := serveEnv(t, map[string]string{"WASMWIZ_DATABASE_URL": filepath.Join(t.TempDir(), "w.db"),
			"WASMWIZ_ADDR": addr, "WASMWIZ_METRICS_ADDR": busy.Addr().String()})
		e := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(k string) string { return env[k] }}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		opts := testServeOptions()
		opts.Listening = func(*Server) { t.Errorf("serve listened"); cancel() }
		if err := Serve(ctx, e, opts); err == nil {
			t.Fatal("serve started")
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the API address is still taken after the failed start: %v", err)
		}
		ln.Close()
	})
}

// TestServeWildcardAddr: on a wildcard address the printed URL names
// loopback, and it answers.
func TestServeWildcardAddr(t *testing.T) {
	t.Parallel()
	s := backends[0].serveWith(t, map[string]string{"WASMWIZ_ADDR": ":0"}, ServeOptions{})
	if !strings.HasPrefix(s.url, "http://127.0.0.1:") || !strings.Contains(s.stdout.String(), "listening on "+s.url) {
		t.Fatalf("URL %s, stdout %s", s.url, s.stdout)
	}
	if err := s.client("").Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}
