package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// loadResult is what a closed loop of callers got in one phase.
type loadResult struct {
	ok, shed  atomic.Int64
	okTook    testenv.Latencies
	shedTook  testenv.Latencies
	elapsed   time.Duration
	badAnswer atomic.Value // the first answer that was neither
}

func (r *loadResult) perSecond() float64 { return float64(r.ok.Load()) / r.elapsed.Seconds() }

// overloadRun is the run of TestServeOverload: fib(27), a few
// milliseconds of the CPU, the resource a shed request must not take.
const overloadRun, overloadOut = "?arg=27", "196418\n"

// closedLoop runs callers that each send runs back to back for d; polite
// callers wait as long as a 503's Retry-After says (hostile ones do not).
func closedLoop(t *testing.T, hc *http.Client, url, key string, callers int, d time.Duration, polite bool) *loadResult {
	fib := testmodule.Read(t, "fib.wasm")
	r := &loadResult{}
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range callers {
		wg.Go(func() {
			for time.Now().Before(end) {
				req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/execute"+overloadRun, bytes.NewReader(fib))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/wasm")
				sent := time.Now()
				res, err := hc.Do(req)
				if err != nil {
					r.badAnswer.CompareAndSwap(nil, err.Error())
					return
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				took := time.Since(sent)
				var out struct {
					Stdout string `json:"stdout"`
					Error  struct {
						Code string `json:"code"`
					} `json:"error"`
				}
				_ = json.Unmarshal(body, &out)
				switch ra, _ := strconv.Atoi(res.Header.Get("Retry-After")); {
				case err == nil && res.StatusCode == http.StatusOK && out.Stdout == overloadOut:
					r.ok.Add(1)
					r.okTook.Add(took)
				case res.StatusCode == http.StatusServiceUnavailable && out.Error.Code == wasmwiz.EUNAVAILABLE && ra > 0:
					r.shed.Add(1)
					r.shedTook.Add(took)
					if polite {
						time.Sleep(min(time.Duration(ra)*time.Second, time.Until(end)))
					}
				default:
					r.badAnswer.CompareAndSwap(nil, fmt.Sprintf("%d (Retry-After %q) %.200s", res.StatusCode, res.Header.Get("Retry-After"), body))
				}
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// TestServeOverload: the wasmwiz binary, a replica of two run slots and a
// queue of two, runs fib(27) for callers back to back, first at its
// capacity (two callers), then at 16 times it: 32 callers that ignore
// Retry-After, then 32 that honour it. Under the overload every answer is
// a run's result or a 503 EUNAVAILABLE with Retry-After, runs keep
// completing (useful work goes on while the excess is shed), and a caller
// runs normally once it is over. The figures (useful throughput against
// the baseline, the server's processor time per run and per refusal) go to
// the prove report.
func TestServeOverload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := testenv.StartServe(t, map[string]string{"WASMWIZ_WORKERS": "2", "WASMWIZ_LOG_LEVEL": "warn",
		"WASMWIZ_MAX_CONCURRENT_RUNS": "2", "WASMWIZ_QUEUE_SIZE": "2"})
	s := processAPI(t, p)
	user, _, key := s.newTierUser("unmetered", func(tr *wasmwiz.Tier) {
		tr.RunsPerMinute, tr.RunsPerDay, tr.MaxConcurrent = 1_000_000, 100_000_000, 100
	})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	phase := 2 * time.Second
	if testenv.Proving() {
		phase = 5 * time.Second
	}
	const capacity = 2
	pid := p.Cmd.Process.Pid
	// A first run compiles fib; the phases measure runs.
	if res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "fib.wasm"), Args: []string{"1"}}); err != nil || res.Status != api.StatusOK {
		t.Fatalf("first run: %+v, %v", res, err)
	}
	cpu0 := testenv.TreeCPU(pid)
	baseline := closedLoop(t, hc, p.URL, key, capacity, phase, false)
	cpu1 := testenv.TreeCPU(pid)
	if bad := baseline.badAnswer.Load(); bad != nil {
		t.Fatalf("at capacity: %v", bad)
	}
	stopRSS := testenv.PeakRSSOf(t, pid)
	hostile := closedLoop(t, hc, p.URL, key, 16*capacity, phase, false)
	cpu2 := testenv.TreeCPU(pid)
	polite := closedLoop(t, hc, p.URL, key, 16*capacity, phase, true)
	peak := stopRSS()
	for name, r := range map[string]*loadResult{"ignoring Retry-After": hostile, "honouring Retry-After": polite} {
		if bad := r.badAnswer.Load(); bad != nil {
			t.Fatalf("16x overload %s: an answer neither a run's result nor a 503 with Retry-After: %v", name, bad)
		}
		if r.ok.Load() == 0 {
			t.Fatalf("16x overload %s: no run completed (%d shed)", name, r.shed.Load())
		}
	}
	if hostile.shed.Load() == 0 {
		t.Fatalf("32 callers on 2 slots and a queue of 2, and nothing was shed")
	}
	res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
	if err != nil || res.Status != api.StatusOK {
		t.Fatalf("after the overload: %+v, %v", res, err)
	}
	share := func(r *loadResult) string {
		return fmt.Sprintf("%.0f runs/s (%.0f%%)", r.perSecond(), 100*r.perSecond()/baseline.perSecond())
	}
	// The server's processor time: per run at capacity, and what is left
	// per refusal under the overload once its runs are paid at that rate.
	perRun := (cpu1 - cpu0) / time.Duration(max(baseline.ok.Load(), 1))
	perRefusal := (cpu2 - cpu1 - perRun*time.Duration(hostile.ok.Load())) / time.Duration(max(hostile.shed.Load(), 1))
	t.Logf("baseline %.0f runs/s; 16x overload %s ignoring Retry-After, %s honouring it; server CPU %v per run, %v per refusal",
		baseline.perSecond(), share(hostile), share(polite), perRun, perRefusal)
	testenv.Prove(t, "overload: 16x the replica's capacity (32 callers of fib(27) on 2 run slots and a queue of 2; the wasmwiz binary)",
		"every answer a run's result or 503 EUNAVAILABLE with Retry-After; runs keep completing; normal service after",
		"useful throughput", fmt.Sprintf("at capacity (2 callers) %.0f runs/s; 16x ignoring Retry-After %s; 16x honouring it %s",
			baseline.perSecond(), share(hostile), share(polite)),
		"refusals", fmt.Sprintf("%d while ignoring Retry-After, answered in %s", hostile.shed.Load(), hostile.shedTook.String()),
		"server's processor time", fmt.Sprintf("%.3f ms per run at capacity; about %.3f ms per refusal",
			float64(perRun.Microseconds())/1000, float64(perRefusal.Microseconds())/1000),
		"time to answer", fmt.Sprintf("a run at capacity %s; under 16x (ignoring) %s", baseline.okTook.String(), hostile.okTook.String()),
		"peak RSS", "serve and its workers "+testenv.MiB(peak))
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
