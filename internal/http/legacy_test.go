package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestLegacyExecute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		fields     map[string]string
		files      map[string][]byte
		result     *wasmwiz.Result
		status     int
		wantOutput any
		wantError  string // substring; "" means null
	}{
		{name: "wasm and input", fields: map[string]string{"input": "abc"}, files: map[string][]byte{"wasm": wasmHeader},
			status: 200, wantOutput: "out:abc"},
		{name: "wasm_file and input_data", fields: map[string]string{"input_data": "xyz"}, files: map[string][]byte{"wasm_file": wasmHeader},
			status: 200, wantOutput: "out:xyz"},
		{name: "unknown fields ignored", fields: map[string]string{"input": "1", "api_version": "0.1"}, files: map[string][]byte{"wasm": wasmHeader},
			status: 200, wantOutput: "out:1"},
		{name: "trap", files: map[string][]byte{"wasm": wasmHeader},
			result: &wasmwiz.Result{Status: wasmwiz.StatusTrap, Trap: "integer divide by zero"}, status: 200, wantError: "integer divide by zero"},
		{name: "non-zero exit", files: map[string][]byte{"wasm": wasmHeader},
			result: &wasmwiz.Result{Status: wasmwiz.StatusExit, ExitCode: 3, Stderr: []byte("boom\n")}, status: 200, wantError: "exited with code 3: boom"},
		{name: "no wasm", fields: map[string]string{"input": "1"}, status: 400, wantError: "no wasm file"},
		{name: "not wasm", files: map[string][]byte{"wasm": []byte("hello")}, status: 400, wantError: "not a WebAssembly module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			if tt.result != nil {
				f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) { return tt.result, nil }
			}
			body, ct := testenv.Multipart(t, tt.files, tt.fields)
			res := f.do(request{method: "POST", path: "/api/execute", key: userKey, body: body, contentType: ct})
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			m := res.json(t)
			if len(m) != 2 {
				t.Errorf("answer has keys other than output and error: %s", res.body)
			}
			if tt.wantError == "" {
				if m["error"] != nil || m["output"] != tt.wantOutput {
					t.Errorf("answer %s, want output %v and error null", res.body, tt.wantOutput)
				}
			} else {
				e, _ := m["error"].(string)
				if m["output"] != nil || !strings.Contains(e, tt.wantError) {
					t.Errorf("answer %s, want output null and error containing %q", res.body, tt.wantError)
				}
			}
		})
	}
}

func TestLegacyExecuteRateLimited(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.decision = wasmwiz.RateDecision{Allowed: false, Limit: 10, Remaining: 0, ResetAfter: 30 * time.Second, RetryAfter: 2100 * time.Millisecond}
	body, ct := testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, nil)
	res := f.do(request{method: "POST", path: "/api/execute", key: userKey, body: body, contentType: ct})
	if res.status != 429 || res.header.Get("Retry-After") != "3" || res.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("status %d headers %v", res.status, res.header)
	}
	m := res.json(t)
	if m["output"] != nil || !strings.Contains(fmt.Sprint(m["error"]), "rate limit") {
		t.Errorf("answer %s", res.body)
	}
}

// TestLegacyErrorsKeepTheLegacyShape: every failure on the original route,
// also those the middleware answers before the handler runs, is
// {"output":null,"error":"…"}, which the original service's clients parse.
func TestLegacyErrorsKeepTheLegacyShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		key         string
		body        io.Reader
		contentType string
		status      int
		message     string
	}{
		{name: "no key", status: 401, message: "authentication required"},
		{name: "unknown key", key: unknownKey, status: 401, message: "invalid API key"},
		{name: "malformed key", key: "hunter2", status: 401, message: "invalid API key"},
		{name: "not multipart", key: userKey, body: strings.NewReader("{}"), contentType: "application/json", status: 400, message: "multipart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			res := f.do(request{method: "POST", path: "/api/execute", key: tt.key, body: tt.body, contentType: tt.contentType})
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			var got map[string]any
			if err := json.Unmarshal(res.body, &got); err != nil {
				t.Fatalf("answer is not JSON: %s", res.body)
			}
			msg, _ := got["error"].(string)
			if len(got) != 2 || got["output"] != nil || !strings.Contains(msg, tt.message) {
				t.Fatalf("answer %s, want {\"output\":null,\"error\":\"…%s…\"}", res.body, tt.message)
			}
		})
	}
}
