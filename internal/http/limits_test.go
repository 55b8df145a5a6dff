package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// manyArgs is n arguments of one byte each.
func manyArgs(n int) []string {
	args := make([]string, n)
	for i := range args {
		args[i] = "a"
	}
	return args
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExecuteArgvCaps: every body kind, sync and async, refuses args and
// env past wasmwiz's caps with ETOOLARGE naming the limit, before anything
// runs.
func TestExecuteArgvCaps(t *testing.T) {
	t.Parallel()
	storedID := wasmwiz.NewModuleID()
	tooMany := manyArgs(wasmwiz.MaxArgs + 1)
	bigEnv := map[string]string{"BIG": strings.Repeat("v", wasmwiz.MaxArgBytes)}
	query := func(args []string) string {
		q := url.Values{"arg": args}
		return q.Encode()
	}
	tests := []struct {
		name     string
		path     string
		body     func(t *testing.T) (io.Reader, string)
		contains string
	}{
		{name: "json args", path: "/api/v1/execute", contains: "more than 4096 arguments",
			body: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","args":` + jsonText(t, tooMany) + `}`), "application/json"
			}},
		{name: "json async args", path: "/api/v1/execute", contains: "more than 4096 arguments",
			body: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"async":true,"wasm_base64":"AGFzbQEAAAA=","args":` + jsonText(t, tooMany) + `}`), "application/json"
			}},
		{name: "json env", path: "/api/v1/execute", contains: `environment variable "BIG" is`,
			body: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","env":` + jsonText(t, bigEnv) + `}`), "application/json"
			}},
		{name: "json stored module args", path: "/api/v1/modules/" + storedID + "/execute", contains: "more than 4096 arguments",
			body: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"args":` + jsonText(t, tooMany) + `}`), "application/json"
			}},
		{name: "multipart args", path: "/api/v1/execute", contains: "more than 4096 arguments",
			body: func(t *testing.T) (io.Reader, string) {
				return testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, map[string]string{"args": jsonText(t, tooMany)})
			}},
		{name: "multipart async env", path: "/api/v1/execute", contains: `environment variable "BIG" is`,
			body: func(t *testing.T) (io.Reader, string) {
				return testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, map[string]string{"async": "true", "env": jsonText(t, bigEnv)})
			}},
		{name: "raw module, args in the query", path: "/api/v1/execute?" + query(tooMany), contains: "more than 4096 arguments",
			body: func(t *testing.T) (io.Reader, string) { return bytes.NewReader(wasmHeader), "application/wasm" }},
		{name: "raw module async, args in the query", path: "/api/v1/execute?async=true&" + query(tooMany), contains: "more than 4096 arguments",
			body: func(t *testing.T) (io.Reader, string) { return bytes.NewReader(wasmHeader), "application/wasm" }},
		{name: "stored module, raw stdin, args in the query", path: "/api/v1/modules/" + storedID + "/execute?" + query(tooMany),
			contains: "more than 4096 arguments",
			body:     func(t *testing.T) (io.Reader, string) { return strings.NewReader("stdin"), "application/octet-stream" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				return &wasmwiz.Module{ID: id, Name: "stored.wasm", SHA256: "abc", SizeBytes: int64(len(wasmHeader))}, nil
			}
			body, ct := tt.body(t)
			res := f.do(request{method: "POST", path: tt.path, key: userKey, body: body, contentType: ct})
			if res.status != 413 || res.errorCode(t) != wasmwiz.ETOOLARGE || !strings.Contains(res.errorMessage(t), tt.contains) {
				t.Fatalf("status %d: %s\nwant 413 ETOOLARGE with %q", res.status, res.body, tt.contains)
			}
			if n := f.runCount(); n != 0 {
				t.Errorf("the engine ran %d times", n)
			}
		})
	}
}

// repeatReader yields head, then unit again and again, forever, and counts
// what was read: a hostile body of any length.
type repeatReader struct {
	mu   sync.Mutex
	head []byte
	unit []byte
	off  int
	n    int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		if len(r.head) > 0 {
			c := copy(p[n:], r.head)
			r.head = r.head[c:]
			n += c
			continue
		}
		c := copy(p[n:], r.unit[r.off:])
		r.off = (r.off + c) % len(r.unit)
		n += c
	}
	r.n += int64(n)
	return n, nil
}

func (r *repeatReader) read() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// TestExecuteJSONFieldCaps: a JSON execute body is read field by field and
// each field is refused when it reaches its own cap, far below the body's:
// endless values, endless lists of tiny args, env or files are cut where
// their cap says, with ETOOLARGE naming it, and nothing runs.
func TestExecuteJSONFieldCaps(t *testing.T) {
	t.Parallel()
	free, _ := findTier(wasmwiz.TierFree)
	l := free.Limits
	const wasm = `"wasm_base64":"AGFzbQEAAAA=",`
	const slack = 64 << 10 // the decoder's read-ahead and a field's slack
	b64 := func(n int64) int64 { return (n + 2) / 3 * 4 }
	tests := []struct {
		name     string
		head     string
		unit     string
		maxRead  int64 // the server stops reading by here
		contains string
	}{
		{name: "module", head: `{"wasm_base64":"`, unit: "AAAA", maxRead: b64(l.MaxModuleBytes) + slack, contains: "module is over the 10MiB limit of tier free"},
		{name: "stdin_base64", head: `{` + wasm + `"stdin_base64":"`, unit: "AAAA", maxRead: b64(l.MaxStdinBytes) + slack, contains: "stdin is over the 1MiB limit of tier free"},
		{name: "stdin text", head: `{` + wasm + `"stdin":"`, unit: "x", maxRead: 2*l.MaxStdinBytes + slack, contains: "stdin is over the 1MiB limit of tier free"},
		{name: "archive", head: `{` + wasm + `"archive_base64":"`, unit: "AAAA", maxRead: b64(l.MaxFilesInBytes+l.MaxFiles*1024) + slack, contains: "archive is over"},
		{name: "one file's content", head: `{` + wasm + `"files":[{"path":"a","content_base64":"`, unit: "AAAA",
			maxRead: b64(l.MaxFilesInBytes) + l.MaxFiles*1024 + slack, contains: "files are over the 1MiB limit"},
		{name: "files without end", head: `{` + wasm + `"files":[`, unit: `{"path":"a","content_base64":""},`,
			maxRead: int64(l.MaxFiles+1)*33 + slack, contains: "more than 100 files"},
		{name: "millions of tiny args", head: `{` + wasm + `"args":[`, unit: `"a",`,
			maxRead: (wasmwiz.MaxArgs+1)*4 + slack, contains: "more than 4096 arguments"},
		{name: "one endless arg", head: `{` + wasm + `"args":["`, unit: "a",
			maxRead: 2*wasmwiz.MaxArgvBytes + slack, contains: "args are over 2MiB as JSON text"},
		{name: "args over the total", head: `{` + wasm + `"args":[`, unit: `"` + strings.Repeat("a", 100<<10) + `",`,
			maxRead: wasmwiz.MaxArgvBytes + 100<<10 + slack, contains: "over the 1MiB limit of both together"},
		{name: "millions of tiny env vars", head: `{` + wasm + `"env":{`, unit: `"K":"",`, // one name again and again: still counted
			maxRead: (wasmwiz.MaxEnvVars+1)*7 + slack, contains: "more than 4096 environment variables"},
		{name: "args, then env past the total", head: `{` + wasm + `"args":["` + strings.Repeat("a", 120<<10) + `"],"env":{`,
			unit:    `"` + strings.Repeat("K", 8) + `":"` + strings.Repeat("v", 120<<10) + `",`,
			maxRead: wasmwiz.MaxArgvBytes + 2*(120<<10) + slack, contains: "over the 1MiB limit of both together"},
		{name: "a small field", head: `{` + wasm + `"name":"`, unit: "n", maxRead: 64<<10 + slack, contains: `field "name" is over 64KiB`},
		{name: "params", head: `{` + wasm + `"function":"f","params":[`, unit: "1,", maxRead: 64<<10 + slack, contains: `field "params" is over 64KiB`},
		{name: "outputs", head: `{` + wasm + `"outputs":[`, unit: `"o",`, maxRead: 64<<10 + slack, contains: `field "outputs" is over 64KiB`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			body := &repeatReader{head: []byte(tt.head), unit: []byte(tt.unit)}
			r := httptest.NewRequest("POST", "/api/v1/execute", body)
			r.ContentLength = -1 // streamed: no Content-Length to refuse early
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+userKey)
			w := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(w, r)
			res := &response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
			if res.status != 413 || !strings.Contains(res.errorMessage(t), tt.contains) {
				t.Fatalf("status %d: %s\nwant 413 with %q", res.status, res.body, tt.contains)
			}
			if got := body.read(); got > tt.maxRead {
				t.Errorf("the server read %d bytes, want at most %d", got, tt.maxRead)
			}
			if f.runCount() != 0 {
				t.Error("the engine ran")
			}
		})
	}
}

// TestExecuteJSONShape: the streamed decoder refuses what the struct
// decoder refused, and a field twice.
func TestExecuteJSONShape(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body, contains string }{
		{"unknown field", `{"wasm_base64":"AGFzbQEAAAA=","tier":"enterprise"}`, `unknown field "tier"`},
		{"unknown field of a file", `{"wasm_base64":"AGFzbQEAAAA=","files":[{"path":"a","data":"x"}]}`, `unknown field "data"`},
		{"a field twice", `{"wasm_base64":"AGFzbQEAAAA=","args":["a"],"args":["b"]}`, `field "args" given twice`},
		{"data after the object", `{"wasm_base64":"AGFzbQEAAAA="} {}`, "data after the object"},
		{"not an object", `["wasm_base64"]`, "want one JSON object"},
		{"args of numbers", `{"wasm_base64":"AGFzbQEAAAA=","args":[1]}`, "args must be a JSON array of strings"},
		{"env of numbers", `{"wasm_base64":"AGFzbQEAAAA=","env":{"A":1}}`, "env must be a JSON object of strings"},
		{"async not a bool", `{"wasm_base64":"AGFzbQEAAAA=","async":"yes"}`, `field "async" must be bool`},
		{"cut short", `{"wasm_base64":"AGFzbQEAAAA=","args":["a"`, "ends too soon"},
		{"empty", ``, "empty JSON body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: strings.NewReader(tt.body), contentType: "application/json"})
			if res.status != 400 || res.errorCode(t) != wasmwiz.EINVALID || !strings.Contains(res.errorMessage(t), tt.contains) {
				t.Fatalf("status %d: %s\nwant 400 EINVALID with %q", res.status, res.body, tt.contains)
			}
		})
	}
}
