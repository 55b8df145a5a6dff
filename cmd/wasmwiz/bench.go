package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmwiz/wasmwiz"
)

// benchModule is the tiny WASI command every target runs: it writes
// "hello\n" to stdout (benchhello.wat below, built with wat2wasm).
//
//	(module
//	  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 16) "hello\n")
//	  (func (export "_start")
//	    (i32.store (i32.const 0) (i32.const 16))
//	    (i32.store (i32.const 4) (i32.const 6))
//	    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
var benchModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f,
	0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00, 0x02, 0x23, 0x01, 0x16, 0x77, 0x61, 0x73, 0x69, 0x5f, 0x73,
	0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65, 0x76, 0x69, 0x65, 0x77, 0x31,
	0x08, 0x66, 0x64, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x00, 0x00, 0x03, 0x02, 0x01, 0x01, 0x05,
	0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00,
	0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x01, 0x0a, 0x1d, 0x01, 0x1b, 0x00, 0x41, 0x00,
	0x41, 0x10, 0x36, 0x02, 0x00, 0x41, 0x04, 0x41, 0x06, 0x36, 0x02, 0x00, 0x41, 0x01, 0x41, 0x00,
	0x41, 0x01, 0x41, 0x08, 0x10, 0x00, 0x1a, 0x0b, 0x0b, 0x0c, 0x01, 0x00, 0x41, 0x10, 0x0b, 0x06,
	0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x0a,
}

// benchOptions are what tests change about `wasmwiz bench`.
type benchOptions struct {
	serve ServeOptions
}

func cmdBench(ctx context.Context, env *Env, args []string) error {
	return runBench(ctx, env, args, benchOptions{})
}

// benchFigures are one target's measurements.
type benchFigures struct {
	name     string
	requests int
	elapsed  time.Duration
	lat      []time.Duration
}

func (f *benchFigures) rps() float64 { return float64(f.requests) / f.elapsed.Seconds() }

func (f *benchFigures) pct(p float64) time.Duration {
	if len(f.lat) == 0 {
		return 0
	}
	return f.lat[min(len(f.lat)-1, int(p*float64(len(f.lat))))]
}

func runBench(ctx context.Context, env *Env, args []string, bo benchOptions) error {
	fs := newFlagSet(env, "bench", `usage: wasmwiz bench [flags]

Measures, on loopback and in one run, requests per second of:
  bare        a net/http handler answering a small JSON body
  raw-wazero  a handler that runs a tiny WASI module on wazero in-process
  full-stack  warm execute of the same module, stored, through serve: auth,
              rate limiter, usage records, worker pool (the configured
              database and Redis, WASMWIZ_*).
The full stack adds a tier "bench" and a user to the configured database.`)
	var (
		requests    = fs.Int("requests", 5000, "requests per target (after the warm-up)")
		warmup      = fs.Int("warmup", 500, "warm-up requests per target, not measured")
		concurrency = fs.Int("concurrency", 4, "clients sending at once")
		rounds      = fs.Int("rounds", 3, "rounds; targets take turns in each, and the best round of each is reported")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of this process during the full stack's measured requests to this file")
		steps       = fs.Int("steps", 500, "calls per step of the full stack's per-request cost breakdown (0: none)")
	)
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *requests < 1 || *concurrency < 1 || *rounds < 1 || *warmup < 0 {
		return fs.usageError("--requests, --concurrency and --rounds must be at least 1, --warmup at least 0")
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
	fullURL, key := full.url, full.key

	targets := []struct {
		name, url, key, ctype string
		body                  []byte
	}{
		{"bare", bareURL + "/", "", "application/octet-stream", nil},
		{"raw-wazero", rawURL + "/", "", "application/octet-stream", nil},
		{"full-stack", fullURL, key, "application/octet-stream", nil},
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency * 2, MaxConnsPerHost: *concurrency * 2}}
	defer hc.CloseIdleConnections()
	best := map[string]*benchFigures{}
	for round := 0; round < *rounds; round++ {
		for _, tg := range targets {
			send := func() error {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, tg.url, bytes.NewReader(tg.body))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", tg.ctype)
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
			if round == 0 {
				if _, err := load(ctx, *warmup, *concurrency, send); err != nil {
					return fmt.Errorf("warm-up of %s: %w", tg.name, err)
				}
			}
			if *cpuProfile != "" && tg.name == "full-stack" && round == 0 {
				pf, err := os.Create(*cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(pf); err != nil {
					pf.Close()
					return err
				}
			}
			f, err := load(ctx, *requests, *concurrency, send)
			if *cpuProfile != "" && tg.name == "full-stack" && round == 0 {
				pprof.StopCPUProfile()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			f.name = tg.name
			if b := best[tg.name]; b == nil || f.rps() > b.rps() {
				best[tg.name] = f
			}
		}
	}

	cpu := cpuModel()
	fmt.Fprintf(env.Stdout, "wasmwiz bench: %s, %d requests per target after %d warm-up, %d clients, best of %d rounds\n",
		time.Now().UTC().Format("2006-01-02"), *requests, *warmup, *concurrency, *rounds)
	fmt.Fprintf(env.Stdout, "machine: %d cores, %s\n\n", runtime.NumCPU(), cpu)
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tmean\tp50\tp99\tvs raw-wazero\t")
	for _, tg := range targets {
		f := best[tg.name]
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.2f\t\n", f.name, f.rps(), meanOf(f.lat).Round(time.Microsecond),
			f.pct(0.5).Round(time.Microsecond), f.pct(0.99).Round(time.Microsecond), f.rps()/best["raw-wazero"].rps())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if *steps > 0 {
		return full.breakdown(ctx, env.Stdout, *steps)
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

func meanOf(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
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
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
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
	b.tier = &wasmwiz.Tier{Name: "bench", RunsPerMinute: 1 << 40, RunsPerDay: 1 << 40, MaxConcurrent: 10000, Limits: wasmwiz.Limits{MaxMemoryBytes: 16 * wasmwiz.MiB, Timeout: 10 * time.Second, MaxModuleBytes: wasmwiz.MiB, MaxStdinBytes: wasmwiz.MiB, MaxOutputBytes: wasmwiz.MiB}}
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

// breakdown times, one call at a time, each dependency call an execute of
// the stored module makes, and prints the mean of each: what the full stack
// costs beyond running the guest.
func (b *benchServer) breakdown(ctx context.Context, w io.Writer, n int) error {
	st := b.srv.Store()
	uctx := wasmwiz.NewContextWithUser(ctx, b.user)
	limits := wasmwiz.TierRateLimits(b.tier)
	key := wasmwiz.RateKey(b.user, "")
	rr := &wasmwiz.RunRequest{Wasm: benchModule, SHA256: b.module.SHA256, Name: "bench.wasm", Limits: b.tier.Limits}
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
		{"authenticate the key (store)", func() error { _, _, err := st.Authenticate(ctx, b.key); return err }, 1},
		{"find the tier (store)", func() error { _, err := st.FindTier(uctx, b.tier.Name); return err }, 1},
		{"rate quota: Allow (limiter)", func() error { _, err := b.srv.limiter.Allow(ctx, key, limits); return err }, 1},
		{"concurrency slot: Acquire + release (limiter)", func() error {
			release, ok, err := b.srv.limiter.Acquire(ctx, "concurrency:"+key, b.tier.MaxConcurrent, time.Minute)
			if err == nil && ok {
				release()
			}
			return err
		}, 1},
		{"load the stored module (store)", func() error { _, err := st.FindModuleWasm(uctx, b.module.ID); return err }, 1},
		{"run in a worker (pool)", func() error { _, err := b.srv.pool.Run(ctx, rr); return err }, 1},
		{"usage record, batched by 100 (store, off the request path)", func() error {
			now := time.Now().UTC()
			for i := range batch {
				batch[i] = &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(now), UserID: b.user.ID, Tier: b.tier.Name, Status: wasmwiz.StatusOK,
					ModuleID: b.module.ID, ModuleSHA256: b.module.SHA256, CreatedAt: now}
			}
			return st.CreateRuns(ctx, batch)
		}, len(batch)},
		{"raw wazero run, no HTTP (reference)", func() error {
			rec := &discardResponse{h: http.Header{}}
			rawH.ServeHTTP(rec, httptestRequest(ctx))
			if rec.status != 0 && rec.status != http.StatusOK {
				return fmt.Errorf("raw run: %d", rec.status)
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
	return tw.Flush()
}

// discardResponse is a ResponseWriter that keeps only the status.
type discardResponse struct {
	h      http.Header
	status int
}

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardResponse) WriteHeader(s int)           { d.status = s }

func httptestRequest(ctx context.Context) *http.Request {
	r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://bench/", http.NoBody)
	return r
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
