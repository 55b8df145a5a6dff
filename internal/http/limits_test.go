package http_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/mock"
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
		{name: "json one argument over its cap", path: "/api/v1/execute", contains: "argument 2 is 131073B, over the 128KiB limit of one argument",
			body: func(t *testing.T) (io.Reader, string) {
				return strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","args":["a","` + strings.Repeat("x", wasmwiz.MaxArgBytes+1) + `"]}`), "application/json"
			}},
		{name: "json args and env over the total", path: "/api/v1/execute", contains: "over the 1MiB limit of both together",
			body: func(t *testing.T) (io.Reader, string) {
				env := map[string]string{}
				for i := range 5 {
					env[fmt.Sprint("E", i)] = strings.Repeat("v", 120<<10)
				}
				args := []string{strings.Repeat("a", 120<<10), strings.Repeat("a", 120<<10), strings.Repeat("a", 120<<10), strings.Repeat("a", 120<<10)}
				return strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","args":` + jsonText(t, args) + `,"env":` + jsonText(t, env) + `}`), "application/json"
			}},
		{name: "json env over the count cap", path: "/api/v1/execute", contains: "more than 4096 environment variables",
			body: func(t *testing.T) (io.Reader, string) {
				env := map[string]string{}
				for i := range wasmwiz.MaxEnvVars + 1 {
					env[fmt.Sprint("E", i)] = ""
				}
				return strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","env":` + jsonText(t, env) + `}`), "application/json"
			}},
		{name: "multipart one argument over its cap", path: "/api/v1/execute", contains: "argument 1 is 131073B, over the 128KiB limit",
			body: func(t *testing.T) (io.Reader, string) {
				return testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, map[string]string{"args": jsonText(t, []string{strings.Repeat("x", wasmwiz.MaxArgBytes+1)})})
			}},
		{name: "multipart args over the total", path: "/api/v1/execute", contains: "over the 1MiB limit of both together",
			body: func(t *testing.T) (io.Reader, string) {
				args := make([]string, 9)
				for i := range args {
					args[i] = strings.Repeat("a", 120<<10)
				}
				return testenv.Multipart(t, map[string][]byte{"wasm": wasmHeader}, map[string]string{"args": jsonText(t, args)})
			}},
		{name: "raw module, one argument over its cap in the query", path: "/api/v1/execute?" + url.Values{"arg": {strings.Repeat("x", wasmwiz.MaxArgBytes+1)}}.Encode(),
			contains: "argument 1 is 131073B, over the 128KiB limit",
			body:     func(t *testing.T) (io.Reader, string) { return bytes.NewReader(wasmHeader), "application/wasm" }},
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

// repeatReader yields head, then unit again and again, forever.
type repeatReader struct {
	head []byte
	unit []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
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
	return n, nil
}

// endless is a hostile body of any length, head and then unit forever,
// that counts what the server read of it.
func endless(head, unit string) *countingReader {
	return &countingReader{r: &repeatReader{head: []byte(head), unit: []byte(unit)}}
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
			body := endless(tt.head, tt.unit) // streamed: no Content-Length to refuse early
			res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: body, contentType: "application/json"})
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
		{"a file's field twice", `{"wasm_base64":"AGFzbQEAAAA=","files":[{"path":"a","path":"b"}]}`, `files[0]: field "path" given twice`},
		{"a file without a path", `{"wasm_base64":"AGFzbQEAAAA=","files":[{"path":"a"},{"content_base64":"YQ=="}]}`, "files[1] has no path"},
		{"a file's content not base64", `{"wasm_base64":"AGFzbQEAAAA=","files":[{"path":"a","content_base64":"!"}]}`, "files[0].content_base64 is not valid base64"},
		{"files not an array", `{"wasm_base64":"AGFzbQEAAAA=","files":{}}`, "files must be a JSON array"},
		{"files neither an array nor null", `{"wasm_base64":"AGFzbQEAAAA=","files":nil}`, "files must be a JSON array"},
		{"stdin neither a string nor null", `{"wasm_base64":"AGFzbQEAAAA=","stdin":nope}`, `field "stdin" must be string`},
		{"data after the object", `{"wasm_base64":"AGFzbQEAAAA="} {}`, "data after the object"},
		{"not an object", `["wasm_base64"]`, "want one JSON object"},
		{"args of numbers", `{"wasm_base64":"AGFzbQEAAAA=","args":[1]}`, "args must be a JSON array of strings"},
		{"env of numbers", `{"wasm_base64":"AGFzbQEAAAA=","env":{"A":1}}`, "env must be a JSON object of strings"},
		{"async not a bool", `{"wasm_base64":"AGFzbQEAAAA=","async":"yes"}`, `field "async" must be bool`},
		{"cut short", `{"wasm_base64":"AGFzbQEAAAA=","args":["a"`, "ends too soon"},
		{"base64 cut short", `{"wasm_base64":"AGFzbQEA`, "ends too soon"},
		{"not base64", `{"wasm_base64":"AGFz!QEAAAA="}`, "wasm_base64 is not valid base64"},
		{"base64 after its padding", `{"wasm_base64":"AGFzbQEAAAA=AAAA"}`, "wasm_base64 is not valid base64"},
		{"another escape in base64", `{"wasm_base64":"AGFzbQEAAAA\u003d"}`, `escape other than \/`},
		{"base64 not a string", `{"wasm_base64":12}`, `field "wasm_base64" must be string`},
		{"no colon", `{"wasm_base64" "AGFzbQEAAAA="}`, "want : after a field name"},
		{"no comma", `{"wasm_base64":"AGFzbQEAAAA=" "name":"x"}`, "want , or } after a field"},
		{"empty", ``, "empty JSON body"},
	}
	// However the body's bytes arrive: at once, one byte a read, or with
	// the end of the stream in the read of its last bytes.
	readers := map[string]func(string) io.Reader{
		"":          func(s string) io.Reader { return strings.NewReader(s) },
		"/bytewise": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"/data+EOF": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for how, reader := range readers {
			t.Run(tt.name+how, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, nil)
				res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: reader(tt.body), contentType: "application/json"})
				if res.status != 400 || res.errorCode(t) != wasmwiz.EINVALID || !strings.Contains(res.errorMessage(t), tt.contains) {
					t.Fatalf("status %d: %s\nwant 400 EINVALID with %q", res.status, res.body, tt.contains)
				}
			})
		}
	}
}

// countingReader is a body that counts what the server read of it.
type countingReader struct {
	mu sync.Mutex
	r  io.Reader
	n  int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) read() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// admissions records what the limiter admitted and how each was released.
type admissions struct {
	mu       sync.Mutex
	full     bool
	admitted int
	released []bool // refund flag of each release
}

func (a *admissions) limiterFn() func(ctx context.Context, ad wasmwiz.Admission) (wasmwiz.Admitted, error) {
	return func(ctx context.Context, ad wasmwiz.Admission) (wasmwiz.Admitted, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.full {
			return wasmwiz.Admitted{Concurrency: true}, nil
		}
		a.admitted++
		var once sync.Once
		return wasmwiz.Admitted{Decision: wasmwiz.RateDecision{Allowed: true, Limit: 10, Remaining: 9},
			Release: func(refund bool) {
				once.Do(func() {
					a.mu.Lock()
					a.released = append(a.released, refund)
					a.mu.Unlock()
				})
			}}, nil
	}
}

func (a *admissions) state() (int, []bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.admitted, append([]bool(nil), a.released...)
}

// largeJSON is a valid execute body of more than 1MiB: stdin_base64 of
// stdin bytes, and extra fields (JSON text) before the object's end.
func largeJSON(stdin int, extra string) string {
	return `{"wasm_base64":"AGFzbQEAAAA=","stdin_base64":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'s'}, stdin)) + `"` + extra + `}`
}

// TestExecuteAdmitsBeforeALargeBody: a body over 1MiB, or of unknown
// length, is read only once its caller was admitted for the run: a caller
// at its concurrency limit is refused before a byte of it is read; the run
// uses the admission taken (one admission per request), and a body that is
// then refused gives the slot and the quota back.
func TestExecuteAdmitsBeforeALargeBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		streamed   bool // no Content-Length
		full       bool
		status     int
		wantRead   bool   // the server read the body
		wantAdmits int    // admissions taken
		wantRefund []bool // how they were released
	}{
		{name: "declared, at the concurrency limit", body: largeJSON(900<<10, ""), full: true, status: 429},
		{name: "streamed, at the concurrency limit", body: largeJSON(900<<10, ""), streamed: true, full: true, status: 429},
		{name: "small streamed body, at the concurrency limit", body: `{"wasm_base64":"AGFzbQEAAAA="}`, streamed: true, full: true, status: 429},
		{name: "admitted and run", body: largeJSON(900<<10, ""), status: 200, wantRead: true, wantAdmits: 1, wantRefund: []bool{false}},
		{name: "streamed, admitted and run", body: largeJSON(900<<10, ""), streamed: true, status: 200, wantRead: true, wantAdmits: 1, wantRefund: []bool{false}},
		{name: "admitted, then refused while read", body: largeJSON(900<<10, `,"args":`+jsonText(t, manyArgs(wasmwiz.MaxArgs+1))),
			status: 413, wantRead: true, wantAdmits: 1, wantRefund: []bool{true}},
		{name: "admitted, then refused by the executor", body: largeJSON(900<<10, `,"function":"","params":[1]`),
			status: 400, wantRead: true, wantAdmits: 1, wantRefund: []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			adm := &admissions{full: tt.full}
			f := newFixture(t, func(o *wwhttp.Options) {
				o.Limiter.(*mock.RateLimiter).AdmitFn = adm.limiterFn()
			})
			body := &countingReader{r: strings.NewReader(tt.body)}
			length := int64(len(tt.body))
			if tt.streamed {
				length = -1
			}
			res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: body, length: length, contentType: "application/json"})
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %.300s", res.status, tt.status, res.body)
			}
			if tt.status == 429 && res.header.Get("Retry-After") == "" {
				t.Error("a 429 without Retry-After")
			}
			if read := body.read(); (read > 0) != tt.wantRead {
				t.Errorf("the server read %d bytes of the body; want read: %v", read, tt.wantRead)
			}
			admitted, released := adm.state()
			if admitted != tt.wantAdmits || fmt.Sprint(released) != fmt.Sprint(tt.wantRefund) {
				t.Errorf("%d admissions released with refund %v; want %d, %v", admitted, released, tt.wantAdmits, tt.wantRefund)
			}
		})
	}
}

// TestExecuteBodyMemoryBound: the large bodies the server holds at once
// are bounded by Options.MaxBodyMemory: past it a request waits, then
// answers 503 with Retry-After, before its body is read; small requests
// never wait; room is made when a request ends.
func TestExecuteBodyMemoryBound(t *testing.T) {
	t.Parallel()
	entered, unblock := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f := newFixture(t, func(o *wwhttp.Options) {
		o.MaxBodyMemory = 2 << 20
		o.BodyMemoryWait = time.Millisecond
	})
	run := f.engine.RunFn
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		if len(req.Stdin) > 1<<20/2 {
			once.Do(func() { close(entered) })
			<-unblock
		}
		return run(ctx, req)
	}
	big := largeJSON(900<<10, "") // 1.2MiB: one fits in 2MiB, two do not
	post := func(key, body string) (*response, *countingReader) {
		cr := &countingReader{r: strings.NewReader(body)}
		return f.do(request{method: "POST", path: "/api/v1/execute", key: key, body: cr, length: int64(len(body)), contentType: "application/json"}), cr
	}
	first := make(chan *response, 1)
	go func() {
		res, _ := post(userKey, big)
		first <- res
	}()
	testenv.Wait(t, "the first large run to start", func() { <-entered })

	res, cr := post(otherKey, big)
	if res.status != 503 || res.errorCode(t) != wasmwiz.EUNAVAILABLE || res.header.Get("Retry-After") == "" {
		t.Fatalf("a second large body past the bound: %d %s (Retry-After %q)", res.status, res.body, res.header.Get("Retry-After"))
	}
	if cr.read() != 0 {
		t.Errorf("the refused body was read (%d bytes)", cr.read())
	}
	metrics := string(f.do(request{method: "GET", path: "/metrics"}).body)
	for _, want := range []string{"wasmwiz_body_memory_rejections_total 1\n", "wasmwiz_body_memory_limit_bytes 2.097152e+06\n",
		fmt.Sprintf("wasmwiz_body_memory_bytes %g\n", float64(len(big)))} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if res, _ := post(otherKey, `{"wasm_base64":"AGFzbQEAAAA=","stdin":"small"}`); res.status != 200 {
		t.Fatalf("a small body while the bound is reached: %d %s", res.status, res.body)
	}
	close(unblock)
	var r1 *response
	testenv.Wait(t, "the first run", func() { r1 = <-first })
	if r1.status != 200 {
		t.Fatalf("the first large body: %d %s", r1.status, r1.body)
	}
	if res, _ := post(otherKey, big); res.status != 200 {
		t.Fatalf("a large body once the first ended: %d %s", res.status, res.body)
	}
}

// TestExecuteJSONBase64: the base64 fields, decoded as they stream, take
// what encoding/json took: the escaped slash, null and "" for absent.
func TestExecuteJSONBase64(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		stdin      string
	}{
		{"escaped slash", `{"wasm_base64":"AGFzbQEAAAA=","stdin_base64":"\/wA="}`, "\xff\x00"},
		{"plain", ` { "wasm_base64" : "AGFzbQEAAAA=" , "stdin_base64" : "/wA=" } `, "\xff\x00"},
		{"null stdin", `{"wasm_base64":"AGFzbQEAAAA=","stdin_base64":null}`, ""},
		{"null files", `{"wasm_base64":"AGFzbQEAAAA=","files":null}`, ""},
		{"empty stdin", `{"wasm_base64":"AGFzbQEAAAA=","stdin_base64":""}`, ""},
		{"empty stdin_base64 beside stdin", `{"wasm_base64":"AGFzbQEAAAA=","stdin_base64":"","stdin":"text"}`, "text"},
		{"unpadded length", `{"wasm_base64":"AGFzbQEAAAA=","stdin_base64":"YWJj"}`, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: strings.NewReader(tt.body), contentType: "application/json"})
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			if got := f.lastRun(); !bytes.Equal(got.Wasm, wasmHeader) || string(got.Stdin) != tt.stdin {
				t.Errorf("engine got wasm %q stdin %q, want stdin %q", got.Wasm, got.Stdin, tt.stdin)
			}
		})
	}
}

// TestUploadAdmitsBeforeALargeBody: a module upload over 1MiB is read only
// once its caller was admitted for the compile, which then runs on that
// admission.
func TestUploadAdmitsBeforeALargeBody(t *testing.T) {
	t.Parallel()
	module := append(bytes.Clone(wasmHeader), make([]byte, 2<<20)...)
	for _, full := range []bool{true, false} {
		t.Run(fmt.Sprint("slots full: ", full), func(t *testing.T) {
			t.Parallel()
			adm := &admissions{full: full}
			f := newFixture(t, func(o *wwhttp.Options) {
				o.Limiter.(*mock.RateLimiter).AdmitFn = adm.limiterFn()
			})
			f.modules.CreateModuleFn = func(ctx context.Context, m *wasmwiz.Module) error {
				m.ID = wasmwiz.NewModuleID()
				return nil
			}
			body := &countingReader{r: bytes.NewReader(module)}
			res := f.do(request{method: "POST", path: "/api/v1/modules?name=big.wasm", key: userKey, body: body, length: int64(len(module)), contentType: "application/wasm"})
			admitted, released := adm.state()
			if full {
				if res.status != 429 || body.read() != 0 {
					t.Fatalf("status %d after reading %d bytes, want 429 before reading: %s", res.status, body.read(), res.body)
				}
				return
			}
			if res.status != 201 || body.read() != int64(len(module)) {
				t.Fatalf("status %d after reading %d bytes: %s", res.status, body.read(), res.body)
			}
			if admitted != 1 || fmt.Sprint(released) != "[false]" {
				t.Errorf("%d admissions released with refund %v, want one, kept", admitted, released)
			}
		})
	}
}

// countingFixture is a fixture whose limiter counts admissions (adm) and
// whose engine counts the modules it compiles (inspected).
func countingFixture(t *testing.T) (f *fixture, adm *admissions, inspected *atomic.Int64) {
	t.Helper()
	adm, inspected = &admissions{}, &atomic.Int64{}
	f = newFixture(t, func(o *wwhttp.Options) {
		o.Limiter.(*mock.RateLimiter).AdmitFn = adm.limiterFn()
	})
	inspect := f.engine.InspectFn
	f.engine.InspectFn = func(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error) {
		inspected.Add(1)
		return inspect(ctx, wasm, limits)
	}
	return f, adm, inspected
}

// TestUploadTextRefusedBeforeTheCompile: an upload whose name or
// description the store would refuse is refused 400 EINVALID before it is
// admitted (a run of the caller's quota) or compiled.
func TestUploadTextRefusedBeforeTheCompile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, query, contains string }{
		{"name over the store's bound", "name=" + strings.Repeat("a", wasmwiz.MaxModuleNameBytes+1), "module name is longer than"},
		{"NUL in the description", "name=m.wasm&description=a%00b", "module description"},
		{"control character in the name", "name=a%01b.wasm", "module name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, adm, inspected := countingFixture(t)
			res := f.do(request{method: "POST", path: "/api/v1/modules?" + tt.query, key: userKey,
				body: bytes.NewReader(wasmHeader), length: int64(len(wasmHeader)), contentType: "application/wasm"})
			admitted, _ := adm.state()
			if res.status != 400 || !strings.Contains(string(res.body), "EINVALID") || !strings.Contains(string(res.body), tt.contains) {
				t.Fatalf("status %d: %s; want 400 EINVALID saying %q", res.status, res.body, tt.contains)
			}
			if inspected.Load() != 0 || admitted != 0 {
				t.Errorf("refused after %d compiles and %d admissions, want before either", inspected.Load(), admitted)
			}
		})
	}
}

// TestUploadOverRegistryQuota: an upload that the caller's registry quota
// cannot hold is refused 413 ETOOLARGE naming the quota without being
// compiled (nor admitted), and without reading its body where the body says
// enough: a full count, or the declared length of an application/wasm
// module. A multipart upload is refused once its module was read.
func TestUploadOverRegistryQuota(t *testing.T) {
	t.Parallel()
	free, _ := findTier(wasmwiz.TierFree)
	module := append(bytes.Clone(wasmHeader), make([]byte, 2<<20)...) // 2MiB: over largeBody, so admitted before reading
	raw := func() (io.Reader, string, int64) {
		return bytes.NewReader(module), "application/wasm", int64(len(module))
	}
	form := func() (io.Reader, string, int64) {
		body, ct := testenv.Multipart(t, map[string][]byte{"wasm": module}, nil)
		return body, ct, 0
	}
	tests := []struct {
		name     string
		have     wasmwiz.StoredModules
		body     func() (io.Reader, string, int64)
		unread   bool   // refused before the body is read
		contains string // in the refusal; empty: stored
	}{
		{"count full", wasmwiz.StoredModules{Count: free.MaxStoredModules, Bytes: 1}, raw, true, "(max_stored_modules)"},
		{"count full, multipart", wasmwiz.StoredModules{Count: free.MaxStoredModules, Bytes: 1}, form, true, "(max_stored_modules)"},
		{"declared length over the bytes", wasmwiz.StoredModules{Count: 1, Bytes: free.MaxStoredModuleBytes - wasmwiz.MiB}, raw, true, "(max_stored_module_bytes)"},
		{"module over the bytes, multipart", wasmwiz.StoredModules{Count: 1, Bytes: free.MaxStoredModuleBytes - wasmwiz.MiB}, form, false, "(max_stored_module_bytes)"},
		{"room", wasmwiz.StoredModules{Count: 1, Bytes: free.MaxStoredModuleBytes - 3*wasmwiz.MiB}, raw, false, ""},
		{"room, multipart", wasmwiz.StoredModules{Count: 1, Bytes: free.MaxStoredModuleBytes - 3*wasmwiz.MiB}, form, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, adm, inspected := countingFixture(t)
			f.modules.StoredModulesFn = func(ctx context.Context) (wasmwiz.StoredModules, error) { return tt.have, nil }
			f.modules.CreateModuleFn = func(ctx context.Context, m *wasmwiz.Module) error {
				m.ID = wasmwiz.NewModuleID()
				return nil
			}
			r, ct, length := tt.body()
			body := &countingReader{r: r}
			res := f.do(request{method: "POST", path: "/api/v1/modules?name=big.wasm", key: userKey, body: body, length: length, contentType: ct})
			admitted, _ := adm.state()
			if tt.contains == "" {
				if res.status != 201 || inspected.Load() != 1 {
					t.Fatalf("status %d after %d compiles, want 201 after one: %s", res.status, inspected.Load(), res.body)
				}
				return
			}
			if res.status != 413 || !strings.Contains(string(res.body), "ETOOLARGE") || !strings.Contains(string(res.body), tt.contains) {
				t.Fatalf("status %d: %s; want 413 ETOOLARGE naming %s", res.status, res.body, tt.contains)
			}
			if inspected.Load() != 0 {
				t.Errorf("the refused module was compiled %d times", inspected.Load())
			}
			if tt.unread && (body.read() != 0 || admitted != 0) {
				t.Errorf("refused after reading %d bytes and %d admissions, want before either", body.read(), admitted)
			}
		})
	}
}
