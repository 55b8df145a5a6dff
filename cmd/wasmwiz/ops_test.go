package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// TestConfigReportsEveryProblem: a bad configuration names every bad
// variable at once, parse errors and production refusals alike, and a
// variable that did not parse is not blamed twice.
func TestConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"WASMWIZ_PROFILE":         "production",
		"WASMWIZ_WORKERS":         "0",
		"WASMWIZ_MAX_MEMORY":      "lots",
		"WASMWIZ_LOG_FORMAT":      "xml",
		"WASMWIZ_AUTH":            "off",
		"WASMWIZ_TRUSTED_PROXIES": "0.0.0.0/0",
	}
	_, err := LoadConfig(func(k string) string { return vars[k] })
	msg := wasmwiz.ErrorMessage(err)
	if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.HasPrefix(msg, "6 configuration problems:\n") {
		t.Fatalf("error %v", err)
	}
	for _, name := range []string{"WASMWIZ_WORKERS", "WASMWIZ_MAX_MEMORY", "WASMWIZ_LOG_FORMAT", "WASMWIZ_AUTH",
		"WASMWIZ_TRUSTED_PROXIES", "WASMWIZ_DATABASE_URL"} {
		if n := strings.Count(msg, "\n  "+name+": "); n != 1 {
			t.Errorf("%s is named %d times, want once:\n%s", name, n, msg)
		}
	}
	// One problem stays one line; the CLI prints them all.
	if _, err := LoadConfig(func(k string) string { return map[string]string{"WASMWIZ_WORKERS": "x"}[k] }); !strings.HasPrefix(wasmwiz.ErrorMessage(err), "WASMWIZ_WORKERS: ") {
		t.Fatalf("one problem: %v", err)
	}
	code, _, errOut := runMain([]string{"config"}, "", map[string]string{"WASMWIZ_WORKERS": "0", "WASMWIZ_LOG_LEVEL": "loud"})
	if code != 1 || !strings.Contains(errOut, "WASMWIZ_WORKERS") || !strings.Contains(errOut, "WASMWIZ_LOG_LEVEL") {
		t.Fatalf("wasmwiz config: exit %d, stderr %q", code, errOut)
	}
}

// TestLogDurationsAsText: the JSON log writes durations as text with a unit.
func TestLogDurationsAsText(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		newLogger(&Config{LogLevel: "info", LogFormat: format}, &buf).Info("x", "grace", 1500*time.Millisecond)
		if !strings.Contains(buf.String(), `"grace":"1.5s"`) && !strings.Contains(buf.String(), `grace=1.5s`) {
			t.Errorf("%s log: %s", format, buf.String())
		}
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
	env := serveEnv(t, backends[0].env(t))
	env["WASMWIZ_DRAIN_DELAY"] = "10m" // ended by the test once it has looked
	env["WASMWIZ_LOG_FORMAT"] = "json"
	env["WASMWIZ_LOG_LEVEL"] = "info"
	s := startServe(t, env, ServeOptions{})
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
	waitFor(t, "/readyz to answer 503", func() bool {
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
	if err := <-stopped; err != nil {
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
