package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// repeated is n bytes of unit again and again, read as it is sent.
func repeated(unit string, n int64) io.Reader {
	return io.LimitReader(&unitReader{unit: unit}, n)
}

type unitReader struct {
	unit string
	off  int
}

func (r *unitReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.unit[r.off:])
		r.off = (r.off + c) % len(r.unit)
		n += c
	}
	return n, nil
}

// hostileBody is one request of an attack: its parts are sent as they are
// made, so that the test holds none of it.
type hostileBody struct {
	contentType string
	parts       []io.Reader
	length      int64 // -1: chunked, no Content-Length
}

// answer is what the server said to one request.
type answer struct {
	status        int
	code, message string
	err           error
}

func (a answer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s %q", a.status, a.code, a.message)
}

// postBody sends b to the server's execute route with key.
func postBody(ctx context.Context, base, key string, b hostileBody) answer {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/execute", io.MultiReader(b.parts...))
	if err != nil {
		return answer{err: err}
	}
	req.ContentLength = b.length
	req.Header.Set("Content-Type", b.contentType)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code, Message string }
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = json.Unmarshal(raw, &e)
	return answer{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
}

// procStatus reads one field of /proc/pid/status, in bytes (kB values).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("reading the server's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", field, line)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestServeLargeBodiesBounded is issue 9's attack and its variants against
// the real binary on PostgreSQL and Redis: eight 15 MB JSON bodies of
// millions of tiny args from one free key (which took the server from 250
// MB to 1.4 GB before args had caps), chunked bodies with no
// Content-Length, a multipart args part of millions of args, and a crowd of
// free callers each sending a 13 MB module at once. Every answer is a
// refusal with the code its cap gives (429 for a caller at its concurrency
// limit, 503 when the server's bound on bodies in flight is reached; never
// a run, never another 5xx), the serve process's peak resident memory stays
// within bodyMemoryBound of what it was before, and another tenant's hello
// world completes meanwhile.
func TestServeLargeBodiesBounded(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("reads the server's memory from /proc")
	}
	t.Parallel()
	ctx := context.Background()
	const bodyMemory = 64 << 20
	vars := postgresEnv(t, emptyRedisDB(t, 13))
	maps.Copy(vars, map[string]string{"WASMWIZ_WORKERS": "2", "WASMWIZ_LOG_LEVEL": "warn", "WASMWIZ_MAX_BODY_MEMORY": wasmwiz.FormatSize(bodyMemory)})
	p := testenv.StartServe(t, vars)
	s := processAPI(t, p)
	freeKey := func() string { _, _, key := s.newUser(wasmwiz.TierFree); return key }
	victim, _, _ := s.newUser(wasmwiz.TierBasic)
	hello := testmodule.Read(t, "hello.wasm")
	helloB64 := base64.StdEncoding.EncodeToString(hello)
	if res, err := victim.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil || res.Status != api.StatusOK {
		t.Fatalf("hello world before the attack: %+v, %v", res, err)
	}
	pid := p.Cmd.Process.Pid
	before := procStatus(t, pid, "VmRSS")

	const size = 15 << 20
	type attack struct {
		name  string
		key   string
		body  func() hostileBody
		ok    func(a answer) bool // the refusal this body's cap gives
		alone bool                // the only request of its key
	}
	capped := func(status int, code, msg string) func(a answer) bool {
		return func(a answer) bool { return a.status == status && a.code == code && strings.Contains(a.message, msg) }
	}
	attacker, chunker, envs, multi := freeKey(), freeKey(), freeKey(), freeKey()
	var attacks []attack
	for range 8 {
		attacks = append(attacks, attack{name: "15 MB of tiny args", key: attacker, body: func() hostileBody {
			head, tail := `{"wasm_base64":"`+helloB64+`","args":[`, `"a"]}`
			n := int64(size - len(head) - len(tail))
			n -= n % 4
			return hostileBody{"application/json", []io.Reader{strings.NewReader(head), repeated(`"a",`, n), strings.NewReader(tail)},
				int64(len(head)) + n + int64(len(tail))}
		}, ok: capped(413, wasmwiz.ETOOLARGE, "more than 4096 arguments")})
	}
	for range 4 {
		attacks = append(attacks, attack{name: "chunked, endless stdin", key: chunker, body: func() hostileBody {
			return hostileBody{"application/json", []io.Reader{strings.NewReader(`{"wasm_base64":"` + helloB64 + `","stdin_base64":"`),
				repeated("AAAA", size), strings.NewReader(`"}`)}, -1}
		}, ok: capped(413, wasmwiz.ETOOLARGE, "stdin is over the 1MiB limit")})
		attacks = append(attacks, attack{name: "chunked, millions of env vars", key: envs, body: func() hostileBody {
			return hostileBody{"application/json", []io.Reader{strings.NewReader(`{"wasm_base64":"` + helloB64 + `","env":{`),
				repeated(`"K":"",`, size), strings.NewReader(`"K":""}}`)}, -1}
		}, ok: capped(413, wasmwiz.ETOOLARGE, "more than 4096 environment variables")})
	}
	for range 4 {
		attacks = append(attacks, attack{name: "multipart args of 15 MB", key: multi, body: func() hostileBody {
			const boundary = "b0undary"
			head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"hello.wasm\"\r\n\r\n" + string(hello) +
				"\r\n--" + boundary + "\r\nContent-Disposition: form-data; name=\"args\"\r\n\r\n["
			tail := `"a"]` + "\r\n--" + boundary + "--\r\n"
			n := int64(size - len(head) - len(tail))
			n -= n % 4
			return hostileBody{"multipart/form-data; boundary=" + boundary,
				[]io.Reader{strings.NewReader(head), repeated(`"a",`, n), strings.NewReader(tail)}, int64(len(head)) + n + int64(len(tail))}
		}, ok: capped(413, wasmwiz.ETOOLARGE, "args are over 2MiB as JSON text")})
	}
	for range 8 {
		// Each its own free caller: only the server's bound holds them.
		attacks = append(attacks, attack{name: "a 13 MB module", key: freeKey(), body: func() hostileBody {
			const n = 13 << 20
			return hostileBody{"application/json", []io.Reader{strings.NewReader(`{"wasm_base64":"`), repeated("AAAA", n), strings.NewReader(`"}`)}, n + 18}
		}, ok: capped(400, wasmwiz.EINVALID, ""), alone: true})
	}

	answers := make([]answer, len(attacks))
	var wg sync.WaitGroup
	for i, a := range attacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = postBody(ctx, p.URL, a.key, a.body())
		}()
	}
	// Another tenant meanwhile.
	var victimTook testenv.Latencies
	if err := timedHellos(ctx, victim, hello, 3, &victimTook); err != nil {
		t.Errorf("another tenant during the attack: %v", err)
	}
	testenv.Wait(t, "the attack's answers", wg.Wait)
	peak := procStatus(t, pid, "VmHWM")

	counts := map[string]int{}
	for i, a := range answers {
		at := attacks[i]
		switch {
		case at.ok(a):
		case a.status == 429 && a.code == wasmwiz.ERATELIMIT && strings.Contains(a.message, "too many runs in flight") && !at.alone:
			// The caller's one slot (free tier) was taken by another of its bodies.
		case a.status == 503 && a.code == wasmwiz.EUNAVAILABLE &&
			(strings.Contains(a.message, "too many large request bodies") || strings.Contains(a.message, "server is saturated")):
			// The bound on bodies in flight, or the run slots (a loaded machine).
		case a.err != nil && (errors.Is(a.err, syscall.EPIPE) || errors.Is(a.err, syscall.ECONNRESET)):
			// Cut: the server answered its refusal and closed the connection
			// while the client still wrote the body, and the close lost the
			// answer on the way (net/http's early answer to an unread body).
		default:
			t.Errorf("%s: %s", at.name, a)
		}
		counts[fmt.Sprintf("%s: %d %s", at.name, a.status, a.code)]++
	}
	t.Logf("answers: %v", counts)
	t.Logf("serve's resident memory: %d MiB before, peak %d MiB (WASMWIZ_MAX_BODY_MEMORY %d MiB)", before>>20, peak>>20, bodyMemory>>20)
	if bound := before + bodyMemoryBound(bodyMemory); peak > bound {
		t.Errorf("serve's peak resident memory %d MiB, over %d MiB (before the attack %d MiB plus the bound on bodies in flight)", peak>>20, bound>>20, before>>20)
	}
	if res, err := victim.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil || res.Status != api.StatusOK {
		t.Fatalf("hello world after the attack: %+v, %v", res, err)
	}
	var summary []string
	for k := range counts {
		summary = append(summary, k)
	}
	sort.Strings(summary)
	for i, k := range summary {
		summary[i] = fmt.Sprintf("%s × %d", k, counts[k])
	}
	testenv.Prove(t, "issue 9's attack: 24 hostile JSON and multipart bodies of 13-15 MB at once (tiny args, endless stdin, millions of env vars) from free keys; the wasmwiz binary on PostgreSQL and Redis",
		fmt.Sprintf("every answer the refusal its cap gives (413, 400, or 429/503 at a bound); the serve process's peak memory within before + %d MiB (WASMWIZ_MAX_BODY_MEMORY %d MiB); another tenant's runs complete",
			bodyMemoryBound(bodyMemory)>>20, bodyMemory>>20),
		"answers", strings.Join(summary, "; "),
		"peak RSS", fmt.Sprintf("serve process %s (VmHWM; %s before the attack)", testenv.MiB(peak), testenv.MiB(before)),
		"other tenant's latency", victimTook.String())
}

// bodyMemoryBound is what bodies in flight may add to the server's
// resident memory under WASMWIZ_MAX_BODY_MEMORY of n (README): a body is
// held about once as it is decoded (base64 is decoded as it streams) and
// once more as its module goes to a worker, and the garbage collector lets
// the heap grow to twice what is live before it collects.
func bodyMemoryBound(n int64) int64 { return 3 * n }

// TestServeLargeBodyAdmissionIsHandedOn: a large body's admission, taken
// before it is read, is the run's: a free caller (one run at a time) sends
// large bodies one after the other, background and not, and none is
// refused for a slot an earlier one left taken; the rate-limit headers are
// the run's.
func TestServeLargeBodyAdmissionIsHandedOn(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		s := be.serve(t)
		_, _, key := s.newUser(wasmwiz.TierFree)
		stdin := strings.Repeat("s", 900<<10) // 1.2MiB as base64: a large body
		body := func(async bool) map[string]any {
			return map[string]any{"wasm_base64": b64(testmodule.Read(t, "echo.wasm")), "stdin_base64": b64([]byte(stdin)), "async": async}
		}
		for i := range 2 {
			id := startAsync(t, s.url, key, body(true))
			poll(t, "the background run to end", func() bool { return getRun(t, s.url, key, id).State.Final() })
			if rec := getRun(t, s.url, key, id); rec.State != api.RunDone || rec.Status != api.StatusOK {
				t.Fatalf("background run %d: %s %s", i+1, rec.State, rec.Status)
			}
			code, raw, hdr := testenv.DoJSON(t, "POST", s.url+"/api/v1/execute", key, body(false), nil)
			if code != http.StatusOK || hdr.Get("X-RateLimit-Remaining") == "" {
				t.Fatalf("run %d after a background one: %d %.200s (X-RateLimit-Remaining %q)", i+1, code, raw, hdr.Get("X-RateLimit-Remaining"))
			}
		}
	})
}

// floodBody is an endless body of zeros that counts what was read of it.
type floodBody struct {
	head string // sent first (a multipart part's header)
	left int64
	read *atomic.Int64
}

func (f *floodBody) Read(p []byte) (int, error) {
	if f.head != "" {
		n := copy(p, f.head)
		f.head = f.head[n:]
		f.left -= int64(n)
		f.read.Add(int64(n))
		return n, nil
	}
	if f.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), f.left)
	clear(p[:n])
	f.left -= n
	f.read.Add(n)
	return int(n), nil
}

// TestServeBodyFlood: 16 callers at once each send a 256 MiB body to a
// tier whose module may be 1 MiB, half with a declared length (refused
// before a byte is read) and half chunked (cut at the limit), as raw
// modules and multipart. Every one is answered 413 ETOOLARGE, 429 past
// the 8 execute requests of a user that may wait for admission, or cut
// without an answer; the server reads a small part of the flood, and
// another tenant's runs complete meanwhile.
func TestServeBodyFlood(t *testing.T) {
	t.Parallel()
	s := backends[0].serve(t)
	_, _, key := s.newTierUser("small", func(tr *wasmwiz.Tier) { tr.MaxModuleBytes = wasmwiz.MiB; tr.MaxStdinBytes = 64 * wasmwiz.KiB })
	other, _, _ := s.newUser(wasmwiz.TierBasic)
	const flood, callers = 256 * wasmwiz.MiB, 16
	var read atomic.Int64
	var answers sync.Map // status → count
	var took testenv.Latencies
	stopRSS := testenv.PeakRSS(t)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			body := &floodBody{left: flood, read: &read}
			req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/execute", body)
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/wasm")
			if i%4 >= 2 {
				body.head = "--b\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"m.wasm\"\r\n\r\n"
				req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
			}
			if i%2 == 0 {
				req.ContentLength = flood
			} else {
				req.ContentLength = -1 // chunked
			}
			start := time.Now()
			res, err := http.DefaultClient.Do(req)
			took.Since(start)
			status := "cut without an answer"
			if err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				status = strconv.Itoa(res.StatusCode)
				tooLarge := res.StatusCode == http.StatusRequestEntityTooLarge && strings.Contains(string(b), wasmwiz.ETOOLARGE)
				// 16 at once from one user: past the 8 of its execute
				// requests that may wait for admission, 429 before a byte.
				waiting := res.StatusCode == http.StatusTooManyRequests && strings.Contains(string(b), "waiting for their run")
				if !tooLarge && !waiting {
					t.Errorf("flood %d: %d %.200s, want 413 ETOOLARGE or 429 for too many waiting", i, res.StatusCode, b)
				}
			}
			n, _ := answers.LoadOrStore(status, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		})
	}
	var otherTook testenv.Latencies
	if err := timedHellos(context.Background(), other, testmodule.Read(t, "hello.wasm"), 5, &otherTook); err != nil {
		t.Fatalf("another tenant during the flood: %v", err)
	}
	testenv.Wait(t, "the floods", wg.Wait)
	peak := stopRSS()
	// The server stops reading at the limit: what was sent beyond it sat
	// in socket buffers at most.
	if n := read.Load(); n > callers*16*wasmwiz.MiB {
		t.Errorf("the clients sent %s of the %s flood: the server read on past the limit", testenv.MiB(n), testenv.MiB(callers*flood))
	}
	var summary []string
	answers.Range(func(k, v any) bool {
		summary = append(summary, fmt.Sprintf("%d %s", v.(*atomic.Int64).Load(), k))
		return true
	})
	testenv.Prove(t, "body flood: 16 callers x 256 MiB against a 1 MiB module limit (declared and chunked, raw and multipart)",
		"every flood answered 413 ETOOLARGE, 429 ERATELIMIT (past the user's 8 execute requests waiting for admission) or cut; the server reads little of it; another tenant's runs complete",
		"answers", strings.Join(summary, ", "),
		"bytes the clients got to send", fmt.Sprintf("%s of %s", testenv.MiB(read.Load()), testenv.MiB(callers*flood)),
		"time to answer", took.String(),
		"other tenant's latency", otherTook.String(),
		"peak RSS", testenv.MiB(peak))
}
