package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeSharedRedisLimit: two serve replicas on one database and one
// Redis share one user's per-minute quota exactly.
func TestServeSharedRedisLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[1].env(t) // shared by both replicas
	prefix := randomPrefix()
	a := startServe(t, serveEnv(t, db), ServeOptions{RedisPrefix: prefix})
	b := startServe(t, serveEnv(t, db), ServeOptions{RedisPrefix: prefix})
	_, _, key := a.newTierUser("five", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 5 })
	ua, ub := a.client(key), b.client(key)
	hello := testmodule.Read(t, "hello.wasm")

	// Alternate replicas: the remaining count goes down across both.
	replicas := []*client.Client{ua, ub, ua, ub, ua}
	for i, c := range replicas {
		ex, err := c.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: hello})
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if ex.RateLimit.Remaining != int64(4-i) {
			t.Fatalf("run %d: remaining %d, want %d (the replicas do not share counts)", i+1, ex.RateLimit.Remaining, 4-i)
		}
	}
	for name, c := range map[string]*client.Client{"a": ua, "b": ub} {
		_, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		wantCode(t, "sixth run on replica "+name, err, wasmwiz.ERATELIMIT)
	}
	// A tier change made through replica a applies to the next request on
	// replica b: one more run, then the new limit.
	a.putTier(testTier("five", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 6 }))
	ex, err := ub.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: hello})
	if err != nil || ex.RateLimit.Limit != 6 || ex.RateLimit.Remaining != 0 {
		t.Fatalf("on b after the tier change on a: %+v, %v", ex, err)
	}
	_, err = ua.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	wantCode(t, "seventh run", err, wasmwiz.ERATELIMIT)
	wantNoFallback(t, a, b)
}

// TestServeRedisOutage: Redis goes away mid-test (a TCP proxy in front of
// it stops): no request fails, the in-memory fallback decides, /readyz
// (redis and cache checks) and the metrics say so; a key revoked on a
// second replica during the outage is refused here; when Redis is back,
// Redis decides again.
func TestServeRedisOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, redisURL := tcpproxy.ForURL(t, testenv.RedisURL(t))
	env := serveEnv(t, postgresEnv(t, redisURL))
	opts := ServeOptions{RedisPrefix: randomPrefix()}
	s := startServe(t, env, opts)
	other := startServe(t, env, opts) // the replica where the key is revoked
	user, _, _ := s.newUser(wasmwiz.TierPro)
	doomed, _, doomedKey := s.newUser(wasmwiz.TierPro)
	hello := testmodule.Read(t, "hello.wasm")
	run := func(what string) {
		t.Helper()
		res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		if err != nil || res.Status != api.StatusOK {
			t.Fatalf("%s: %+v, %v", what, res, err)
		}
	}
	for i := 0; i < 3; i++ {
		run("with Redis up")
	}

	if st := s.srv.LimiterStats(); st.Fallback != 0 || st.FallbackActive || st.Allowed != 3 {
		t.Fatalf("before the outage: %+v", st)
	}

	p.Stop()
	for i := 0; i < 5; i++ {
		run("with Redis down")
	}
	st := s.srv.LimiterStats()
	if !st.FallbackActive || st.Fallback < 5 {
		t.Fatalf("during the outage: %+v", st)
	}
	rd, err := s.client("").Ready(ctx)
	if err != nil || rd.Ready || rd.Checks["redis"] != "down" || rd.Checks["cache"] != "down" || rd.Checks["database"] != "ok" {
		t.Fatalf("/readyz during the outage: %+v, %v", rd, err)
	}
	// Revoked on the other replica while Redis is away: s, which cached
	// the key during the outage, refuses it soon after (the replicas read
	// the database's cache epoch while Redis cannot carry it, and cached
	// entries live at most DefaultFallbackMaxAge meanwhile).
	if _, err := doomed.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("the doomed key during the outage: %v", err)
	}
	keys, _, err := other.client(doomedKey).ListKeys(ctx, false, client.Page{})
	if err != nil || len(keys) != 1 {
		t.Fatalf("ListKeys: %v, %v", keys, err)
	}
	if err := other.client(doomedKey).RevokeKey(ctx, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	poll(t, "the key revoked on the other replica to be refused here", func() bool {
		_, err := doomed.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		return codeOf(err) == wasmwiz.EUNAUTHORIZED
	})
	metrics, err := s.client("").Metrics(ctx)
	if err != nil || !strings.Contains(metrics, "wasmwiz_ratelimit_fallback_active 1") || !strings.Contains(metrics, "wasmwiz_ratelimit_fallbacks_total 1") {
		t.Fatalf("metrics during the outage lack the fallback: %v", err)
	}

	p.Start()
	poll(t, "Redis to decide again", func() bool {
		run("with Redis back")
		return !s.srv.LimiterStats().FallbackActive
	})
	before := s.srv.LimiterStats().Fallback
	run("after the outage")
	if st := s.srv.LimiterStats(); st.Fallback != before || st.FallbackActive {
		t.Fatalf("after the outage the fallback still decides: %+v", st)
	}
	// /readyz answers from its last round for a second.
	testenv.WaitFor(t, "/readyz to be ready after the outage", func() bool {
		rd, err := s.client("").Ready(ctx)
		return err == nil && rd.Ready && rd.Checks["cache"] == "ok"
	})
	if m, _ := s.client("").Metrics(ctx); !strings.Contains(m, "wasmwiz_ratelimit_fallback_active 0") {
		t.Fatalf("metrics after the outage still show the fallback")
	}
	if res, _ := testenv.Do(t, http.MethodGet, s.url+"/healthz", "", "", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", res.StatusCode)
	}
}

// TestServeDatabaseOutage: PostgreSQL goes away (a proxy in front of it
// stops): /readyz says which dependency is down, requests answer 503
// EUNAVAILABLE (not 401 or 500), and everything works again when it is back.
func TestServeDatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, databaseURL := tcpproxy.ForURL(t, pgtest.Schema(t))
	s := startServe(t, serveEnv(t, map[string]string{"WASMWIZ_DATABASE_URL": databaseURL}), ServeOptions{})
	user, _, _ := s.newUser(wasmwiz.TierBasic)
	hello := testmodule.Read(t, "hello.wasm")
	if _, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("before the outage: %v", err)
	}

	p.Stop()
	rd, err := s.client("").Ready(ctx)
	if err != nil || rd.Ready || rd.Checks["database"] != "down" || rd.Checks["workers"] != "ok" {
		t.Fatalf("/readyz with the database down: %+v, %v", rd, err)
	}
	_, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	wantCode(t, "execute with the database down", err, wasmwiz.EUNAVAILABLE)
	if client.StatusCode(err) != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", client.StatusCode(err))
	}
	if err := s.client("").Health(ctx); err != nil {
		t.Fatalf("/healthz with the database down: %v (the process is alive)", err)
	}

	p.Start()
	poll(t, "the database to be back", func() bool {
		rd, err := s.client("").Ready(ctx)
		return err == nil && rd.Ready
	})
	res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	if err != nil || res.Status != api.StatusOK {
		t.Fatalf("after the outage: %+v, %v", res, err)
	}
	poll(t, "the runs to be written", func() bool {
		_, total, err := user.ListRuns(ctx, client.RunQuery{Status: api.StatusOK})
		return err == nil && total.Count == 2
	})
}

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
		poll(t, "a run of the single-slot tier after the hang", func() bool {
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
		poll(t, "the record of "+ans.what, func() bool {
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
	poll(t, "the record of the admitted run the hang failed", func() bool {
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
		poll(t, "Redis to decide again", func() bool {
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

// TestServeSQLiteWaitBounded: serve on SQLite with WASMWIZ_DATABASE_TIMEOUT
// 1s while another process holds the file's write lock (as the admin CLI
// may): a user's write answers 503 EUNAVAILABLE with Retry-After at the
// timeout, before SQLite's busy timeout (10 s) would have ended the wait,
// and reads go on; once the lock is released, the write goes through.
func TestServeSQLiteWaitBounded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wasmwiz.db")
	s := startServe(t, serveEnv(t, map[string]string{"WASMWIZ_DATABASE_URL": path, "WASMWIZ_DATABASE_TIMEOUT": "1s"}), ServeOptions{})
	user, _, _ := s.newUser(wasmwiz.TierFree)
	setupRetry(t, "a read before the lock", func() error { // the key's last use is written now, not under the lock
		_, err := user.Me(context.Background())
		return err
	})

	locker, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	// Below the busy timeout: a write that waited for it fails here, with
	// no answer, instead of answering 503.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	_, err = user.CreateKey(ctx, "under the lock", nil)
	if d, ok := client.RetryAfter(err); client.StatusCode(err) != http.StatusServiceUnavailable || codeOf(err) != wasmwiz.EUNAVAILABLE || !ok || d <= 0 {
		t.Fatalf("a write while another process holds the lock: %v, want 503 EUNAVAILABLE with Retry-After", err)
	}
	if _, _, err := user.ListKeys(ctx, false, client.Page{}); err != nil {
		t.Fatalf("a read while another process holds the write lock: %v", err)
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	setupRetry(t, "a write after the lock", func() error {
		_, err := user.CreateKey(context.Background(), "after the lock", nil)
		return err
	})
}

// TestSQLiteReadersOutnumberOneUser: the SQLite store has, beside what a
// user at its WASMWIZ_MAX_USER_REQUESTS bound can hold (two readers a
// request), its default number of readers, up to the pool's cap; with no
// bound the pool is at its cap.
func TestSQLiteReadersOutnumberOneUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ bound, want int }{
		{1, sqlite.DefaultReaders() + 2},
		{wwhttp.DefaultMaxUserRequests, sqlite.DefaultReaders() + 2*wwhttp.DefaultMaxUserRequests},
		{100, maxSQLiteReaders},
		{0, maxSQLiteReaders},
	} {
		if got := sqliteReaders(&Config{MaxUserRequests: tc.bound}); got != min(tc.want, maxSQLiteReaders) {
			t.Errorf("WASMWIZ_MAX_USER_REQUESTS %d: %d readers, want %d", tc.bound, got, min(tc.want, maxSQLiteReaders))
		}
	}
}

// warm runs req on c until the replica answered it from its cache (its
// cache hits grew), so that what the test then changes elsewhere is
// something the replica really holds: the test cannot pass by reading the
// database every time.
func warm(t *testing.T, s *e2eServer, what string, run func() error) {
	t.Helper()
	before := s.srv.CacheStats().Hits
	poll(t, what+" to be served from the cache", func() bool {
		if err := run(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s.srv.CacheStats().Hits > before
	})
}

// TestServeCacheTwoReplicas: two replicas on one PostgreSQL and one Redis
// cache keys, tiers and modules, and still every change made through one
// applies to the very next request on the other (issue 10's promises):
// a revoked key, a disabled user, a tier edited (quotas and limits), a user
// moved to another tier, a module made private, renamed or deleted.
func TestServeCacheTwoReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[1].env(t) // shared by both replicas
	prefix := randomPrefix()
	// The epoch loop, which repairs lost publications, must not be what
	// makes this test pass: an hour.
	opts := ServeOptions{RedisPrefix: prefix, EpochInterval: time.Hour}
	a := startServe(t, serveEnv(t, db), opts)
	b := startServe(t, serveEnv(t, db), opts)
	admin := a.admin()
	echo := testmodule.Read(t, "echo.wasm")
	run := func(c *client.Client, stdin string) error {
		res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte(stdin)})
		if err == nil && string(res.Stdout) != strings.TrimSpace(stdin) {
			t.Fatalf("echo answered %q", res.Stdout)
		}
		return err
	}

	// A change made on a to a user that b has cached applies to the user's
	// very next request on b. (The tier a user moves to is there before the
	// user is cached: only the move is new to b.)
	small := testTier("small-"+randomPrefix()[6:12], func(tr *wasmwiz.Tier) { tr.MaxStdinBytes = 4 })
	a.putTier(small)
	for _, tt := range []struct {
		name   string
		stdin  string // what the user runs, within its tier before the change
		change func(t *testing.T, c *client.Client, u *api.User)
		want   string // the code of the next request on b
	}{
		{"revoked key", "hi", func(t *testing.T, c *client.Client, _ *api.User) {
			keys, _, err := c.ListKeys(ctx, false, client.Page{})
			if err != nil || len(keys) != 1 {
				t.Fatalf("ListKeys: %v, %v", keys, err)
			}
			if err := c.RevokeKey(ctx, keys[0].ID); err != nil {
				t.Fatal(err)
			}
		}, wasmwiz.EUNAUTHORIZED},
		{"disabled user", "hi", func(t *testing.T, _ *client.Client, u *api.User) {
			yes := true
			if _, err := admin.AdminUpdateUser(ctx, u.ID, api.UserUpdate{Disabled: &yes}); err != nil {
				t.Fatal(err)
			}
		}, wasmwiz.EUNAUTHORIZED},
		{"user moved to another tier", "hello", func(t *testing.T, _ *client.Client, u *api.User) {
			if _, err := admin.AdminUpdateUser(ctx, u.ID, api.UserUpdate{Tier: &small.Name}); err != nil {
				t.Fatal(err)
			}
		}, wasmwiz.ETOOLARGE},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, u, key := a.newUser(wasmwiz.TierPro)
			ub := b.client(key)
			warm(t, b, "the user on b", func() error { return run(ub, tt.stdin) })
			tt.change(t, c, u)
			wantCode(t, "the next request on b after the change on a", run(ub, tt.stdin), tt.want)
		})
	}

	t.Run("tier edited", func(t *testing.T) {
		tier := testTier("edited-"+randomPrefix()[6:12], func(tr *wasmwiz.Tier) { tr.MaxStdinBytes = 8 })
		a.putTier(tier)
		_, _, key := a.newUser(tier.Name)
		ub := b.client(key)
		warm(t, b, "the tier on b", func() error { return run(ub, "short") })
		wantCode(t, "stdin over the tier's 8 bytes", run(ub, "more than eight bytes"), wasmwiz.ETOOLARGE)

		// Raised stdin: the very next request on b may send more.
		tier.Limits["max_stdin_bytes"], tier.Limits["runs_per_minute"] = 64, 1000
		a.putTier(tier)
		ex, err := ub.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("more than eight bytes")})
		if err != nil || ex.RateLimit.Limit != 1000 {
			t.Fatalf("the next request on b after the tier was edited on a: %+v, %v", ex, err)
		}
		tier.Limits["runs_per_minute"] = 3
		a.putTier(tier)
		ex, err = ub.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("x")})
		if err == nil && ex.RateLimit.Limit != 3 {
			t.Fatalf("on b after the quota was lowered on a: limit %d, want 3", ex.RateLimit.Limit)
		}
		wantCode(t, "on b after the quota was lowered below the runs made", err, wasmwiz.ERATELIMIT)
	})

	t.Run("module made private, renamed, deleted", func(t *testing.T) {
		owner, _, _ := a.newUser(wasmwiz.TierPro)
		_, _, otherKey := a.newUser(wasmwiz.TierPro)
		yes, no := true, false
		m, err := owner.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "args_env.wasm"), Name: "first.wasm", Public: true})
		if err != nil {
			t.Fatal(err)
		}
		ob := b.client(otherKey)
		runStored := func() (string, error) {
			ex, err := ob.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{})
			if err != nil {
				return "", err
			}
			return string(ex.Result.Stdout), nil
		}
		warm(t, b, "the public module on b", func() error { _, err := runStored(); return err })
		name := "second.wasm"
		if _, err := owner.UpdateModule(ctx, m.ID, api.ModuleUpdate{Name: &name}); err != nil {
			t.Fatal(err)
		}
		if out, err := runStored(); err != nil || !strings.Contains(out, "argv[0]="+name) {
			t.Fatalf("on b after the module was renamed on a: %q, %v", out, err)
		}
		if _, err := owner.UpdateModule(ctx, m.ID, api.ModuleUpdate{Public: &no}); err != nil {
			t.Fatal(err)
		}
		_, err = runStored()
		wantCode(t, "another user's next request on b, the module made private on a", err, wasmwiz.ENOTFOUND)
		if _, err := owner.UpdateModule(ctx, m.ID, api.ModuleUpdate{Public: &yes}); err != nil {
			t.Fatal(err)
		}
		if _, err := runStored(); err != nil {
			t.Fatalf("on b after the module was made public again on a: %v", err)
		}
		if err := owner.DeleteModule(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
		_, err = runStored()
		wantCode(t, "the next request on b, the module deleted on a", err, wasmwiz.ENOTFOUND)
	})

	wantNoFallback(t, a, b)
}

// TestServeCacheAdminCLI: a change made with the admin CLI, which acts on
// the database and publishes the epoch to Redis itself, applies to the next
// request on a replica that cached what changed.
func TestServeCacheAdminCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The CLI publishes under the default key prefix: a Redis database of
	// this test's own (as TestServeProcessesShareRedis has 11).
	db := postgresEnv(t, redisDB(t, 12))
	s := startServe(t, serveEnv(t, db), ServeOptions{RedisPrefix: "wasmwiz:rl:", EpochInterval: time.Hour})
	tier := "cli-" + randomPrefix()[6:12]
	u, me, key := s.newTierUser(tier, nil)
	echo := testmodule.Read(t, "echo.wasm")
	run := func() (*client.Execution, error) {
		return u.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("hi")})
	}
	warm(t, s, "the key", func() error { _, err := run(); return err })

	cli := func(args ...string) {
		t.Helper()
		code, out, errOut := runMain(args, "", db)
		if code != 0 || strings.Contains(errOut, "note:") {
			t.Fatalf("wasmwiz %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	cli("tiers", "set", tier, "--runs-per-minute", "77")
	if ex, err := run(); err != nil || ex.RateLimit.Limit != 77 {
		t.Fatalf("the next request after `wasmwiz tiers set`: %+v, %v", ex, err)
	}
	cli("users", "disable", strconv.FormatInt(me.ID, 10))
	_, err := run()
	wantCode(t, "the next request after `wasmwiz users disable`", err, wasmwiz.EUNAUTHORIZED)
	_ = key
}

// TestServeCacheEmbedded: one replica on SQLite without Redis caches too,
// and a change through its API applies to its next request (invalidated
// in process); one made by the admin CLI on the same database within its
// epoch interval.
func TestServeCacheEmbedded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := serveEnv(t, backends[0].env(t))
	s := startServe(t, env, ServeOptions{EpochInterval: 20 * time.Millisecond})
	echo := testmodule.Read(t, "echo.wasm")
	u, _, _ := s.newUser(wasmwiz.TierPro)
	run := func(c *client.Client) error {
		_, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("hi")})
		return err
	}
	warm(t, s, "the key", func() error { return run(u) })
	keys, _, err := u.ListKeys(ctx, false, client.Page{})
	if err != nil || len(keys) != 1 {
		t.Fatalf("ListKeys: %v, %v", keys, err)
	}
	if err := u.RevokeKey(ctx, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "the next request with the key revoked", run(u), wasmwiz.EUNAUTHORIZED)

	v, me, _ := s.newUser(wasmwiz.TierPro)
	warm(t, s, "another key", func() error { return run(v) })
	code, out, errOut := runMain([]string{"users", "disable", strconv.FormatInt(me.ID, 10)}, "", env)
	if code != 0 {
		t.Fatalf("wasmwiz users disable: exit %d\n%s%s", code, out, errOut)
	}
	poll(t, "the user disabled by the CLI to be refused", func() bool {
		return codeOf(run(v)) == wasmwiz.EUNAUTHORIZED
	})
}
