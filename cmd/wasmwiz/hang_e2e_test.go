package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// hangDatabaseTimeout is WASMWIZ_DATABASE_TIMEOUT in TestServeDatabaseHang.
const hangDatabaseTimeout = time.Second

// hangBound is how long after it was sent a request must be answered while
// PostgreSQL hangs: a request waits for the database a few times at most
// (key, tier, module, its bytes), each wait at most hangDatabaseTimeout,
// plus a guest's run of up to 2 s, plus a margin for a machine that runs
// other tests beside this one. The database hangs on well past it: an
// answer within it is an answer that did not wait for the database.
const hangBound = 4*hangDatabaseTimeout + 2*time.Second + 15*time.Second

// hangAnswer is one raw answer of an execute route.
type hangAnswer struct {
	what       string
	user       *client.Client
	status     int
	retryAfter string
	code       string
	id         string
	run        api.Status
	took       time.Duration
}

// hangPost sends one execute request to url and reads the answer raw, so
// that its headers can be checked.
func hangPost(t *testing.T, what string, user *client.Client, url, key, contentType string, body []byte) hangAnswer {
	a := hangAnswer{what: what, user: user}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return a
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return a
	}
	defer res.Body.Close()
	var out struct {
		ID     string     `json:"id"`
		Status api.Status `json:"status"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	err = json.NewDecoder(res.Body).Decode(&out)
	a.took = time.Since(start)
	if err != nil {
		t.Errorf("%s: answer %d is not JSON: %v", what, res.StatusCode, err)
	}
	a.status, a.retryAfter, a.code, a.id, a.run = res.StatusCode, res.Header.Get("Retry-After"), out.Error.Code, out.ID, out.Status
	return a
}

// TestServeDatabaseHang: two replicas on PostgreSQL and Redis, each behind
// a proxy that can stall (accept, forward nothing back). While PostgreSQL
// hangs, every request in flight or sent is answered within hangBound
// (WASMWIZ_DATABASE_TIMEOUT 1s): a run that needs nothing from the
// database answers 200, one that does (a key never seen, a module a
// replica has not read, a module whose bytes a run admitted into its
// slots must read) 503 EUNAVAILABLE with Retry-After; no answer waits for
// the hang to end. When the database answers again, the runs' slots are
// free (a tier of one concurrent run, whose run the hang failed in its
// slot, runs on both replicas one after the other), every run answered
// 200 has its record, and so has the failed one. Then Redis
// hangs: runs answer from the in-memory fallback within the Redis timeout,
// and Redis decides again when it is back.
func TestServeDatabaseHang(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dp, databaseURL := tcpproxy.ForURL(t, pgtest.Schema(t))
	rp, redisURL := tcpproxy.ForURL(t, testenv.RedisURL(t))
	vars := map[string]string{"WASMWIZ_DATABASE_URL": databaseURL, "WASMWIZ_REDIS_URL": redisURL,
		"WASMWIZ_DATABASE_TIMEOUT": hangDatabaseTimeout.String(), "WASMWIZ_REDIS_TIMEOUT": "1s"}
	prefix := randomPrefix()
	a := startServe(t, serveEnv(t, vars), ServeOptions{RedisPrefix: prefix})
	// b's workers keep no compiled code in memory, so that every run of a
	// stored module there reads its bytes from the database after it was
	// admitted: in its run slots.
	b := startServe(t, serveEnv(t, vars, map[string]string{"WASMWIZ_COMPILE_CACHE": "1B"}), ServeOptions{RedisPrefix: prefix})
	warm, _, warmKey := a.newUser(wasmwiz.TierPro)
	single, _, singleKey := a.newTierUser("one", func(tr *wasmwiz.Tier) { tr.MaxConcurrent = 1 })
	_, _, coldKey := a.newUser(wasmwiz.TierPro) // never used before the hang
	hello, sleep := testmodule.Read(t, "hello.wasm"), testmodule.Read(t, "poll_sleep.wasm")
	// Before the hang, a call that meets the one-second database timeout on
	// a loaded machine is asked again (setupRetry).
	var mod, own *api.Module
	setupRetry(t, "upload hello.wasm", func() (err error) {
		mod, err = warm.CreateModule(ctx, client.ModuleUpload{Wasm: hello, Name: "hello.wasm"})
		return err
	})
	// Warm: each replica has seen the warm and single keys (and a has
	// read the stored module; b has not).
	for _, s := range []*e2eServer{a, b} {
		for _, key := range []string{warmKey, singleKey} {
			setupRetry(t, "a run before the hang", func() error {
				res, err := s.client(key).Execute(ctx, &client.ExecuteRequest{Wasm: hello})
				if err == nil && res.Status != api.StatusOK {
					t.Fatalf("before the hang: %+v", res)
				}
				return err
			})
		}
	}
	setupRetry(t, "stored module before the hang", func() error {
		_, err := a.client(warmKey).ExecuteModule(ctx, mod.ID, &client.ExecuteRequest{})
		return err
	})
	// The single-slot caller's own module, which b has looked up.
	setupRetry(t, "upload echo.wasm", func() (err error) {
		own, err = single.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "echo.wasm"), Name: "echo.wasm"})
		return err
	})
	setupRetry(t, "the single-slot caller's module on b before the hang", func() error {
		_, err := b.client(singleKey).ExecuteModule(ctx, own.ID, &client.ExecuteRequest{})
		return err
	})

	var mu sync.Mutex
	var answers []hangAnswer
	var wg sync.WaitGroup
	send := func(what string, user *client.Client, url, key, contentType string, body []byte) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans := hangPost(t, what, user, url, key, contentType, body)
			mu.Lock()
			answers = append(answers, ans)
			mu.Unlock()
		}()
	}
	// In flight when the database starts to hang: a guest that runs 2 s.
	for _, s := range []*e2eServer{a, b} {
		send("a run in flight", warm, s.url+"/api/v1/execute?timeout=2s", warmKey, "application/wasm", sleep)
	}
	time.Sleep(300 * time.Millisecond) // let them start; they are answered either way
	dp.Stall()
	stalled := true
	defer func() {
		if stalled {
			dp.Unstall()
		}
	}()
	hangStart := time.Now()
	for _, s := range []*e2eServer{a, b} {
		for i := range 3 {
			send("hello with a seen key "+strconv.Itoa(i), warm, s.url+"/api/v1/execute", warmKey, "application/wasm", hello)
		}
		send("hello with a key never seen", nil, s.url+"/api/v1/execute", coldKey, "application/wasm", hello)
		send("a stored module", warm, s.url+"/api/v1/modules/"+mod.ID+"/execute", warmKey, "", nil)
	}
	// Admitted, in the caller's only slot and one of b's, then held: its
	// module's bytes are in the hung database.
	send("a stored module admitted on b", single, b.url+"/api/v1/modules/"+own.ID+"/execute", singleKey, "", nil)
	allAnswered := make(chan struct{})
	go func() { wg.Wait(); close(allAnswered) }()
	select {
	case <-allAnswered:
	case <-time.After(hangBound):
		t.Fatalf("requests still in flight %v after PostgreSQL started to hang (WASMWIZ_DATABASE_TIMEOUT %v)", hangBound, hangDatabaseTimeout)
	}
	hangAnswered := time.Since(hangStart)

	var took testenv.Latencies
	var ok, unavailable int
	for _, ans := range answers {
		took.Add(ans.took)
		switch {
		case ans.status == http.StatusOK && ans.id != "":
			ok++
		case ans.status == http.StatusServiceUnavailable && ans.code == wasmwiz.EUNAVAILABLE:
			unavailable++
			if n, err := strconv.Atoi(ans.retryAfter); err != nil || n <= 0 {
				t.Errorf("%s: 503 with Retry-After %q", ans.what, ans.retryAfter)
			}
		default:
			t.Errorf("%s while PostgreSQL hangs: %d %s, want 200 or 503 EUNAVAILABLE", ans.what, ans.status, ans.code)
		}
		if ans.user == nil && ans.status != http.StatusServiceUnavailable {
			t.Errorf("%s: %d while PostgreSQL hangs, want 503 (the key is only in the database)", ans.what, ans.status)
		}
	}

	for _, ans := range answers {
		if ans.what == "a stored module admitted on b" && ans.status != http.StatusServiceUnavailable {
			t.Errorf("%s: %d while PostgreSQL hangs, want 503 (its bytes are only in the database)", ans.what, ans.status)
		}
	}

	dp.Unstall()
	stalled = false
	unstalled := time.Now()
	// The runs' slots are free: a tier of one concurrent run runs on a,
	// then on b (a slot kept by a run the hang held would refuse it).
	for _, s := range []*e2eServer{a, b} {
		testenv.WaitFor(t, "a run of the single-slot tier after the hang", func() bool {
			res, err := s.client(singleKey).Execute(ctx, &client.ExecuteRequest{Wasm: hello})
			if codeOf(err) == wasmwiz.EUNAVAILABLE { // the pool's connections come back
				return false
			}
			if err != nil || res.Status != api.StatusOK {
				t.Fatalf("single-slot tier after the hang: %+v, %v", res, err)
			}
			return true
		})
		if res, err := s.client(coldKey).Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil || res.Status != api.StatusOK {
			t.Fatalf("the key never seen, after the hang: %+v, %v", res, err)
		}
	}
	// Every run answered 200 has its record, with the status it answered.
	for _, ans := range answers {
		if ans.status != http.StatusOK || ans.user == nil { // a cold key's 200 is reported above
			continue
		}
		testenv.WaitFor(t, "the record of "+ans.what, func() bool {
			r, err := ans.user.GetRun(ctx, ans.id)
			if err != nil {
				return false
			}
			if r.Status != ans.run {
				t.Fatalf("%s answered %s, its record says %s", ans.what, ans.run, r.Status)
			}
			return true
		})
	}
	// The admitted run that the hang failed is recorded too, as failed
	// with EUNAVAILABLE: it held a slot, and gave it back.
	testenv.WaitFor(t, "the record of the admitted run the hang failed", func() bool {
		runs, _, err := single.ListRuns(ctx, client.RunQuery{})
		if err != nil {
			return false
		}
		for _, r := range runs {
			if r.ModuleID == own.ID && r.ErrorCode == wasmwiz.EUNAVAILABLE {
				return true
			}
		}
		return false
	})
	recorded := time.Since(unstalled)
	testenv.Prove(t, "PostgreSQL hangs (2 replicas, proxy stalled)",
		fmt.Sprintf("every request answered while the database hung, within %v of its sending (WASMWIZ_DATABASE_TIMEOUT %v): 200, or 503 EUNAVAILABLE with Retry-After (also a run held in its slot reading its module from the database, which is recorded as failed and gives its slot back); every 200 has its record", hangBound, hangDatabaseTimeout),
		"time to answer", took.String(),
		"answers", fmt.Sprintf("%d ok, %d 503", ok, unavailable),
		"all answered after the hang began", testenv.Ms(hangAnswered),
		"records written", fmt.Sprintf("%d of %d, all within %s of the database's return", ok, ok, testenv.Ms(recorded)))

	// Redis hangs: the in-memory fallback decides within the Redis timeout.
	rp.Stall()
	var redisTook testenv.Latencies
	for _, s := range []*e2eServer{a, b} {
		if err := timedHellos(ctx, s.client(warmKey), hello, 3, &redisTook); err != nil {
			t.Fatalf("while Redis hangs: %v", err)
		}
		if st := s.srv.LimiterStats(); !st.FallbackActive {
			t.Fatalf("Redis hangs and the fallback does not decide: %+v", st)
		}
	}
	rp.Unstall()
	for _, s := range []*e2eServer{a, b} {
		testenv.WaitFor(t, "Redis to decide again", func() bool {
			if res, err := s.client(warmKey).Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil || res.Status != api.StatusOK {
				t.Fatalf("after Redis's hang: %+v, %v", res, err)
			}
			return !s.srv.LimiterStats().FallbackActive
		})
	}
	testenv.Prove(t, "Redis hangs (2 replicas, proxy stalled)",
		"every run answered 200 from the in-memory fallback (WASMWIZ_REDIS_TIMEOUT 1s); Redis decides again when it answers",
		"time to answer", redisTook.String())
}
