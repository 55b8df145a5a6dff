package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(healthy.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)
	closedAddr := tcpproxy.ClosedAddr(t) // nothing answers there

	tests := []struct {
		name     string
		addr     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"healthy server from WASMWIZ_ADDR", strings.TrimPrefix(healthy.URL, "http://"), nil, 0, ""},
		{"all interfaces address asks loopback", "0.0.0.0:" + port(t, healthy.URL), nil, 0, ""},
		{"503 fails", strings.TrimPrefix(failing.URL, "http://"), nil, 1, "503"},
		{"nothing listening fails", closedAddr, nil, 1, "EUNAVAILABLE"},
		{"explicit url wins", closedAddr, []string{"--url", healthy.URL + "/healthz"}, 0, ""},
		{"explicit url to a missing path fails", "", []string{"--url", healthy.URL + "/nope"}, 1, "404"},
		{"bad address", "no-port", nil, 1, "WASMWIZ_ADDR"},
		{"bad flag", "", []string{"--bogus"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runMain(append([]string{"healthcheck"}, tt.args...), "", map[string]string{"WASMWIZ_ADDR": tt.addr})
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, stdout, stderr)
			}
			if tt.wantErr != "" && !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not mention %q", stderr, tt.wantErr)
			}
		})
	}
}

func TestHealthzURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ addr, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080/healthz"},
		{":8080", "http://127.0.0.1:8080/healthz"},
		{"0.0.0.0:9000", "http://127.0.0.1:9000/healthz"},
		{"[::]:8080", "http://[::1]:8080/healthz"},
		{"example.internal:80", "http://example.internal:80/healthz"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			got, err := healthzURL(tt.addr)
			if err != nil || got != tt.want {
				t.Errorf("healthzURL(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
			}
		})
	}
}

func port(t *testing.T, rawURL string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
