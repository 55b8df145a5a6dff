package main

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// anonymousRun sends hello.wasm without credentials, with X-Forwarded-For
// xff ("" for none), and returns the status and X-RateLimit-Remaining.
func anonymousRun(t *testing.T, s *e2eServer, xff string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/execute", bytes.NewReader(testmodule.Read(t, "hello.wasm")))
	req.Header.Set("Content-Type", "application/wasm")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, _ := testenv.Send(t, req)
	return resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining")
}

// TestServeAnonymous: with WASMWIZ_AUTH=off anonymous callers run inline
// modules under the free tier (10 a minute), counted per client IP, and
// X-Forwarded-For names that IP only when it comes from a trusted proxy.
func TestServeAnonymous(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		trusted string
		// perXFF: each X-Forwarded-For address has a quota of its own.
		perXFF bool
	}{
		{"behind a trusted proxy", "127.0.0.1/32", true},
		{"no trusted proxy", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := backends[0].serveWith(t, map[string]string{"WASMWIZ_AUTH": "off", "WASMWIZ_TRUSTED_PROXIES": tt.trusted}, ServeOptions{})
			for i := 1; i <= 10; i++ {
				st, rem := anonymousRun(t, s, "203.0.113.7")
				if st != http.StatusOK || rem != strconv.Itoa(10-i) {
					t.Fatalf("anonymous run %d: %d, remaining %s", i, st, rem)
				}
			}
			if st, _ := anonymousRun(t, s, "203.0.113.7"); st != http.StatusTooManyRequests {
				t.Fatalf("11th anonymous run: %d, want 429", st)
			}
			st, _ := anonymousRun(t, s, "198.51.100.9")
			if tt.perXFF && st != http.StatusOK {
				t.Fatalf("another forwarded address: %d, want its own quota", st)
			}
			if !tt.perXFF && st != http.StatusTooManyRequests {
				t.Fatalf("an untrusted X-Forwarded-For escaped the quota: %d", st)
			}

			// Everything but inline execute still needs a key.
			anon := s.client("")
			_, _, err := anon.ListModules(ctx, "", client.Page{})
			wantCode(t, "anonymous module list", err, wasmwiz.EUNAUTHORIZED)
			_, err = anon.Execute(ctx, &client.ExecuteRequest{ModuleID: "mod_0K5smvRL1H5z3K7gzfJ1Cr"})
			wantCode(t, "anonymous stored module", err, wasmwiz.EUNAUTHORIZED)
			// A key that does not authenticate is refused, not taken as anonymous.
			_, err = s.client("ww_"+string(bytes.Repeat([]byte("z"), 40))).Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
			wantCode(t, "a bad key with auth off", err, wasmwiz.EUNAUTHORIZED)
		})
	}
}
