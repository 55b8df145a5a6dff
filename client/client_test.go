package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// The end-to-end tests in cmd/wasmwiz drive every method against the real
// server; these check the client's own mapping of answers a real server
// rarely gives (a proxy's 502, an empty body) and what it sends.

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		header      map[string]string
		body        string
		wantCode    string
		wantMessage string
		wantRetry   time.Duration
	}{
		{"error body", 404, nil, `{"error":{"code":"ENOTFOUND","message":"module \"x\" not found"}}`, api.ENOTFOUND, `module "x" not found`, 0},
		{"error body code wins over status", 400, nil, `{"error":{"code":"ETOOLARGE","message":"too big"}}`, api.ETOOLARGE, "too big", 0},
		{"429 with Retry-After", 429, map[string]string{"Retry-After": "7", "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"},
			`{"error":{"code":"ERATELIMIT","message":"rate limit exceeded"}}`, api.ERATELIMIT, "rate limit exceeded", 7 * time.Second},
		{"proxy 502 with html", 502, nil, `<html>bad gateway</html>`, api.EUNAVAILABLE, "Bad Gateway", 0},
		{"empty 401", 401, nil, ``, api.EUNAUTHORIZED, "Unauthorized", 0},
		{"legacy body", 413, nil, `{"output":null,"error":"module is over the 10MiB limit"}`, api.ETOOLARGE, "module is over the 10MiB limit", 0},
		{"unknown status", 418, nil, `teapot`, api.EINTERNAL, "I'm a teapot", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("X-Request-Id", "req-1")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, err := client.New(srv.URL, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Usage(context.Background())
			if client.ErrorCode(err) != tt.wantCode || client.ErrorMessage(err) != tt.wantMessage {
				t.Fatalf("error %v: code %q message %q, want %q %q", err, client.ErrorCode(err), client.ErrorMessage(err), tt.wantCode, tt.wantMessage)
			}
			var ce *client.Error
			if !errors.As(err, &ce) || ce.StatusCode != tt.status || ce.RequestID != "req-1" || client.StatusCode(err) != tt.status ||
				string(ce.Body) != tt.body {
				t.Fatalf("Error %+v", ce)
			}
			d, ok := client.RetryAfter(err)
			if tt.wantRetry != 0 && (!ok || d != tt.wantRetry) {
				t.Fatalf("RetryAfter %v %v, want %v", d, ok, tt.wantRetry)
			}
			if tt.wantRetry == 0 && ok {
				t.Fatalf("RetryAfter %v without the header", d)
			}
		})
	}
}

func TestNoServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := client.New(url, "ww_x")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Health(context.Background())
	if client.ErrorCode(err) != api.EUNAVAILABLE || client.StatusCode(err) != 0 {
		t.Fatalf("no server: %v", err)
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://host", "http://", "::"} {
		if _, err := client.New(u, ""); client.ErrorCode(err) != api.EINVALID {
			t.Errorf("New(%q): %v, want EINVALID", u, err)
		}
	}
	c, err := client.New("http://host:1/prefix/", "")
	if err != nil || c.BaseURL() != "http://host:1/prefix" {
		t.Fatalf("New with a path: %v %v", c, err)
	}
}

// TestListQueries checks the query each list method sends: the page and
// the filters that are set, nothing for those left empty.
func TestListQueries(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Path + "?" + r.URL.RawQuery
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, "ww_x")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	since := time.Date(2026, 11, 1, 0, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"runs, filtered", func() error {
			_, _, err := c.ListRuns(ctx, client.RunQuery{Status: api.StatusTrap, Since: since, Page: client.Page{Limit: 5, Offset: 10}})
			return err
		}, "/api/v1/runs?limit=5&offset=10&since=2026-10-31T23%3A00%3A00Z&status=trap"},
		{"runs, unfiltered", func() error { _, _, err := c.ListRuns(ctx, client.RunQuery{}); return err }, "/api/v1/runs?"},
		{"modules by name", func() error { _, _, err := c.ListModules(ctx, "m", client.Page{}); return err }, "/api/v1/modules?name=m"},
		{"modules", func() error { _, _, err := c.ListModules(ctx, "", client.Page{Limit: 2}); return err }, "/api/v1/modules?limit=2"},
		{"users by email", func() error { _, _, err := c.AdminListUsers(ctx, "a@b.c", client.Page{}); return err }, "/api/v1/admin/users?email=a%40b.c"},
		{"users", func() error { _, _, err := c.AdminListUsers(ctx, "", client.Page{}); return err }, "/api/v1/admin/users?"},
	}
	for _, tt := range tests {
		if err := tt.call(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if q := <-got; q != tt.want {
			t.Errorf("%s: sent %s, want %s", tt.name, q, tt.want)
		}
	}
}

// TestListTotals: a list method returns the answer's total and
// total_capped as an api.ListTotal, so that a total the server stopped
// counting at api.MaxListTotal is not taken for the count of everything.
func TestListTotals(t *testing.T) {
	t.Parallel()
	answer := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, <-answer)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, "ww_x")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lists := map[string]func() (api.ListTotal, error){
		"ListRuns":       func() (api.ListTotal, error) { _, n, err := c.ListRuns(ctx, client.RunQuery{}); return n, err },
		"ListModules":    func() (api.ListTotal, error) { _, n, err := c.ListModules(ctx, "", client.Page{}); return n, err },
		"ListKeys":       func() (api.ListTotal, error) { _, n, err := c.ListKeys(ctx, false, client.Page{}); return n, err },
		"AdminListUsers": func() (api.ListTotal, error) { _, n, err := c.AdminListUsers(ctx, "", client.Page{}); return n, err },
		"AdminListKeys": func() (api.ListTotal, error) {
			_, n, err := c.AdminListKeys(ctx, 0, false, client.Page{})
			return n, err
		},
	}
	for name, list := range lists {
		for body, want := range map[string]api.ListTotal{
			`{"total":3,"total_capped":false}`:     {Count: 3},
			`{"total":10000,"total_capped":true}`:  {Count: api.MaxListTotal, Capped: true},
			`{"total":10000,"total_capped":false}`: {Count: api.MaxListTotal},
		} {
			answer <- body
			got, err := list()
			if err != nil || got != want {
				t.Errorf("%s answered %s: total %+v, %v; want %+v", name, body, got, err, want)
			}
		}
	}
}

// TestExecuteBodies checks what each body kind sends: the fields a server
// reads, in the shape docs/API.md gives, and the credentials.
func TestExecuteBodies(t *testing.T) {
	t.Parallel()
	type seen struct {
		path, ctype, auth string
		query             map[string][]string
		fields            map[string]string
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{path: r.URL.Path, auth: r.Header.Get("Authorization"), query: r.URL.Query(), fields: map[string]string{}}
		mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		s.ctype = mt
		switch mt {
		case "application/json":
			var m map[string]any
			_ = json.NewDecoder(r.Body).Decode(&m)
			for k, v := range m {
				b, _ := json.Marshal(v)
				s.fields[k] = string(b)
			}
		case "multipart/form-data":
			mr := multipart.NewReader(r.Body, params["boundary"])
			for {
				p, err := mr.NextPart()
				if err != nil {
					break
				}
				b, _ := io.ReadAll(p)
				s.fields[p.FormName()] = string(b)
			}
		default:
			b, _ := io.ReadAll(r.Body)
			s.fields["body"] = string(b)
		}
		got <- s
		w.Header().Set("X-RateLimit-Limit", "100")
		w.Header().Set("X-RateLimit-Remaining", "99")
		w.Header().Set("X-RateLimit-Reset", "60")
		_, _ = io.WriteString(w, `{"id":"run_1","status":"exit","exit_code":3,"stdout":"aGk=","stdout_encoding":"base64","stderr":"","stderr_encoding":"utf-8","results":[{"type":"i32","value":-1}],"duration_ms":1.5,"module":{"sha256":"ab","size_bytes":8,"wasi":true,"entry":"_start"}}`)
	}))
	defer srv.Close()
	c, _ := client.New(srv.URL, "ww_key")
	req := client.ExecuteRequest{Wasm: []byte("\x00asm"), Stdin: []byte("in"), Args: []string{"a", "b c"}, Env: map[string]string{"K": "V"},
		Function: "f", Params: []string{"1", "nan"}, Timeout: 500 * time.Millisecond, Memory: 16 << 20}
	tests := []struct {
		name  string
		kind  client.Body
		check func(t *testing.T, s seen)
	}{
		{"json", client.BodyJSON, func(t *testing.T, s seen) {
			want := map[string]string{"wasm_base64": `"AGFzbQ=="`, "stdin_base64": `"aW4="`, "args": `["a","b c"]`, "env": `{"K":"V"}`,
				"function": `"f"`, "params": `["1","nan"]`, "timeout": `"500ms"`, "memory": `"16777216"`}
			for k, v := range want {
				if s.fields[k] != v {
					t.Errorf("%s = %s, want %s", k, s.fields[k], v)
				}
			}
		}},
		{"multipart", client.BodyMultipart, func(t *testing.T, s seen) {
			want := map[string]string{"wasm": "\x00asm", "stdin": "in", "args": `["a","b c"]`, "env": `{"K":"V"}`,
				"function": "f", "params": `["1","nan"]`, "timeout": "500ms", "memory": "16777216"}
			for k, v := range want {
				if s.fields[k] != v {
					t.Errorf("%s = %q, want %q", k, s.fields[k], v)
				}
			}
		}},
		{"raw", client.BodyRaw, func(t *testing.T, s seen) {
			if s.ctype != "application/wasm" || s.fields["body"] != "\x00asm" {
				t.Errorf("raw body %s %q", s.ctype, s.fields["body"])
			}
			want := map[string]string{"stdin_base64": "aW4=", "env": "K=V", "function": "f", "params": `["1","nan"]`, "timeout": "500ms", "memory": "16777216"}
			for k, v := range want {
				if strings.Join(s.query[k], "|") != v {
					t.Errorf("query %s = %v, want %s", k, s.query[k], v)
				}
			}
			if strings.Join(s.query["arg"], "|") != "a|b c" {
				t.Errorf("args %v", s.query["arg"])
			}
		}},
	}
	for _, tt := range tests {
		r := req
		r.Body = tt.kind
		ex, err := c.ExecuteDetail(context.Background(), &r)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		s := testenv.Recv(t, got, "the request the server saw")
		if s.path != "/api/v1/execute" || s.auth != "Bearer ww_key" {
			t.Errorf("%s: path %s auth %q", tt.name, s.path, s.auth)
		}
		t.Run(tt.name, func(t *testing.T) { tt.check(t, s) })
		res := ex.Result
		if res.ID != "run_1" || res.Status != api.StatusExit || res.ExitCode != 3 || string(res.Stdout) != "hi" ||
			len(res.Results) != 1 || res.Results[0].String() != "-1" || res.Duration != 1500*time.Microsecond {
			t.Errorf("%s: result %+v", tt.name, res)
		}
		if ex.RateLimit != (client.RateLimit{Present: true, Limit: 100, Remaining: 99, Reset: time.Minute}) {
			t.Errorf("%s: rate limit %+v", tt.name, ex.RateLimit)
		}
	}

	// A stored module: raw sends stdin as the body, to the module's path.
	if _, err := c.ExecuteModule(context.Background(), "mod_1", &client.ExecuteRequest{Stdin: []byte("data"), Body: client.BodyRaw}); err != nil {
		t.Fatal(err)
	}
	if s := testenv.Recv(t, got, "the request the server saw"); s.path != "/api/v1/modules/mod_1/execute" || s.ctype != "application/octet-stream" || s.fields["body"] != "data" {
		t.Fatalf("stored raw: %+v", s)
	}
	if _, err := c.ExecuteModule(context.Background(), "mod_1", &client.ExecuteRequest{Wasm: []byte("x")}); client.ErrorCode(err) != api.EINVALID {
		t.Fatalf("ExecuteModule with wasm: %v", err)
	}
}

// TestFailureReturnsNoValue: a method that fails returns no value with its
// error (nil, zero counts), whether the server refused or answered JSON of
// another shape (which json.Unmarshal would have decoded in part).
func TestFailureReturnsNoValue(t *testing.T) {
	t.Parallel()
	for _, answer := range []struct {
		status int
		body   string
	}{
		{500, `{"error":{"code":"EINTERNAL","message":"broken"}}`},
		{200, `{"name":"n","users":[{"id":1}],"modules":[{"id":"m"}],"runs":[{"id":"r"}],"keys":[{"id":1}],"tier":{"name":"free"},` +
			`"id":{},"total":"many","runs_today":"x","stdout":7,"user":7,"key":7}`},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(answer.status)
			_, _ = io.WriteString(w, answer.body)
		}))
		c, err := client.New(srv.URL, "ww_x")
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		one := map[string]func() (any, error){
			"AdminCreateUser": func() (any, error) { return c.AdminCreateUser(ctx, api.UserRequest{Email: "a@b.c"}) },
			"AdminGetUser":    func() (any, error) { return c.AdminGetUser(ctx, 1) },
			"AdminUpdateUser": func() (any, error) { return c.AdminUpdateUser(ctx, 1, api.UserUpdate{}) },
			"AdminCreateKey":  func() (any, error) { return c.AdminCreateKey(ctx, 1, "k", nil) },
			"AdminStats":      func() (any, error) { return c.AdminStats(ctx) },
			"CreateModule":    func() (any, error) { return c.CreateModule(ctx, client.ModuleUpload{Wasm: []byte("\x00asm")}) },
			"GetModule":       func() (any, error) { return c.GetModule(ctx, "m_1") },
			"UpdateModule":    func() (any, error) { return c.UpdateModule(ctx, "m_1", api.ModuleUpdate{}) },
			"GetRun":          func() (any, error) { return c.GetRun(ctx, "r_1") },
			"Usage":           func() (any, error) { return c.Usage(ctx) },
			"Me":              func() (any, error) { return c.Me(ctx) },
			"CreateKey":       func() (any, error) { return c.CreateKey(ctx, "k", nil) },
		}
		for name, call := range one {
			v, err := call()
			if err == nil {
				t.Errorf("%d %s: no error", answer.status, name)
			} else if !reflect.ValueOf(v).IsNil() {
				t.Errorf("%d %s: %+v with the error %v", answer.status, name, v, err)
			}
		}
		lists := map[string]func() (any, api.ListTotal, error){
			"AdminListUsers": func() (any, api.ListTotal, error) { return c.AdminListUsers(ctx, "", client.Page{}) },
			"AdminListKeys":  func() (any, api.ListTotal, error) { return c.AdminListKeys(ctx, 1, false, client.Page{}) },
			"ListModules":    func() (any, api.ListTotal, error) { return c.ListModules(ctx, "", client.Page{}) },
			"ListRuns":       func() (any, api.ListTotal, error) { return c.ListRuns(ctx, client.RunQuery{}) },
			"ListKeys":       func() (any, api.ListTotal, error) { return c.ListKeys(ctx, false, client.Page{}) },
		}
		for name, call := range lists {
			v, total, err := call()
			if err == nil {
				t.Errorf("%d %s: no error", answer.status, name)
			} else if !reflect.ValueOf(v).IsNil() || total != (api.ListTotal{}) {
				t.Errorf("%d %s: %v, %+v with the error %v", answer.status, name, v, total, err)
			}
		}
		srv.Close()
	}
}

// TestFollowReadsEvents: ExecuteFollow and FollowRun hand the output events
// to onOutput as they come and return the result event's data; an error
// event is the failure it carries, and a stream that ends before the result
// is EUNAVAILABLE, with no value.
func TestFollowReadsEvents(t *testing.T) {
	t.Parallel()
	event := func(kind string, v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return "event: " + kind + "\ndata: " + string(b) + "\n\n"
	}
	output := event(api.EventStdout, api.OutputEvent{Data: []byte("out")}) +
		event(api.EventState, api.StateEvent{State: api.RunRunning}) +
		event(api.EventStderr, api.OutputEvent{Data: []byte{0xff, 'e'}})
	tests := []struct {
		name, stream string
		wantCode     string // "" for success
		wantOutput   bool   // onOutput gets output's stdout and stderr
	}{
		{"output then result", output + event(api.EventResult, map[string]string{"id": "run_1"}), "", true},
		{"error event", output + event(api.EventError, api.ErrorDetail{Code: api.ETOOLARGE, Message: "too big"}), api.ETOOLARGE, true},
		{"error event without a code", event(api.EventError, map[string]string{"message": "?"}), api.EINTERNAL, false},
		{"ends before the result", output, api.EUNAVAILABLE, true},
		{"unreadable result", output + "event: result\ndata: {\n\n", api.EINTERNAL, true},
		{"unreadable output", "event: stdout\ndata: 7\n\n", api.EINTERNAL, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, tt.stream)
			}))
			defer srv.Close()
			c, err := client.New(srv.URL, "ww_x")
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			follows := map[string]func(onOutput func(bool, []byte)) (id string, isNil bool, err error){
				"ExecuteFollow": func(onOutput func(bool, []byte)) (string, bool, error) {
					res, err := c.ExecuteFollow(ctx, &client.ExecuteRequest{Wasm: []byte("\x00asm")}, onOutput)
					if res == nil {
						return "", true, err
					}
					return res.ID, false, err
				},
				"FollowRun": func(onOutput func(bool, []byte)) (string, bool, error) {
					rec, err := c.FollowRun(ctx, "run_1", onOutput)
					if rec == nil {
						return "", true, err
					}
					return rec.ID, false, err
				},
			}
			for name, follow := range follows {
				var stdout, stderr []byte
				id, isNil, err := follow(func(isStderr bool, p []byte) {
					if isStderr {
						stderr = append(stderr, p...)
					} else {
						stdout = append(stdout, p...)
					}
				})
				if client.ErrorCode(err) != tt.wantCode {
					t.Errorf("%s: error %v, want code %q", name, err, tt.wantCode)
				}
				if tt.wantCode == "" && (isNil || id != "run_1") {
					t.Errorf("%s: id %q (nil %v), want run_1", name, id, isNil)
				}
				if tt.wantCode != "" && !isNil {
					t.Errorf("%s: a value with the error %v", name, err)
				}
				wantStdout, wantStderr := "", ""
				if tt.wantOutput {
					wantStdout, wantStderr = "out", "\xffe"
				}
				if string(stdout) != wantStdout || string(stderr) != wantStderr {
					t.Errorf("%s: stdout %q stderr %q, want %q %q", name, stdout, stderr, wantStdout, wantStderr)
				}
			}
			if _, err := c.FollowRun(ctx, "run_1", nil); client.ErrorCode(err) != tt.wantCode {
				t.Errorf("FollowRun without onOutput: error %v, want code %q", err, tt.wantCode)
			}
		})
	}
}
