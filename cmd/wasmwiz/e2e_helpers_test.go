package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// e2eServer is a real `wasmwiz serve` running in this process on 127.0.0.1:0,
// its guests in worker processes re-executed from the test binary.
type e2eServer struct {
	serverAPI
	srv      *Server
	stderr   *testenv.Buffer
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// serverAPI is a server under test as its callers see it, in this process
// (e2eServer) or a child process (processAPI): where it listens and the
// admin key it printed, which its methods use through the API.
type serverAPI struct {
	t        testing.TB
	url      string
	adminKey string // printed at bootstrap; "" when the database had users
	stdout   *testenv.Buffer
}

// processAPI is the API of the serve process p.
func processAPI(t testing.TB, p *testenv.ServeProcess) *serverAPI {
	return &serverAPI{t: t, url: p.URL, adminKey: keyPattern.FindString(p.Stdout.String()), stdout: p.Stdout}
}

// backend is a database (and optionally Redis) a server runs on.
type backend struct {
	name string
	// env returns the variables that select the backend for one test; two
	// calls in one test may share a database by passing the same result.
	env func(t *testing.T) map[string]string
}

// backends are SQLite (always) and PostgreSQL with Redis (when the test
// services are configured; skipped with the reason otherwise).
var backends = []backend{
	{"sqlite", func(t *testing.T) map[string]string {
		return map[string]string{"WASMWIZ_DATABASE_URL": filepath.Join(t.TempDir(), "wasmwiz.db")}
	}},
	{"postgres+redis", func(t *testing.T) map[string]string { return postgresEnv(t, testenv.RedisURL(t)) }},
}

// postgresEnv selects a PostgreSQL schema of the test's own and the Redis
// at redisURL, with a Redis timeout no loaded machine reaches: a fallback
// would count apart from Redis, and the tests on Redis are about its
// counts (an outage test stops Redis, which then refuses at once).
func postgresEnv(t testing.TB, redisURL string) map[string]string {
	return map[string]string{"WASMWIZ_DATABASE_URL": pgtest.Schema(t), "WASMWIZ_REDIS_URL": redisURL, "WASMWIZ_REDIS_TIMEOUT": "5s"}
}

// onEveryBackend runs test on each backend, each in a parallel subtest of
// the parallel test t.
func onEveryBackend(t *testing.T, test func(t *testing.T, be backend)) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			test(t, be)
		})
	}
}

// serve starts a server on a database (and Redis) of the backend of its
// own, with the test defaults (serveEnv, ServeOptions{}).
func (be backend) serve(t *testing.T) *e2eServer {
	t.Helper()
	return be.serveWith(t, nil, ServeOptions{})
}

// serveWith starts a server on a database (and Redis) of the backend of
// its own, with vars over the test defaults (serveEnv) and opts.
func (be backend) serveWith(t *testing.T, vars map[string]string, opts ServeOptions) *e2eServer {
	t.Helper()
	return startServe(t, serveEnv(t, be.env(t), vars), opts)
}

// randomPrefix is a Redis key prefix of one test, so that tests sharing a
// Redis never count each other's events.
func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "wwe2e:" + hex.EncodeToString(b[:]) + ":"
}

// redisDB returns the URL of database n of the test Redis: a database of one
// test's own, for a program that uses the default key prefix. Each such
// test has its number.
func redisDB(t *testing.T, n int) string {
	t.Helper()
	u, err := url.Parse(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + strconv.Itoa(n)
	return u.String()
}

// emptyRedisDB is redisDB emptied of the limiter's keys that earlier runs
// left: user ids repeat per schema.
func emptyRedisDB(t *testing.T, n int) string {
	t.Helper()
	u := redisDB(t, n)
	rc, err := redis.NewClient(u)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, redis.DefaultPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := rc.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// serveEnv is the environment of a test server: loopback, port 0, two
// workers, quiet logs, a data directory of its own, then each of vars in
// turn (a backend's variables, then what the test changes).
func serveEnv(t testing.TB, vars ...map[string]string) map[string]string {
	env := map[string]string{
		"WASMWIZ_ADDR":      "127.0.0.1:0",
		"WASMWIZ_DATA_DIR":  t.TempDir(),
		"WASMWIZ_WORKERS":   "2",
		"WASMWIZ_LOG_LEVEL": "warn",
		// testenv.WaitFor polls every 5ms, and the tests' admin creates
		// users in loops: far past the default 20 requests a second of one
		// user. TestServeUserRequestsBounded sets the bound it tests.
		"WASMWIZ_USER_REQUEST_RATE": "1000",
	}
	for _, v := range vars {
		maps.Copy(env, v)
	}
	return env
}

// testServeOptions start workers from the test binary (see TestMain).
func testServeOptions() ServeOptions {
	return ServeOptions{
		WorkerCommand: workerChild.Argv(),
		WorkerEnv:     []string{workerChild.Env()},
		RedisPrefix:   randomPrefix(),
	}
}

// startServe runs Serve with env until the test ends (or stop), and
// returns once it listens.
func startServe(t testing.TB, env map[string]string, opts ServeOptions) *e2eServer {
	t.Helper()
	if opts.WorkerCommand == nil {
		def := testServeOptions()
		opts.WorkerCommand, opts.WorkerEnv = def.WorkerCommand, def.WorkerEnv
		if opts.RedisPrefix == "" {
			opts.RedisPrefix = def.RedisPrefix
		}
	}
	s := &e2eServer{serverAPI: serverAPI{t: t, stdout: &testenv.Buffer{}}, stderr: &testenv.Buffer{}, done: make(chan error, 1)}
	listening := make(chan *Server, 1)
	opts.Listening = func(srv *Server) { listening <- srv }
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	e := &Env{Stdin: strings.NewReader(""), Stdout: s.stdout, Stderr: s.stderr, Getenv: func(k string) string { return env[k] }}
	go func() { s.done <- Serve(ctx, e, opts) }()
	select {
	case s.srv = <-listening:
	case err := <-s.done:
		cancel()
		t.Fatalf("serve ended before listening: %v\nstdout: %s\nstderr: %s", err, s.stdout, s.stderr)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatalf("serve did not listen\nstderr: %s", s.stderr)
	}
	s.url = s.srv.URL()
	if m := keyPattern.FindString(s.stdout.String()); m != "" {
		s.adminKey = m
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("serve: %v\nstderr: %s", err, s.stderr)
		}
	})
	return s
}

// stop cancels the server's context and waits for Run to return.
func (s *e2eServer) stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		select {
		case s.stopErr = <-s.done:
		case <-time.After(2 * time.Minute):
			s.stopErr = errors.New("serve did not stop within 2 minutes")
		}
	})
	return s.stopErr
}

// client returns a client of the server with key.
func (s *serverAPI) client(key string) *client.Client {
	s.t.Helper()
	c, err := client.New(s.url, key)
	if err != nil {
		s.t.Fatalf("client.New: %v", err)
	}
	return c
}

// admin returns a client with the bootstrap admin's key.
func (s *serverAPI) admin() *client.Client {
	s.t.Helper()
	if s.adminKey == "" {
		s.t.Fatalf("serve printed no admin key\nstdout: %s", s.stdout)
	}
	return s.client(s.adminKey)
}

// newUser creates a user on tier with a key, through the admin API.
func (s *serverAPI) newUser(tier string) (*client.Client, *api.User, string) {
	s.t.Helper()
	var cu *api.CreatedUser
	setupRetry(s.t, "AdminCreateUser", func() (err error) {
		// A new address each attempt: an attempt answered 503 may still
		// have committed its user.
		var b [4]byte
		_, _ = rand.Read(b[:])
		cu, err = s.admin().AdminCreateUser(context.Background(),
			api.UserRequest{Email: "user-" + hex.EncodeToString(b[:]) + "@example.com", Tier: tier, CreateKey: true})
		return err
	})
	return s.client(cu.Secret), cu.User, cu.Secret
}

// newTierUser puts the tier testTier(name, f) through the admin API and
// creates a user on it, as newUser.
func (s *serverAPI) newTierUser(name string, f func(*wasmwiz.Tier)) (*client.Client, *api.User, string) {
	s.t.Helper()
	s.putTier(testTier(name, f))
	return s.newUser(name)
}

// putTier creates or replaces a tier through the admin API.
func (s *serverAPI) putTier(tier *api.Tier) {
	s.t.Helper()
	setupRetry(s.t, "AdminPutTier "+tier.Name, func() error {
		_, err := s.admin().AdminPutTier(context.Background(), tier)
		return err
	})
}

// setupRetry runs a test's setup call until it succeeds, again while the
// server answers EUNAVAILABLE (for at most 30 s), and fails t on any other
// error. Some tests give the server a database timeout of a second
// (TestServeDatabaseHang), which a loaded machine can pass on an ordinary
// write: the server then rightly answers 503 and the setup asks again.
func setupRetry(t testing.TB, what string, call func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := call()
		if err == nil {
			return
		}
		if codeOf(err) != wasmwiz.EUNAVAILABLE || time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v; asking again", what, err)
		time.Sleep(100 * time.Millisecond)
	}
}

// poll is testenv.WaitFor for a condition that asks a server (a run's
// record, usage, a run that waits for a cache to let go): after its first
// tries it waits longer between them, up to pollMax, so that a wait of
// seconds (heartbeats going stale, a usage batch, a cache's lifetime) does
// not spend the machine on hundreds of requests and runs. Every state a
// test waits for this way lasts far longer than pollMax.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	var pause time.Duration
	testenv.WaitFor(t, what, func() bool {
		time.Sleep(pause)
		pause = min(pause+pause/2+time.Millisecond, pollMax)
		return cond()
	})
}

// pollMax is the longest poll waits between two tries (besides WaitFor's
// own 5 ms).
const pollMax = 45 * time.Millisecond

// codeOf returns the code of an error of the client or of the program.
func codeOf(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return wasmwiz.ErrorCode(err)
}

// messageOf returns the message of an error of the client or of the
// program.
func messageOf(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	return wasmwiz.ErrorMessage(err)
}

// wantCode fails the test unless err carries code.
func wantCode(t testing.TB, what string, err error, code string) {
	t.Helper()
	if got := codeOf(err); got != code {
		t.Fatalf("%s: error %v (code %q), want %s", what, err, got, code)
	}
}

// wantNoFallback fails the test if a server's rate limiter fell back from
// Redis, which is up.
func wantNoFallback(t *testing.T, servers ...*e2eServer) {
	t.Helper()
	for _, s := range servers {
		if st := s.srv.LimiterStats(); st.Fallback != 0 || st.FallbackActive {
			t.Fatalf("limiter fell back with Redis up: %+v", st)
		}
	}
}

// timedHellos runs hello (hello.wasm) n times as c, one after another,
// adding each run's time to took: the other tenant, whose runs must
// complete while a test attacks the server. It returns the first run that
// failed or did not print its greeting.
func timedHellos(ctx context.Context, c *client.Client, hello []byte, n int, took *testenv.Latencies) error {
	for i := range n {
		start := time.Now()
		res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		took.Since(start)
		if err != nil {
			return fmt.Errorf("hello %d: %w", i+1, err)
		}
		if res.Status != api.StatusOK || string(res.Stdout) != "Hello, World!\n" {
			return fmt.Errorf("hello %d: %+v", i+1, res)
		}
	}
	return nil
}

// meanwhile runs attack in a goroutine of its own while other runs hello
// (hello.wasm) one run after another, each of which must succeed: the
// other tenant, whose runs must complete while a test attacks the server.
// It returns how long attack took and the other tenant's latencies; an
// error from attack fails the test, named by what.
func meanwhile(t *testing.T, ctx context.Context, other *client.Client, hello []byte, what string, attack func() error) (time.Duration, *testenv.Latencies) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	var took time.Duration
	go func() {
		err := attack()
		took = time.Since(start)
		done <- err
	}()
	var hellos testenv.Latencies
	for {
		start := time.Now()
		res, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		hellos.Since(start)
		if err != nil || res.Status != api.StatusOK {
			t.Fatalf("%s: the other tenant's hello: %+v, %v", what, res, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			return took, &hellos
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// otherTenant makes the tenant whose hello worlds must complete while a
// test attacks the server, and runs its first; it returns the tenant and
// hello.wasm.
func otherTenant(t *testing.T, ctx context.Context, s *e2eServer) (*client.Client, []byte) {
	t.Helper()
	other, _, _ := s.newUser(wasmwiz.TierPro)
	hello := testmodule.Read(t, "hello.wasm")
	if _, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("hello before the attacks: %v", err)
	}
	return other, hello
}

// testTier is a tier with generous limits, changed by f, as the admin API
// takes it.
func testTier(name string, f func(*wasmwiz.Tier)) *api.Tier {
	t := &wasmwiz.Tier{Name: name, RunsPerMinute: 1000, RunsPerDay: 100000, MaxConcurrent: 10, Limits: wasmwiz.Limits{MaxMemoryBytes: 64 * wasmwiz.MiB, Timeout: 30 * time.Second, MaxModuleBytes: 10 * wasmwiz.MiB, MaxStdinBytes: wasmwiz.MiB, MaxOutputBytes: wasmwiz.MiB,
		MaxFilesInBytes: wasmwiz.MiB, MaxFiles: 100, MaxFileWriteBytes: 16 * wasmwiz.MiB, MaxFilesOutBytes: wasmwiz.MiB}, AsyncTimeout: time.Minute,
		MaxStoredModules: 1000, MaxStoredModuleBytes: wasmwiz.GiB, MaxStoredRunBytes: wasmwiz.GiB}
	if f != nil {
		f(t)
	}
	out := &api.Tier{Name: t.Name, Limits: map[string]int64{}}
	for _, tf := range wasmwiz.TierFields() {
		out.Limits[tf.Name] = tf.ToStored(tf.Get(t))
	}
	return out
}
