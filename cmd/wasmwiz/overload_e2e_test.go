package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	// The phases' lengths feed only the prove report's rates: what the
	// test asserts holds from the first wave of callers on (each sends at
	// least one run; 32 at once on 2 slots and a queue of 2 are shed).
	phase := 500 * time.Millisecond
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

// slowConn is one attacking connection: it sends head at once, then the
// rest one byte per interval, and records whether and how the server ended
// it before the rest was sent.
type slowConn struct {
	cut    bool
	status string // the answer's status line, "" when closed without one
}

func trickleRequest(t *testing.T, addr, head, rest string, interval time.Duration) slowConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return slowConn{}
	}
	defer conn.Close()
	closed := make(chan string, 1)
	go func() {
		br := bufio.NewReader(conn)
		line, _ := br.ReadString('\n')
		_, _ = io.Copy(io.Discard, br)
		closed <- strings.TrimSpace(line)
	}()
	// cut waits for the server to close a connection it stopped reading
	// (t.Error, not Fatal: this runs on a goroutine of the test's).
	cut := func() slowConn {
		select {
		case st := <-closed:
			return slowConn{cut: true, status: st}
		case <-time.After(testenv.Patience):
			t.Error("the server stopped reading but kept the connection")
			return slowConn{}
		}
	}
	if _, err := io.WriteString(conn, head); err != nil {
		return cut()
	}
	for i := 0; i < len(rest); i++ {
		select {
		case st := <-closed:
			return slowConn{cut: true, status: st}
		case <-time.After(interval):
		}
		if _, err := conn.Write([]byte{rest[i]}); err != nil {
			return cut()
		}
	}
	return slowConn{}
}

// TestServeSlowConnections: connections that trickle hold nothing for
// long, on SQLite and on PostgreSQL with Redis: a body sent slower than
// WASMWIZ_MIN_TRANSFER_RATE is cut with a key (400) and without (401, the
// connection closed), headers that trickle are cut by
// WASMWIZ_HEADER_TIMEOUT, headers over WASMWIZ_MAX_HEADER_BYTES are 431;
// and while 24 such connections are open, another tenant's runs complete.
func TestServeSlowConnections(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serveWith(t, map[string]string{
			"WASMWIZ_HEADER_TIMEOUT":    "1s",
			"WASMWIZ_MIN_TRANSFER_RATE": "1KiB",
			"WASMWIZ_MAX_HEADER_BYTES":  "8KiB",
		}, ServeOptions{})
		_, _, attackerKey := s.newUser(wasmwiz.TierFree)
		other, _, _ := s.newUser(wasmwiz.TierBasic)
		u, _ := url.Parse(s.url)
		addr := u.Host

		// Each whole request would take 4000 × 50ms = 200s; the
		// server must end every one long before.
		body := strings.Repeat("x", 4000)
		execHead := func(key string) string {
			h := "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/wasm\r\n"
			if key != "" {
				h += "Authorization: Bearer " + key + "\r\n"
			}
			return h + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
		}
		attacks := []struct {
			name       string
			head, rest string
			want       string // status line prefix of an answer, if one arrives
		}{
			{"body with a key", execHead(attackerKey), body, "HTTP/1.1 400"},
			{"body without a key", execHead(""), body, "HTTP/1.1 401"},
			{"headers", "POST /api/v1/execute HTTP/1.1\r\n", "X-Slow: " + body, ""},
		}
		stopRSS := testenv.PeakRSS(t)
		var cutAfter, otherTook testenv.Latencies
		var wg sync.WaitGroup
		results := make([]slowConn, 8*len(attacks))
		for i := range results {
			a := attacks[i%len(attacks)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				results[i] = trickleRequest(t, addr, a.head, a.rest, 50*time.Millisecond)
				cutAfter.Since(start)
			}()
		}
		// The other tenant runs meanwhile.
		if err := timedHellos(ctx, other, testmodule.Read(t, "hello.wasm"), 3, &otherTook); err != nil {
			t.Fatalf("another tenant during the attack: %v", err)
		}
		testenv.Wait(t, "the slow connections", wg.Wait)
		for i, r := range results {
			a := attacks[i%len(attacks)]
			// A close may reset the connection before the client reads
			// the answer (unread bytes in the server's buffer): no
			// answer is fine, a wrong one is not.
			if !r.cut {
				t.Errorf("%s: the server read the whole trickle", a.name)
			} else if r.status != "" && !strings.HasPrefix(r.status, a.want) {
				t.Errorf("%s: answer %q, want %q", a.name, r.status, a.want)
			}
		}

		// Headers over the limit: 431 at once.
		status, _ := rawHeaderRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 16<<10)+"\r\n\r\n")
		if !strings.HasPrefix(status, "HTTP/1.1 431") {
			t.Errorf("16KiB of headers: %q, want 431", status)
		}
		testenv.Prove(t, "slow connections: 24 trickling a byte per 50ms (bodies with and without a key, headers), "+be.name,
			"each cut (400, 401 or closed) by WASMWIZ_MIN_TRANSFER_RATE 1KiB/s after WASMWIZ_HEADER_TIMEOUT 1s; another tenant's runs complete",
			"time to answer", "cut after "+cutAfter.String()+" (the whole trickle would take 200 s)",
			"other tenant's latency", otherTook.String(),
			"peak RSS", testenv.MiB(stopRSS()))
	})
}

// rawHeaderRequest sends req as it is and returns the answer's status line.
func rawHeaderRequest(t *testing.T, addr, req string) (string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestServeIdleConnections: a connection holds nothing for long when it
// sends nothing: a keep-alive connection after its answer is closed after
// WASMWIZ_IDLE_TIMEOUT, and one that never sends a request after
// WASMWIZ_HEADER_TIMEOUT.
func TestServeIdleConnections(t *testing.T) {
	t.Parallel()
	s := backends[0].serveWith(t, map[string]string{"WASMWIZ_HEADER_TIMEOUT": "1s", "WASMWIZ_IDLE_TIMEOUT": "1s"}, ServeOptions{})
	u, _ := url.Parse(s.url)
	closedBy := func(conn net.Conn, br *bufio.Reader) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(testenv.Patience))
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("the server kept the idle connection: %v", err)
		}
	}

	kept, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if _, err := io.WriteString(kept, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(kept)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("healthz: %q, %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	_, _ = br.ReadString('\n') // the body: one line
	closedBy(kept, br)

	silent, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closedBy(silent, bufio.NewReader(silent))
}
