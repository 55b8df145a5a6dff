package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

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
