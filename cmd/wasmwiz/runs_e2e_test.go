package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// getRun reads a run's record.
func getRun(t testing.TB, base, key, id string) *api.Run {
	t.Helper()
	code, body, _ := testenv.DoJSON(t, "GET", base+"/api/v1/runs/"+id, key, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("GET run %s: %d %s", id, code, body)
	}
	var rec api.Run
	if err := json.Unmarshal(body, &rec); err != nil {
		t.Fatalf("run JSON: %v\n%s", err, body)
	}
	return &rec
}

// awaitRun reads run id until done holds for it (what says what the test
// waits for) and returns it as read then.
func awaitRun(t testing.TB, what, base, key, id string, done func(*api.Run) bool) *api.Run {
	t.Helper()
	var r *api.Run
	poll(t, what, func() bool { r = getRun(t, base, key, id); return done(r) })
	return r
}

// inState is a condition for awaitRun: the run is in state.
func inState(state api.RunState) func(*api.Run) bool {
	return func(r *api.Run) bool { return r.State == state }
}

// printing is a condition for awaitRun: the run is running and has written
// output.
func printing(r *api.Run) bool { return r.State == api.RunRunning && len(r.Stdout) > 0 }

// startAsync admits a background run and returns its id.
func startAsync(t testing.TB, base, key string, body map[string]any) string {
	t.Helper()
	body["async"] = true
	code, b, hdr := testenv.DoJSON(t, "POST", base+"/api/v1/execute", key, body, nil)
	if code != http.StatusAccepted {
		t.Fatalf("async execute: %d %s", code, b)
	}
	var got struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.State != "queued" || !wasmwiz.ValidRunID(got.ID) {
		t.Fatalf("async answer %s", b)
	}
	if loc := hdr.Get("Location"); loc != "/api/v1/runs/"+got.ID {
		t.Fatalf("Location %q", loc)
	}
	return got.ID
}

// sseEvent is one event of a stream.
type sseEvent struct {
	ID, Kind string
	Data     json.RawMessage
}

// follow opens a run's event stream and sends its events on the channel
// until the stream ends (the channel is then closed).
func follow(t *testing.T, ctx context.Context, url, key, lastID string, hdr map[string]string) <-chan sseEvent {
	t.Helper()
	method := "GET"
	var body io.Reader
	if b, ok := hdr["body"]; ok {
		method, body = "POST", strings.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "text/event-stream")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("events: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	ch := make(chan sseEvent, 1024)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Kind != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Kind = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.Data = json.RawMessage(line[6:])
			}
		}
	}()
	return ch
}

// next returns the next event of kind (skipping others, collecting
// output), failing after a generous bound.
func next(t *testing.T, ch <-chan sseEvent, kind string, out *bytes.Buffer) sseEvent {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the event stream ended before a %s event", kind)
			}
			if ev.Kind == "stdout" && out != nil {
				var o struct {
					Offset   int64  `json:"offset"`
					Data     string `json:"data"`
					Encoding string `json:"encoding"`
				}
				if err := json.Unmarshal(ev.Data, &o); err != nil {
					t.Fatalf("stdout event %s", ev.Data)
				}
				if o.Offset != int64(out.Len()) {
					t.Fatalf("stdout event at offset %d after %d bytes: a gap or a repeat", o.Offset, out.Len())
				}
				b, _ := wasmwiz.DecodeOutput(o.Data, o.Encoding)
				out.Write(b)
			}
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", kind)
		}
	}
}

// followToResult follows run id's events on base until its result,
// failing unless the run is running when its first output arrives, and
// returns the output followed and the result's record.
func followToResult(t *testing.T, ctx context.Context, base, key, id string) (string, api.Run) {
	t.Helper()
	events := follow(t, ctx, base+"/api/v1/runs/"+id+"/events", key, "", nil)
	var out bytes.Buffer
	next(t, events, "stdout", &out)
	if rec := getRun(t, base, key, id); rec.State != api.RunRunning {
		t.Fatalf("the first output came, and the run is %s, not running", rec.State)
	}
	res := next(t, events, "result", &out)
	var rec api.Run
	if err := json.Unmarshal(res.Data, &rec); err != nil {
		t.Fatalf("result %s: %v", res.Data, err)
	}
	return out.String(), rec
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestServeRunReadAtOnce: a run's record, with its output, is there from
// the moment the execute answer is sent, while the record still waits in
// the usage writer's batch; on PostgreSQL also on another replica, which
// waits for the first one's batch.
func TestServeRunReadAtOnce(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		env := b.env(t)
		opts := testServeOptions()
		opts.UsageFlushInterval = 3 * time.Second
		a := startServe(t, serveEnv(t, env), opts)
		_, _, key := a.newUser(wasmwiz.TierBasic)
		servers := []*e2eServer{a}
		if b.name != "sqlite" {
			servers = append(servers, startServe(t, serveEnv(t, env), testServeOptions()))
		}
		for _, reader := range servers {
			code, body, _ := testenv.DoJSON(t, "POST", a.url+"/api/v1/execute", key, map[string]any{
				"wasm_base64": b64(testmodule.Read(t, "echo.wasm")), "stdin": "hello record", "args": []string{"-x"},
				"env": map[string]string{"SECRET_NAME": "s3cret"}}, nil)
			if code != http.StatusOK {
				t.Fatalf("execute: %d %s", code, body)
			}
			var res api.Result
			if err := json.Unmarshal(body, &res); err != nil {
				t.Fatal(err)
			}
			rec := getRun(t, reader.url, key, res.ID)
			if rec.State != api.RunDone || rec.Status != api.StatusOK || string(rec.Stdout) != "hello record" ||
				len(rec.Args) != 1 || len(rec.EnvNames) != 1 || rec.EnvNames[0] != "SECRET_NAME" || rec.StdinSHA256 == "" ||
				rec.Limits["timeout_ms"] == 0 || rec.CPUMS <= 0 {
				t.Fatalf("record read at once: %+v", rec)
			}
			if _, raw, _ := testenv.DoJSON(t, "GET", reader.url+"/api/v1/runs/"+res.ID, key, nil, nil); bytes.Contains(raw, []byte("s3cret")) {
				t.Fatal("an env value is in the record")
			}
		}
		// Another tenant's run is 404 at once, and so is one that never was.
		_, _, other := a.newUser(wasmwiz.TierFree)
		code, body, _ := testenv.DoJSON(t, "POST", a.url+"/api/v1/execute", key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "hello.wasm"))}, nil)
		if code != http.StatusOK {
			t.Fatalf("execute: %d %s", code, body)
		}
		var res api.Result
		_ = json.Unmarshal(body, &res)
		if code, _, _ := testenv.DoJSON(t, "GET", a.url+"/api/v1/runs/"+res.ID, other, nil, nil); code != http.StatusNotFound {
			t.Fatalf("another tenant's run: %d", code)
		}
	})
}

// TestServeAsyncRun: a background run is queued, followed live over SSE
// (its first output arrives while it is still running), finished, and read
// back with its output; a reader that resumes with Last-Event-ID gets only
// what it lacks.
func TestServeAsyncRun(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		s := b.serve(t)
		_, _, key := s.newUser(wasmwiz.TierBasic)
		id := startAsync(t, s.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "ticks.wasm")), "timeout": "1500ms"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out, rec := followToResult(t, ctx, s.url, key, id)
		if rec.State != api.RunDone || rec.Status != api.StatusTimeout || !rec.Async || rec.StartedAt == nil {
			t.Fatalf("result %+v", rec)
		}
		if !bytes.HasPrefix(rec.Stdout, []byte("tick\ntick\n")) || out != string(rec.Stdout) {
			t.Fatalf("followed %q, record %q", out, rec.Stdout)
		}
		again := getRun(t, s.url, key, id)
		if string(again.Stdout) != string(rec.Stdout) || again.State != api.RunDone {
			t.Fatalf("read back: %+v", again)
		}
		// Resume after the first tick: the rest only, then the result.
		resumed := follow(t, ctx, s.url+"/api/v1/runs/"+id+"/events", key, "o5.e0", nil)
		rest := bytes.NewBufferString("tick\n")
		next(t, resumed, "result", rest)
		if rest.String() != string(rec.Stdout) {
			t.Fatalf("resumed stream: %q, want %q", rest, rec.Stdout)
		}
	})
}

// TestServeAsyncRunGetsItsArgsWhole: a background run's record keeps its
// args only up to RecordDetailBytes, but the run takes them from its input,
// whole.
func TestServeAsyncRunGetsItsArgsWhole(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		s := b.serve(t)
		_, _, key := s.newUser(wasmwiz.TierBasic)
		args := make([]string, 100) // 20 KB
		for i := range args {
			args[i] = fmt.Sprintf("%03d", i) + strings.Repeat("a", 197)
		}
		id := startAsync(t, s.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "args_env.wasm")), "args": args})
		rec := awaitRun(t, "the run's end", s.url, key, id, func(r *api.Run) bool { return r.State.Final() })
		if rec.State != api.RunDone || rec.Status != api.StatusOK {
			t.Fatalf("result %+v", rec)
		}
		for i, a := range args {
			if !bytes.Contains(rec.Stdout, fmt.Appendf(nil, "argv[%d]=%s\n", i+1, a)) {
				t.Fatalf("the guest did not get arg %d: %.300q", i+1, rec.Stdout)
			}
		}
		if !rec.DetailTruncated || len(rec.Args) >= len(args) || len(rec.Args) == 0 {
			t.Fatalf("the record keeps %d of %d args (detail_truncated %v), want the leading ones within 8 KiB", len(rec.Args), len(args), rec.DetailTruncated)
		}
	})
}

// TestServeExecuteEventStream: a synchronous execute with Accept:
// text/event-stream streams the same events, ending with the result.
func TestServeExecuteEventStream(t *testing.T) {
	t.Parallel()
	s := backends[0].serve(t)
	_, _, key := s.newUser(wasmwiz.TierBasic)
	body, _ := json.Marshal(map[string]any{"wasm_base64": b64(testmodule.Read(t, "ticks.wasm")), "timeout": "1s"})
	events := follow(t, context.Background(), s.url+"/api/v1/execute", key, "", map[string]string{"body": string(body)})
	var out bytes.Buffer
	next(t, events, "stdout", &out)
	res := next(t, events, "result", &out)
	var r api.Result
	if err := json.Unmarshal(res.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != api.StatusTimeout || string(r.Stdout) != out.String() || !wasmwiz.ValidRunID(r.ID) {
		t.Fatalf("result %s after %q", res.Data, out.String())
	}
	// Refused before the guest runs: a plain error answer.
	code, b, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, map[string]any{"wasm_base64": b64([]byte("nope"))},
		map[string]string{"Accept": "text/event-stream"})
	if code != http.StatusBadRequest {
		t.Fatalf("a bad module with Accept: text/event-stream: %d %s", code, b)
	}
}

// TestServeAsyncCancel: with one background worker, a second run waits
// queued; cancelling it ends it at once, never started; cancelling the
// running one kills its guest and keeps the output it wrote.
func TestServeAsyncCancel(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		s := b.serveWith(t, map[string]string{"WASMWIZ_ASYNC_WORKERS": "1"}, testServeOptions())
		_, _, key := s.newUser(wasmwiz.TierBasic)
		ticks := b64(testmodule.Read(t, "ticks.wasm"))
		first := startAsync(t, s.url, key, map[string]any{"wasm_base64": ticks})
		awaitRun(t, "the first run to print", s.url, key, first, printing)
		second := startAsync(t, s.url, key, map[string]any{"wasm_base64": ticks})
		code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/runs/"+second+"/cancel", key, nil, nil)
		if code != http.StatusOK {
			t.Fatalf("cancel queued: %d %s", code, body)
		}
		if r := getRun(t, s.url, key, second); r.State != api.RunCancelled || r.StartedAt != nil {
			t.Fatalf("cancelled queued run: %+v", r)
		}
		code, body, _ = testenv.DoJSON(t, "POST", s.url+"/api/v1/runs/"+first+"/cancel", key, nil, nil)
		if code != http.StatusOK {
			t.Fatalf("cancel running: %d %s", code, body)
		}
		r := awaitRun(t, "the running run to stop", s.url, key, first, inState(api.RunCancelled))
		if !bytes.HasPrefix(r.Stdout, []byte("tick\n")) || r.FinishedAt == nil || r.Message == "" {
			t.Fatalf("cancelled running run: %+v", r)
		}
		if code, _, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/runs/"+first+"/cancel", key, nil, nil); code != http.StatusConflict {
			t.Fatalf("cancel of a cancelled run: %d, want 409", code)
		}
		// The cancelled second run never ran, later either.
		third := startAsync(t, s.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "hello.wasm"))})
		awaitRun(t, "the next run to finish", s.url, key, third, inState(api.RunDone))
		if r := getRun(t, s.url, key, second); r.StartedAt != nil || r.State != api.RunCancelled {
			t.Fatalf("a cancelled run started: %+v", r)
		}
	})
}

// TestServeAsyncAdmission: background runs need a key, count against the
// tier's max_concurrent while queued or running (checked before the
// database is read: a caller at its bound gets its 429 whatever else it got
// wrong there), and spend a quota event at admission, none when refused.
func TestServeAsyncAdmission(t *testing.T) {
	t.Parallel()
	s := backends[0].serveWith(t, map[string]string{"WASMWIZ_ASYNC_WORKERS": "0"}, testServeOptions()) // nothing runs: they stay queued
	_, _, key := s.newTierUser("two", func(t *wasmwiz.Tier) { t.MaxConcurrent = 2; t.RunsPerMinute = 3 })
	hello := b64(testmodule.Read(t, "hello.wasm"))
	code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, map[string]any{"wasm_base64": hello, "async": true,
		"callback_url": "https://example.com/hook"}, nil)
	if code != http.StatusBadRequest || !bytes.Contains(body, []byte("webhook secret")) {
		t.Fatalf("a callback without a secret: %d %s", code, body)
	}
	startAsync(t, s.url, key, map[string]any{"wasm_base64": hello})
	// Prefer: respond-async works as well as "async": true.
	code, body, hdr := testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, map[string]any{"wasm_base64": hello},
		map[string]string{"Prefer": "respond-async"})
	if code != http.StatusAccepted {
		t.Fatalf("Prefer: respond-async: %d %s", code, body)
	}
	if left := hdr.Get("X-RateLimit-Remaining"); left != "1" {
		t.Fatalf("after two runs and a refusal: %s runs left of 3, want 1", left)
	}
	code, body, _ = testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, map[string]any{"wasm_base64": hello, "async": true}, nil)
	if code != http.StatusTooManyRequests || !bytes.Contains(body, []byte("queued or running")) {
		t.Fatalf("a third run of two allowed: %d %s", code, body)
	}
	code, body, _ = testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, map[string]any{"wasm_base64": hello, "async": true,
		"callback_url": "https://example.com/hook"}, nil)
	if code != http.StatusTooManyRequests || !bytes.Contains(body, []byte("queued or running")) {
		t.Fatalf("a callback without a secret at the bound: %d %s", code, body)
	}
	code, body, _ = testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, map[string]any{"wasm_base64": hello, "callback_url": "https://example.com/hook"}, nil)
	if code != http.StatusBadRequest {
		t.Fatalf("a callback on a synchronous run: %d %s", code, body)
	}
}

// TestServeAsyncRunFiles: a background run takes files as a synchronous
// one does: kept with its queued input, in the guest's directory when it
// runs (under the mount asked for), the tier's max_files_in_bytes checked at
// admission; the files its outputs match are kept with its record, their
// content within max_stored_output_bytes, the rest listed.
func TestServeAsyncRunFiles(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		s := b.serve(t)
		_, _, key := s.newTierUser("files", func(t *wasmwiz.Tier) { t.MaxFilesInBytes, t.MaxStoredOutputBytes = 64, wasmwiz.KiB })
		probe := b64(testmodule.Read(t, "fsprobe.wasm"))
		id := startAsync(t, s.url, key, map[string]any{"wasm_base64": probe, "mount": "/work", "outputs": []string{"out/"},
			"files": []map[string]string{{"path": "data/in.txt", "content_base64": b64([]byte("from the queue"))}},
			"args": []string{"cat", "data/in.txt", "cat", "/work/data/in.txt",
				"mkdir", "out", "write", "out/r.txt", "result", "fill", "out/s.bin", "2048"}})
		rec := awaitRun(t, "the background run with files to end", s.url, key, id, inState(api.RunDone))
		want := "cat data/in.txt: ok from the queue\ncat /work/data/in.txt: ok from the queue\n"
		if rec.Status != api.StatusOK || !strings.HasPrefix(string(rec.Stdout), want) {
			t.Fatalf("the background run with files: %s %q (stderr %q, %s), want ok %q", rec.Status, rec.Stdout, rec.Stderr, rec.Message, want)
		}
		if len(rec.Files) != 2 || rec.Files[0].Path != "out/r.txt" || string(rec.Files[0].Data) != "result" || rec.Files[0].Omitted ||
			rec.Files[1].Path != "out/s.bin" || rec.Files[1].Size != 2048 || !rec.Files[1].Omitted || rec.Files[1].Data != nil {
			t.Fatalf("the record's files %+v: want out/r.txt kept and out/s.bin (2KiB, over the 1KiB kept) listed", rec.Files)
		}
		code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, map[string]any{"wasm_base64": probe, "async": true,
			"files": []map[string]string{{"path": "big.txt", "content_base64": b64(bytes.Repeat([]byte("x"), 65))}}}, nil)
		if code != http.StatusRequestEntityTooLarge || !bytes.Contains(body, []byte("ETOOLARGE")) {
			t.Fatalf("a background run with files over max_files_in_bytes: %d %s", code, body)
		}
	})
}

// TestServeAsyncSurvivesRestart: a queued run outlives its replica and runs
// when one that runs background work starts on the same database.
func TestServeAsyncSurvivesRestart(t *testing.T) {
	t.Parallel()
	env := backends[0].env(t)
	env["WASMWIZ_ASYNC_WORKERS"] = "0"
	data := t.TempDir()
	vars := serveEnv(t, env)
	vars["WASMWIZ_DATA_DIR"] = data
	a := startServe(t, vars, testServeOptions())
	_, _, key := a.newUser(wasmwiz.TierBasic)
	id := startAsync(t, a.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "hello.wasm"))})
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	vars["WASMWIZ_ASYNC_WORKERS"] = "1"
	b := startServe(t, vars, testServeOptions())
	if r := awaitRun(t, "the queued run to run after the restart", b.url, key, id, inState(api.RunDone)); r.Status != api.StatusOK || !strings.Contains(string(r.Stdout), "ello") {
		t.Fatalf("run after restart: %+v", r)
	}
}

// TestServeAsyncTwoReplicas: on PostgreSQL, a run admitted by a replica that
// runs no background work runs on the other, and is followed live from the
// first (its output crosses through LISTEN/NOTIFY).
func TestServeAsyncTwoReplicas(t *testing.T) {
	t.Parallel()
	env := backends[1].env(t)
	a := startServe(t, serveEnv(t, env, map[string]string{"WASMWIZ_ASYNC_WORKERS": "0"}), testServeOptions())
	_, _, key := a.newUser(wasmwiz.TierBasic)
	startServe(t, serveEnv(t, env, map[string]string{"WASMWIZ_ASYNC_WORKERS": "1"}), testServeOptions())

	id := startAsync(t, a.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "ticks.wasm")), "timeout": "1500ms"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, rec := followToResult(t, ctx, a.url, key, id)
	if rec.Status != api.StatusTimeout || out != string(rec.Stdout) {
		t.Fatalf("followed %q; result %+v", out, rec)
	}
}

// TestServeAsyncReplicaKilled: a replica killed mid-run (SIGKILL: nothing
// of it runs after) leaves the run failed with a message, found by another
// replica from the missing heartbeats, never run again; the next run runs.
func TestServeAsyncReplicaKilled(t *testing.T) {
	t.Parallel()
	env := backends[1].env(t)
	opts := testServeOptions()
	opts.StaleRunsAfter = 8 * time.Second
	a := startServe(t, serveEnv(t, env, map[string]string{"WASMWIZ_ASYNC_WORKERS": "0"}), opts)
	_, _, key := a.newUser(wasmwiz.TierBasic)
	victim := map[string]string{"WASMWIZ_WORKERS": "1", "WASMWIZ_LOG_LEVEL": "warn", "WASMWIZ_ASYNC_WORKERS": "1"}
	maps.Copy(victim, env)
	p := testenv.StartServe(t, victim)
	id := startAsync(t, a.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "ticks.wasm"))})
	awaitRun(t, "the run to print on the victim", a.url, key, id, printing)
	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	r := awaitRun(t, "the killed replica's run to be failed", a.url, key, id, inState(api.RunFailed))
	if !strings.Contains(r.Message, "never run again") || r.Status != "" {
		t.Fatalf("failed run: %+v", r)
	}
	// The next run runs, on a replica that is alive.
	startServe(t, serveEnv(t, env, map[string]string{"WASMWIZ_ASYNC_WORKERS": "1"}), testServeOptions())
	nextID := startAsync(t, a.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "hello.wasm"))})
	awaitRun(t, "the next run", a.url, key, nextID, inState(api.RunDone))
	if r := getRun(t, a.url, key, id); r.State != api.RunFailed {
		t.Fatalf("the failed run changed: %+v", r)
	}
}

// TestServeWebhook: a background run's record is POSTed to its callback
// URL, signed with the user's secret; a failing first delivery is tried
// again, and each attempt is in the run. A callback to loopback is refused
// unless WASMWIZ_WEBHOOK_ALLOW names it.
func TestServeWebhook(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		var mu sync.Mutex
		var got [][]byte
		var sigOK []bool
		secret := ""
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			got = append(got, body)
			sig := r.Header.Get(queue.SignatureHeader)
			ts := strings.TrimPrefix(strings.Split(sig, ",")[0], "t=")
			var sec int64
			fmt.Sscan(ts, &sec)
			sigOK = append(sigOK, sig == queue.Sign(secret, time.Unix(sec, 0), body))
			if len(got) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		defer recv.Close()
		s := b.serveWith(t, map[string]string{"WASMWIZ_WEBHOOK_ALLOW": "127.0.0.1/32"}, testServeOptions())
		_, _, key := s.newUser(wasmwiz.TierBasic)
		code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/webhook-secret", key, nil, nil)
		var sec struct{ Secret string }
		if code != http.StatusCreated || json.Unmarshal(body, &sec) != nil || sec.Secret == "" {
			t.Fatalf("webhook secret: %d %s", code, body)
		}
		mu.Lock()
		secret = sec.Secret
		mu.Unlock()
		id := startAsync(t, s.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "hello.wasm")), "callback_url": recv.URL + "/hook"})
		r := awaitRun(t, "two delivery attempts in the run", s.url, key, id, func(r *api.Run) bool { return len(r.Deliveries) == 2 })
		if r.Deliveries[0].StatusCode != http.StatusServiceUnavailable || r.Deliveries[0].Error == "" ||
			r.Deliveries[1].StatusCode != http.StatusNoContent || r.Deliveries[1].Error != "" {
			t.Fatalf("deliveries %+v", r.Deliveries)
		}
		mu.Lock()
		defer mu.Unlock()
		var delivered api.Run
		if len(got) != 2 || !sigOK[0] || !sigOK[1] || json.Unmarshal(got[1], &delivered) != nil ||
			delivered.ID != id || delivered.State != api.RunDone || delivered.Status != api.StatusOK {
			t.Fatalf("received %d deliveries, signatures %v: %s", len(got), sigOK, got)
		}
	})
}

// TestServeWebhookOneUserAtATime: a user whose receiver never answers (it
// holds every request until the attempt's timeout) holds one webhook
// worker of a replica, not all four: its deliveries are made one at a
// time, and another user's delivery goes out meanwhile.
func TestServeWebhookOneUserAtATime(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		// most counts the deliveries held at once whose attempt the sender
		// may not have given up yet. An attempt ends at most the webhook
		// timeout (10 s) after it began, which is before the receiver saw
		// it; the next one may then begin, and on a loaded machine the
		// receiver sees it before it notices the first one's connection
		// close (CI saw 2). So a held request that arrived more than the
		// timeout less a second of delivery latency ago no longer counts.
		// Without the bound, the four arrive at once, well within that.
		const attempt = 10*time.Second - time.Second
		var mu sync.Mutex
		inFlight := map[*http.Request]time.Time{}
		most, held := 0, 0
		release := make(chan struct{})
		stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			now := time.Now()
			inFlight[r] = now
			held++
			live := 0
			for _, arrived := range inFlight {
				if now.Sub(arrived) < attempt {
					live++
				}
			}
			most = max(most, live)
			mu.Unlock()
			defer func() {
				mu.Lock()
				delete(inFlight, r)
				mu.Unlock()
			}()
			select {
			case <-release:
				w.WriteHeader(http.StatusNoContent)
			case <-r.Context().Done():
			}
		}))
		defer stall.Close()
		defer close(release) // before Close, which waits for the held requests
		polite := make(chan string, 1)
		prompt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var rec api.Run
			_ = json.NewDecoder(r.Body).Decode(&rec)
			select {
			case polite <- rec.ID:
			default:
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		defer prompt.Close()

		s := b.serveWith(t, map[string]string{"WASMWIZ_WEBHOOK_ALLOW": "127.0.0.1/32"}, testServeOptions())
		_, _, hostile := s.newUser(wasmwiz.TierBasic)
		_, _, other := s.newUser(wasmwiz.TierBasic)
		for _, key := range []string{hostile, other} {
			if code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/webhook-secret", key, nil, nil); code != http.StatusCreated {
				t.Fatalf("webhook secret: %d %s", code, body)
			}
		}
		hello := b64(testmodule.Read(t, "hello.wasm"))
		var ids []string
		for range 4 { // as many as a replica has webhook workers
			ids = append(ids, startAsync(t, s.url, hostile, map[string]any{"wasm_base64": hello, "callback_url": stall.URL + "/hook"}))
		}
		for _, id := range ids {
			awaitRun(t, "the hostile user's run to end", s.url, hostile, id, inState(api.RunDone))
		}
		testenv.WaitFor(t, "a delivery held by the stalling receiver", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return held > 0
		})
		otherStart := time.Now()
		id := startAsync(t, s.url, other, map[string]any{"wasm_base64": hello, "callback_url": prompt.URL + "/hook"})
		if got := testenv.Recv(t, polite, "the other user's delivery"); got != id {
			t.Fatalf("the other user's receiver got run %q, want %q", got, id)
		}
		otherTook := time.Since(otherStart)
		mu.Lock()
		defer mu.Unlock()
		if most != 1 {
			t.Fatalf("the stalling receiver held %d of one user's deliveries at once, want 1", most)
		}
		testenv.Prove(t, "webhook receivers that never answer: 4 background runs of one user call back to a receiver that holds every request, "+b.name,
			"the replica makes one of that user's deliveries at a time (4 webhook workers), so another user's run and delivery go through meanwhile",
			"deliveries of the user held at once", fmt.Sprint(most),
			"other tenant's run and delivery", otherTook.Round(time.Millisecond).String())
	})
}

// TestServeWebhookRefusesLoopback: without WASMWIZ_WEBHOOK_ALLOW a callback
// that resolves to loopback is refused at connect time, and the refusal is
// in the run.
func TestServeWebhookRefusesLoopback(t *testing.T) {
	t.Parallel()
	hit := make(chan struct{}, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit <- struct{}{} }))
	defer recv.Close()
	s := backends[0].serve(t)
	_, _, key := s.newUser(wasmwiz.TierBasic)
	if code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/webhook-secret", key, nil, nil); code != http.StatusCreated {
		t.Fatalf("webhook secret: %d %s", code, body)
	}
	// "localhost" resolves to loopback: the check is on the address.
	u := strings.Replace(recv.URL, "127.0.0.1", "localhost", 1)
	id := startAsync(t, s.url, key, map[string]any{"wasm_base64": b64(testmodule.Read(t, "hello.wasm")), "callback_url": u})
	r := awaitRun(t, "a refused attempt in the run", s.url, key, id, func(r *api.Run) bool { return len(r.Deliveries) >= 1 })
	if d := r.Deliveries[0]; d.StatusCode != 0 || !strings.Contains(d.Error, "not public") {
		t.Fatalf("delivery %+v", d)
	}
	select {
	case <-hit:
		t.Fatal("the loopback receiver was reached")
	default:
	}
}

// TestServeAsyncClient: the Go client starts background runs in each body
// (files and outputs where the body carries them), follows them to their
// record, cancels a running one, and manages the webhook secret a callback
// URL needs.
func TestServeAsyncClient(t *testing.T) {
	t.Parallel()
	s := backends[0].serve(t)
	user, _, key := s.newTierUser("async", func(t *wasmwiz.Tier) { t.MaxStoredOutputBytes = wasmwiz.KiB })
	ctx := context.Background()
	probe := testmodule.Read(t, "fsprobe.wasm")
	for _, body := range []client.Body{client.BodyJSON, client.BodyMultipart} {
		acc, err := user.ExecuteAsync(ctx, &client.ExecuteRequest{Wasm: probe, Body: body, Outputs: []string{"out/"},
			Files: []client.File{{Path: "in.txt", Data: []byte("queued")}},
			Args:  []string{"cat", "in.txt", "mkdir", "out", "write", "out/r.txt", "kept"}}, "")
		if err != nil || acc.State != api.RunQueued || !wasmwiz.ValidRunID(acc.ID) {
			t.Fatalf("body %d: ExecuteAsync: %+v, %v", body, acc, err)
		}
		var followed bytes.Buffer
		rec, err := user.FollowRun(ctx, acc.ID, func(stderr bool, p []byte) {
			if !stderr {
				followed.Write(p)
			}
		})
		if err != nil || rec.State != api.RunDone || rec.Status != api.StatusOK || !strings.HasPrefix(string(rec.Stdout), "cat in.txt: ok queued\n") {
			t.Fatalf("body %d: FollowRun: %+v, %v", body, rec, err)
		}
		if followed.String() != string(rec.Stdout) {
			t.Errorf("body %d: followed %q, the record says %q", body, followed.String(), rec.Stdout)
		}
		if len(rec.Files) != 1 || rec.Files[0].Path != "out/r.txt" || string(rec.Files[0].Data) != "kept" {
			t.Fatalf("body %d: the record's files %+v", body, rec.Files)
		}
		if _, err := user.CancelRun(ctx, acc.ID); codeOf(err) != wasmwiz.ECONFLICT {
			t.Fatalf("body %d: cancelling a run that ended: %v, want ECONFLICT", body, err)
		}
	}
	acc, err := user.ExecuteAsync(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm"), Body: client.BodyRaw}, "")
	if err != nil {
		t.Fatalf("ExecuteAsync with a raw body: %v", err)
	}
	if rec, err := user.FollowRun(ctx, acc.ID, nil); err != nil || string(rec.Stdout) != "Hello, World!\n" {
		t.Fatalf("the raw body's run: %+v, %v", rec, err)
	}

	// A running guest is stopped by CancelRun: one that sleeps for ten
	// minutes (within its minute it would end timeout, not cancelled).
	acc, err = user.ExecuteAsync(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"600000"}, Timeout: time.Minute}, "")
	if err != nil {
		t.Fatalf("ExecuteAsync sleep: %v", err)
	}
	awaitRun(t, "the sleeping run to start", s.url, key, acc.ID, inState(api.RunRunning))
	if _, err := user.CancelRun(ctx, acc.ID); err != nil {
		t.Fatalf("CancelRun of a running run: %v", err)
	}
	if rec, err := user.FollowRun(ctx, acc.ID, nil); err != nil || rec.State != api.RunCancelled {
		t.Fatalf("the cancelled run: %+v, %v", rec, err)
	}

	// A callback needs the webhook secret.
	hook := "https://example.com/hook"
	if _, err := user.ExecuteAsync(ctx, &client.ExecuteRequest{Wasm: probe}, hook); codeOf(err) != wasmwiz.EINVALID {
		t.Fatalf("a callback without a secret: %v, want EINVALID", err)
	}
	secret, err := user.RotateWebhookSecret(ctx)
	if err != nil || secret.Secret == "" {
		t.Fatalf("RotateWebhookSecret: %+v, %v", secret, err)
	}
}
