package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/engine"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
)

// benchModule is the tiny WASI command every target runs: it writes
// "hello\n" to stdout (bench.wat, built with wat2wasm).
//
//go:embed bench.wasm
var benchModule []byte

// benchOptions are what tests change about `wasmwiz bench`.
type benchOptions struct {
	serve ServeOptions
}

func cmdBench(ctx context.Context, env *Env, args []string) error {
	return runBench(ctx, env, args, benchOptions{})
}

// benchFigures are one round of one target.
type benchFigures struct {
	requests int
	elapsed  time.Duration
	lat      []time.Duration // sorted
}

func (f *benchFigures) rps() float64 { return float64(f.requests) / f.elapsed.Seconds() }

// benchTarget is one target and its rounds.
type benchTarget struct {
	name, url, key string
	rounds         []*benchFigures
	lat            []time.Duration // every measured request, sorted at the end
	cpu            benchCPU        // over the measured rounds
}

// best and median are the round with the most and the median requests per
// second.
func (t *benchTarget) best() float64 {
	return slices.MaxFunc(t.rounds, func(a, b *benchFigures) int { return cmpFloat(a.rps(), b.rps()) }).rps()
}

func (t *benchTarget) median() float64 {
	r := make([]float64, len(t.rounds))
	for i, f := range t.rounds {
		r[i] = f.rps()
	}
	slices.Sort(r)
	if n := len(r); n%2 == 0 {
		return (r[n/2-1] + r[n/2]) / 2
	}
	return r[len(r)/2]
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pct returns the p-quantile of sorted latencies.
func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(p*float64(len(lat))))]
}

func runBench(ctx context.Context, env *Env, args []string, bo benchOptions) error {
	fs := newFlagSet(env, "bench", `usage: wasmwiz bench [flags]

Measures, on loopback and in one process, requests per second of:
  bare        a net/http handler answering a small JSON body
  raw-wazero  a handler that runs a tiny WASI module on wazero in-process
  full-stack  warm execute of the same module, stored, through serve: auth,
              rate limiter, usage records, worker pool (the configured
              database and Redis, WASMWIZ_*).
The targets take turns in every round, so that the machine's load falls on
all three alike; each is reported by its best and median round, with the
p50 and p99 latency of all its measured requests, and the CPU time per
request of each process that serves it (this one, the workers, Redis, and
PostgreSQL when it is on this machine). For the full stack it also counts
the database transactions (PostgreSQL) and Redis commands per request, and
times each step of one request alone.
The full stack adds a tier "bench" and a user to the configured database.`)
	var (
		requests    = fs.Int("requests", 5000, "requests per target and round (after the warm-up)")
		warmup      = fs.Int("warmup", 500, "warm-up requests per target, not measured")
		concurrency = fs.String("concurrency", "4,16", "clients sending at once; a comma-separated list measures each in turn")
		rounds      = fs.Int("rounds", 3, "rounds; the targets take turns in each")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of this process during the full stack's measured requests to this file")
		steps       = fs.Int("steps", 500, "calls per step of the full stack's per-request cost breakdown (0: none)")
	)
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	var clients []int
	for _, c := range strings.Split(*concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fs.usageError("--concurrency must be whole numbers of at least 1, comma-separated")
		}
		clients = append(clients, n)
	}
	if *requests < 1 || *rounds < 1 || *warmup < 0 {
		return fs.usageError("--requests and --rounds must be at least 1, --warmup at least 0")
	}

	// bare
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok","stdout":"hello\n"}`)
	})}
	bareURL, stopBare, err := serveLoopback(bare)
	if err != nil {
		return err
	}
	defer stopBare()

	// raw wazero
	rawH, closeRaw, err := rawWazeroHandler(ctx)
	if err != nil {
		return err
	}
	defer closeRaw()
	rawURL, stopRaw, err := serveLoopback(&http.Server{Handler: rawH})
	if err != nil {
		return err
	}
	defer stopRaw()

	// full stack
	full, err := startBenchServer(ctx, env, bo)
	if err != nil {
		return err
	}
	defer full.stop()

	maxClients := slices.Max(clients)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: maxClients * 2, MaxConnsPerHost: maxClients * 2}}
	defer hc.CloseIdleConnections()

	cpu := cpuModel()
	fmt.Fprintf(env.Stdout, "wasmwiz bench: %s, %d requests per target and round after %d warm-up, %d rounds, targets taking turns\n",
		time.Now().UTC().Format("2006-01-02"), *requests, *warmup, *rounds)
	fmt.Fprintf(env.Stdout, "machine: %d cores, %s; database %s, limiter %s\n", runtime.NumCPU(), cpu, full.database(), full.limiterKind())

	profiled := false
	for _, c := range clients {
		targets := []*benchTarget{
			{name: "bare", url: bareURL + "/"},
			{name: "raw-wazero", url: rawURL + "/"},
			{name: "full-stack", url: full.url, key: full.key},
		}
		var counted benchCounters
		for round := 0; round < *rounds; round++ {
			for _, tg := range targets {
				send := func() error { return benchRequest(ctx, hc, tg) }
				if round == 0 {
					if _, err := load(ctx, *warmup, c, send); err != nil {
						return fmt.Errorf("warm-up of %s: %w", tg.name, err)
					}
				}
				isFull := tg.name == "full-stack"
				profile := *cpuProfile != "" && isFull && !profiled
				if profile {
					pf, err := os.Create(*cpuProfile)
					if err != nil {
						return err
					}
					if err := pprof.StartCPUProfile(pf); err != nil {
						pf.Close()
						return err
					}
					defer pf.Close()
				}
				var before benchCounters
				if isFull {
					before = full.counters(ctx)
				}
				cpuBefore := full.cpu(ctx)
				f, err := load(ctx, *requests, c, send)
				tg.cpu = tg.cpu.add(full.cpu(ctx).sub(cpuBefore))
				if profile {
					pprof.StopCPUProfile()
					profiled = true
				}
				if err != nil {
					return fmt.Errorf("%s: %w", tg.name, err)
				}
				if isFull {
					counted = counted.add(full.counters(ctx).sub(before))
				}
				tg.rounds = append(tg.rounds, f)
				tg.lat = append(tg.lat, f.lat...)
			}
		}
		fmt.Fprintf(env.Stdout, "\n%d clients:\n", c)
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target\tbest req/s\tmedian req/s\tp50\tp99\tbest vs raw-wazero\tmedian vs raw-wazero\t")
		raw := targets[1]
		for _, tg := range targets {
			slices.Sort(tg.lat)
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%.2f\t%.2f\t\n", tg.name, tg.best(), tg.median(),
				pct(tg.lat, 0.5).Round(time.Microsecond), pct(tg.lat, 0.99).Round(time.Microsecond),
				tg.best()/raw.best(), tg.median()/raw.median())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		n := float64(*requests * *rounds)
		if err := printCPU(env.Stdout, targets, n); err != nil {
			return err
		}
		if counted.pg >= 0 {
			fmt.Fprintf(env.Stdout, "full stack, per request: %.3f PostgreSQL transactions (pg_stat_database)\n", float64(counted.pg)/n)
		}
		if counted.redis >= 0 {
			fmt.Fprintf(env.Stdout, "full stack, per request: %.3f Redis commands sent (INFO commandstats: scripts and connection commands)\n", float64(counted.redis)/n)
		}
	}
	if *steps > 0 {
		return full.breakdown(ctx, env.Stdout, *steps)
	}
	return nil
}

// benchRequest sends one request to tg and checks the answer.
func benchRequest(ctx context.Context, hc *http.Client, tg *benchTarget) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tg.url, http.NoBody)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if tg.key != "" {
		req.Header.Set("Authorization", "Bearer "+tg.key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`hello\n`)) {
		return fmt.Errorf("%s: %d %.200s", tg.name, resp.StatusCode, b)
	}
	return nil
}

// load sends n requests from c clients and measures them; the first error
// ends the run.
func load(ctx context.Context, n, c int, send func() error) (*benchFigures, error) {
	f := &benchFigures{requests: n, lat: make([]time.Duration, n)}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := next.Add(1) - 1
				if j >= int64(n) || ctx.Err() != nil {
					return
				}
				t := time.Now()
				if err := send(); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
				f.lat[j] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	f.elapsed = time.Since(start)
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	slices.Sort(f.lat)
	return f, firstErr
}

// serveLoopback serves srv on 127.0.0.1:0.
func serveLoopback(srv *http.Server) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// rawWazeroHandler runs benchModule once per request on wazero, compiled
// once, and answers its stdout in a small JSON body: the least a
// WebAssembly service can do per request, with no limits, auth or records.
func rawWazeroHandler(ctx context.Context) (http.Handler, func(), error) {
	rt := engine.NewRuntime(ctx, wazero.NewRuntimeConfigCompiler())
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, nil, err
	}
	compiled, err := rt.CompileModule(ctx, benchModule)
	if err != nil {
		return nil, nil, err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		var stdout bytes.Buffer
		cfg := wazero.NewModuleConfig().WithName("").WithArgs("module.wasm").WithStdout(&stdout)
		mod, err := rt.InstantiateModule(r.Context(), compiled, cfg)
		var ee *sys.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 0) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if mod != nil {
			_ = mod.Close(r.Context())
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"ok","stdout":%q}`, stdout.String())
	})
	return h, func() { _ = rt.Close(context.Background()) }, nil
}

// benchServer is the full stack under measurement.
type benchServer struct {
	srv    *Server
	url    string // the stored module's execute URL
	key    string
	user   *wasmwiz.User
	tier   *wasmwiz.Tier
	module *wasmwiz.Module
	stop   func()
}

// startBenchServer starts serve from the WASMWIZ_* configuration on a
// loopback port with its own data directory, stores benchModule for a new
// user on a tier without practical quotas, and returns it with the module's
// execute URL and the user's key.
func startBenchServer(ctx context.Context, env *Env, bo benchOptions) (*benchServer, error) {
	dir, err := os.MkdirTemp("", "wasmwiz-bench-")
	if err != nil {
		return nil, err
	}
	getenv := func(k string) string {
		switch k {
		case "WASMWIZ_ADDR":
			return "127.0.0.1:0"
		case "WASMWIZ_METRICS_ADDR":
			return ""
		case "WASMWIZ_DATA_DIR":
			return dir
		case "WASMWIZ_LOG_LEVEL":
			if v := env.Getenv(k); v != "" {
				return v
			}
			return "warn"
		case "WASMWIZ_DATABASE_URL":
			if v := env.Getenv(k); v != "" {
				return v
			}
			return filepath.Join(dir, "wasmwiz.db")
		}
		return env.Getenv(k)
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	senv := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: env.Stderr, Getenv: getenv}
	srv, err := NewServer(ctx, cfg, senv, bo.serve)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	b := &benchServer{srv: srv, stop: func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}}
	if err := b.setup(ctx); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func (b *benchServer) setup(ctx context.Context) error {
	sys := wasmwiz.SystemContext(ctx)
	st := b.srv.Store()
	b.tier = &wasmwiz.Tier{Name: "bench", RunsPerMinute: 1 << 40, RunsPerDay: 1 << 40, MaxConcurrent: 10000, Limits: wasmwiz.Limits{MaxMemoryBytes: 16 * wasmwiz.MiB, Timeout: 10 * time.Second, MaxModuleBytes: wasmwiz.MiB, MaxStdinBytes: wasmwiz.MiB, MaxOutputBytes: wasmwiz.MiB,
		MaxFilesInBytes: wasmwiz.MiB, MaxFiles: 100, MaxFileWriteBytes: 16 * wasmwiz.MiB, MaxFilesOutBytes: wasmwiz.MiB},
		AsyncTimeout: time.Minute, MaxStoredModules: 1, MaxStoredModuleBytes: wasmwiz.MiB}
	if err := st.PutTier(sys, b.tier); err != nil {
		return err
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	b.user = &wasmwiz.User{Email: "bench-" + hex.EncodeToString(r[:]) + "@localhost", Role: wasmwiz.RoleUser, Tier: "bench"}
	if err := st.CreateUser(sys, b.user); err != nil {
		return err
	}
	var err error
	if _, b.key, err = st.CreateAPIKey(sys, b.user.ID, "bench", nil); err != nil {
		return err
	}
	in, err := b.srv.pool.Inspect(ctx, benchModule, b.tier.Limits)
	if err != nil {
		return err
	}
	b.module = &wasmwiz.Module{Name: "bench.wasm", Wasm: benchModule, Inspection: in}
	if err := st.CreateModule(wasmwiz.NewContextWithUser(ctx, b.user), b.module); err != nil {
		return err
	}
	b.url = b.srv.URL() + "/api/v1/modules/" + b.module.ID + "/execute"
	return nil
}

// benchCounters are the database transactions and Redis commands so far;
// -1 where not measured (SQLite, no Redis).
type benchCounters struct{ pg, redis int64 }

func (c benchCounters) sub(o benchCounters) benchCounters {
	return benchCounters{pg: diffCount(c.pg, o.pg), redis: diffCount(c.redis, o.redis)}
}

func (c benchCounters) add(o benchCounters) benchCounters {
	if c == (benchCounters{}) {
		return o
	}
	return benchCounters{pg: sumCount(c.pg, o.pg), redis: sumCount(c.redis, o.redis)}
}

func diffCount(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	return a - b
}

func sumCount(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	return a + b
}

// counters reads PostgreSQL's transaction count of the database
// (pg_stat_database, which backends report within a second of going idle,
// hence the wait) and Redis's command count (INFO commandstats); both count
// every client of the server, so measure on a database and a Redis of its
// own.
func (b *benchServer) counters(ctx context.Context) benchCounters {
	c := benchCounters{pg: -1, redis: -1}
	if db, ok := b.srv.store.(*postgres.DB); ok {
		time.Sleep(1500 * time.Millisecond)
		var n int64
		if err := db.Pool().QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database
			WHERE datname = current_database()`).Scan(&n); err == nil {
			c.pg = n
		}
	}
	if b.srv.rclient != nil {
		if info, err := b.srv.rclient.Info(ctx, "commandstats").Result(); err == nil {
			// Only what clients sent: a script's own calls inside Redis are
			// counted under their names too, and the scripts never run
			// EVAL, EVALSHA or the commands of a connection.
			c.redis = 0
			for _, line := range strings.Split(info, "\n") {
				name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
				if !ok || !sentByClients[name] {
					continue
				}
				calls, _, _ := strings.Cut(rest, ",")
				n, _ := strconv.ParseInt(calls, 10, 64)
				c.redis += n
			}
		}
	}
	return c
}

// sentByClients are the commands INFO commandstats counts that only a client
// sends: the limiter's scripts, and a connection's own commands.
var sentByClients = map[string]bool{"eval": true, "evalsha": true, "eval_ro": true, "evalsha_ro": true,
	"ping": true, "hello": true, "info": true, "client|setinfo": true, "select": true}

func (b *benchServer) database() string { return storeKind(b.srv.cfg) }

func (b *benchServer) limiterKind() string {
	if b.srv.shared != nil {
		return "Redis"
	}
	return "in memory"
}

// breakdown times, one call at a time, each dependency call an execute of
// the stored module makes (on the warm path, or on a miss), and prints the
// mean of each: what the full stack costs beyond running the guest.
func (b *benchServer) breakdown(ctx context.Context, w io.Writer, n int) error {
	st := b.srv.Store()
	uctx := wasmwiz.NewContextWithUser(ctx, b.user)
	epoch, err := st.CacheEpoch(ctx)
	if err != nil {
		return err
	}
	dir := &wasmwiz.Directory{Keys: st, Modules: st, Tiers: st}
	dir.Observe(epoch, false)
	if _, err := dir.Authenticate(ctx, b.key, true); err != nil {
		return err
	}
	adm := wasmwiz.Admission{Key: wasmwiz.RateKey(b.user, ""), Quotas: wasmwiz.TierRateLimits(b.tier),
		MaxConcurrent: b.tier.MaxConcurrent, SlotTTL: time.Minute}
	var loads atomic.Int64
	rr := &wasmwiz.RunRequest{SHA256: b.module.SHA256, Name: "bench.wasm", Limits: b.tier.Limits,
		LoadWasm: func(ctx context.Context) ([]byte, error) {
			loads.Add(1)
			m, err := st.FindModuleWasm(uctx, b.module.ID)
			if err != nil {
				return nil, err
			}
			return m.Wasm, nil
		}}
	rawH, closeRaw, err := rawWazeroHandler(ctx)
	if err != nil {
		return err
	}
	defer closeRaw()
	batch := make([]*wasmwiz.UsageRecord, 100)
	steps := []struct {
		name string
		call func() error
		per  int // calls' worth of work in one call
	}{
		{"authenticate the key: Directory, warm (no round trip)", func() error { _, err := dir.Authenticate(ctx, b.key, true); return err }, 1},
		{"authenticate the key: database (a miss)", func() error { _, _, err := st.Authenticate(ctx, b.key); return err }, 1},
		{"admit: slot, quotas, cache epoch (limiter, one call; release not waited for)", func() error {
			a, err := b.srv.limiter.Admit(ctx, adm)
			if err == nil && a.OK() {
				a.Release(false)
			}
			return err
		}, 1},
		{"stored module's owner, visibility, digest: database (a miss)", func() error { _, err := st.FindModuleByID(uctx, b.module.ID); return err }, 1},
		{"stored module's bytes: database (no worker holds it)", func() error { _, err := st.FindModuleWasm(uctx, b.module.ID); return err }, 1},
		{"run in a worker by digest (pool; a worker holds it)", func() error { _, err := b.srv.pool.Run(ctx, rr); return err }, 1},
		{"usage record, batched by 100 (store, off the request path)", func() error {
			now := time.Now().UTC()
			for i := range batch {
				batch[i] = &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(now), UserID: b.user.ID, Tier: b.tier.Name, Status: wasmwiz.StatusOK,
					ModuleID: b.module.ID, ModuleSHA256: b.module.SHA256, CreatedAt: now}
			}
			return st.CreateRuns(ctx, batch)
		}, len(batch)},
		{"raw wazero run, no HTTP (reference)", func() error {
			rec := httptest.NewRecorder()
			rawH.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodPost, "http://bench/", http.NoBody))
			if rec.Code != http.StatusOK {
				return fmt.Errorf("raw run: %d", rec.Code)
			}
			return nil
		}, 1},
	}
	fmt.Fprintf(w, "\nfull stack, per-request cost by step (%d calls each, one at a time, means):\n", n)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range steps {
		calls := max(1, n/s.per)
		start := time.Now()
		for i := 0; i < calls; i++ {
			if err := s.call(); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		per := time.Since(start) / time.Duration(calls*s.per)
		fmt.Fprintf(tw, "  %s\t%s\t\n", s.name, per.Round(100*time.Nanosecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "  (the module's bytes were read %d times in %d runs by digest)\n", loads.Load(), n)
	return nil
}

// cpuModel returns the CPU's model name from /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
