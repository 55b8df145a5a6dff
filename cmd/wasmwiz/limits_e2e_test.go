package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeTierBodyLimits: a tier's module and stdin sizes, set through the
// admin API, bound what its callers send: 413 ETOOLARGE. (How every kind of
// body is bounded, declared or streamed, is internal/http's TestBodyLimits.)
func TestServeTierBodyLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	user, _, _ := s.newTierUser("tiny", func(tr *wasmwiz.Tier) { tr.MaxModuleBytes = 64 * wasmwiz.KiB; tr.MaxStdinBytes = 4 * wasmwiz.KiB })
	hello := testmodule.Read(t, "hello.wasm")
	big := append(bytes.Clone(hello), make([]byte, 3*wasmwiz.MiB)...)
	m, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "echo.wasm")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"module over the tier", func() error {
			_, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: big, Body: client.BodyMultipart})
			return err
		}},
		{"stdin over the tier", func() error {
			_, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello, Stdin: make([]byte, 5*wasmwiz.KiB), Body: client.BodyMultipart})
			return err
		}},
		{"stdin over the tier, stored module", func() error {
			_, err := user.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{Stdin: make([]byte, 5*wasmwiz.KiB), Body: client.BodyRaw})
			return err
		}},
		{"upload over the tier", func() error {
			_, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: big})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, tt.name, err, wasmwiz.ETOOLARGE)
			if client.StatusCode(err) != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", client.StatusCode(err))
			}
		})
	}
}

// TestServeTierLimits: each limit of a tier stops the guest, and a caller
// can lower a limit but never raise it.
func TestServeTierLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	// Two tiers, so that no outcome depends on how fast a loaded machine is:
	// "tight" has a short wall time for the guests that never end, "capped"
	// small memory and output caps under a wall time no cap test comes near.
	tight, _, _ := s.newTierUser("tight", func(tr *wasmwiz.Tier) {
		tr.Timeout = 500 * time.Millisecond
	})
	capped, _, _ := s.newTierUser("capped", func(tr *wasmwiz.Tier) {
		tr.Timeout = time.Minute
		tr.MaxMemoryBytes = 8 * wasmwiz.MiB
		tr.MaxOutputBytes = 64 * wasmwiz.KiB
	})
	tests := []struct {
		name    string
		user    *client.Client
		req     client.ExecuteRequest
		want    api.Status
		check   func(t *testing.T, r *api.Result)
		maxWall time.Duration
		prove   string // the attack, for the prove report; "" for none
	}{
		{"tight loop stops at the timeout", tight, client.ExecuteRequest{Wasm: testmodule.Read(t, "loop.wasm")}, api.StatusTimeout, nil, 0,
			"endless loop (wall time 500ms)"},
		{"loop-free recursion stops at the timeout", tight, client.ExecuteRequest{Wasm: testmodule.Read(t, "fib_recursive.wasm")}, api.StatusTimeout, nil, 0,
			"loop-free recursion, which in-guest cancellation misses (wall time 500ms)"},
		{"memory bomb hits the cap", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "memory_bomb.wasm")}, api.StatusMemoryLimit,
			func(t *testing.T, r *api.Result) {
				if r.MemoryPeakBytes > 8*wasmwiz.MiB {
					t.Errorf("peak memory %d over the 8MiB cap", r.MemoryPeakBytes)
				}
			}, 0, "linear memory bomb (cap 8MiB)"},
		{"a lower memory asked for applies", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "memory_bomb.wasm"), Memory: 2 * wasmwiz.MiB}, api.StatusMemoryLimit,
			func(t *testing.T, r *api.Result) {
				if r.MemoryPeakBytes > 2*wasmwiz.MiB {
					t.Errorf("peak memory %d over the 2MiB asked for", r.MemoryPeakBytes)
				}
			}, 0, ""},
		{"a higher memory asked for does not", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "memory_bomb.wasm"), Memory: wasmwiz.GiB}, api.StatusMemoryLimit,
			func(t *testing.T, r *api.Result) {
				if r.MemoryPeakBytes > 8*wasmwiz.MiB {
					t.Errorf("peak memory %d: the caller raised its 8MiB cap", r.MemoryPeakBytes)
				}
			}, 0, ""},
		{"output flood is cut at the cap", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "flood.wasm")}, api.StatusOutputLimit,
			func(t *testing.T, r *api.Result) {
				if !r.StdoutTruncated || int64(len(r.Stdout)) != 64*wasmwiz.KiB {
					t.Errorf("stdout %d bytes, truncated %v; want the 64KiB cap, truncated", len(r.Stdout), r.StdoutTruncated)
				}
			}, 0, "output flood (cap 64KiB)"},
		{"a higher timeout asked for does not apply", tight, client.ExecuteRequest{Wasm: testmodule.Read(t, "loop.wasm"), Timeout: time.Hour}, api.StatusTimeout, nil, 0, ""},
		{"a lower timeout asked for applies", capped, client.ExecuteRequest{Wasm: testmodule.Read(t, "sleep.wasm"), Args: []string{"2000"}, Timeout: 100 * time.Millisecond}, api.StatusTimeout, nil, 0, ""},
	}
	// The wall time covers the compile: compile every module first, under
	// the generous tier, so that the short wall times here are the guests'.
	compiled := map[string]bool{}
	for _, tt := range tests {
		if sum := string(tt.req.Wasm); !compiled[sum] {
			compiled[sum] = true
			if _, err := capped.CreateModule(ctx, client.ModuleUpload{Wasm: tt.req.Wasm}); err != nil {
				t.Fatalf("uploading a module to compile it: %v", err)
			}
		}
	}
	t.Run("limits", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				req := tt.req
				start := time.Now()
				res, err := tt.user.Execute(ctx, &req)
				took := time.Since(start)
				if err != nil {
					t.Fatalf("Execute: %v", err)
				}
				if res.Status != tt.want {
					t.Fatalf("status %s (trap %q), want %s", res.Status, res.Trap, tt.want)
				}
				if tt.check != nil {
					tt.check(t, res)
				}
				if tt.prove != "" {
					testenv.Prove(t, tt.prove, "the run ends "+string(res.Status)+" and the replica goes on",
						"time to answer", testenv.Ms(took), "guest's peak linear memory", testenv.MiB(res.MemoryPeakBytes),
						"answer's output", fmt.Sprintf("%d bytes", len(res.Stdout)+len(res.Stderr)))
				}
			})
		}
	})
	// The guests that ignored their deadline were stopped by killing their
	// worker, and the pool says so in its metrics.
	m, err := s.client("").Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kills := regexp.MustCompile(`(?m)^wasmwiz_worker_timeouts_total ([0-9]+)$`).FindStringSubmatch(m)
	if kills == nil || kills[1] == "0" {
		t.Fatalf("wasmwiz_worker_timeouts_total after guests ran past their deadline: %v", kills)
	}
}

// TestServeOutputCapIsPerRun: a run's output cap bounds stdout and stderr
// together, and the answer is bounded by it: a guest that floods both
// streams with bytes JSON escapes six-fold gets an answer of about 4/3 of
// the cap (base64), not twelve times it; on SQLite and on PostgreSQL with
// Redis, while another tenant's runs complete.
func TestServeOutputCapIsPerRun(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serve(t)
		const limit = wasmwiz.MiB
		_, _, key := s.newTierUser("flood", func(tr *wasmwiz.Tier) { tr.MaxOutputBytes = limit })
		other, _, _ := s.newUser(wasmwiz.TierBasic)
		hello := testmodule.Read(t, "hello.wasm")

		stopRSS := testenv.PeakRSS(t)
		var otherTook, took testenv.Latencies
		var sizes []string
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the other tenant, meanwhile
			defer wg.Done()
			if err := timedHellos(ctx, other, hello, 3, &otherTook); err != nil {
				t.Errorf("another tenant: %v", err)
			}
		}()
		for _, tt := range []struct {
			module   string
			encoding string
		}{
			{"flood_escapes.wasm", "base64"},
			{"flood_both.wasm", "utf-8"},
		} {
			start := time.Now()
			resp, body := testenv.Do(t, http.MethodPost, s.url+"/api/v1/execute", key, "application/wasm",
				bytes.NewReader(testmodule.Read(t, tt.module)))
			took.Since(start)
			sizes = append(sizes, fmt.Sprintf("%s %s", tt.module, testenv.MiB(int64(len(body)))))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %.300s", tt.module, resp.StatusCode, body)
			}
			var r api.Result
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			var enc struct {
				Stdout string `json:"stdout_encoding"`
				Stderr string `json:"stderr_encoding"`
			}
			_ = json.Unmarshal(body, &enc)
			if r.Status != api.StatusOutputLimit || int64(len(r.Stdout)+len(r.Stderr)) != limit ||
				len(r.Stdout) == 0 || len(r.Stderr) == 0 || enc.Stdout != tt.encoding || enc.Stderr != tt.encoding {
				t.Errorf("%s: status %s, stdout %d + stderr %d bytes (%s, %s); want output_limit, %d together, %s",
					tt.module, r.Status, len(r.Stdout), len(r.Stderr), enc.Stdout, enc.Stderr, limit, tt.encoding)
			}
			// Base64: 4/3; text: at most 2x; plus the fixed fields.
			bound := 2*limit + 4*wasmwiz.KiB
			if tt.encoding == "base64" {
				bound = limit/3*4 + 4*wasmwiz.KiB
			}
			if int64(len(body)) > bound {
				t.Errorf("%s: the answer is %d bytes, over %d for an output cap of %d", tt.module, len(body), bound, limit)
			}
			t.Logf("%s: answer %d bytes for a cap of %d", tt.module, len(body), limit)
		}
		wg.Wait()
		testenv.Prove(t, "output flood on both streams, of bytes JSON escapes six-fold (cap 1MiB), "+be.name,
			"the run ends output_limit with the cap's bytes; the answer is bounded by the cap; another tenant's runs complete",
			"answer size", strings.Join(sizes, ", "),
			"time to answer", took.String(),
			"other tenant's latency", otherTook.String(),
			"peak RSS", testenv.MiB(stopRSS()))
	})
}

// TestServeHostMemoryAttacks: issue 9's guests that make the host allocate
// outside linear memory (a 61-byte loop on table.grow took a worker to
// 1.7–3.9 GB under a 128 MiB cap and was answered timeout), sent through
// serve on PostgreSQL and Redis by a tenant whose cap is 16 MiB, one after
// another, while another tenant runs hello worlds. Each ends as the cap
// says (a failed growth the guest traps on, memory_limit, or the timeout of
// a guest that ignores the failure); each worker's memory stays within a
// bound far below the attack's gigabytes; the other tenant's runs complete
// meanwhile.
func TestServeHostMemoryAttacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[1].serve(t)
	const memCap = 16 * wasmwiz.MiB
	attacker, _, _ := s.newTierUser("tight-memory", func(tr *wasmwiz.Tier) {
		tr.MaxMemoryBytes, tr.Timeout = memCap, time.Minute // a wall time the race detector's slowness does not reach
	})
	other, hello := otherTenant(t, ctx, s)
	attacks := []struct {
		name    string
		wasm    []byte
		timeout time.Duration // 0: the tier's
		want    api.Status
	}{
		{"table growth the guest traps on", hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Trap), 0, api.StatusTrap},
		{"table growth that ignores failure", hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Ignore), 2 * time.Second, api.StatusTimeout},
		{"ref.func allocating host memory", hostiletest.RefFuncLoop(), 0, api.StatusMemoryLimit},
	}

	stopRSS := testenv.PeakRSS(t)
	before := stopRSS() // the tree at rest (other tests' processes too: a figure, not a bound)
	stopRSS = testenv.PeakRSS(t)
	// The bound is this server's workers', each sampled on its own.
	stopWorkers := testenv.PeakOf(t, 20*time.Millisecond, func() int64 {
		var most int64
		for _, pid := range s.srv.pool.PIDs() {
			most = max(most, testenv.RSS(pid))
		}
		return most
	})
	_, helloTook := meanwhile(t, ctx, other, hello, "the attacks", func() error {
		for _, a := range attacks {
			res, err := attacker.Execute(ctx, &client.ExecuteRequest{Wasm: a.wasm, Timeout: a.timeout})
			switch {
			case err != nil:
				return fmt.Errorf("%s: %w", a.name, err)
			case res.Status != a.want:
				return fmt.Errorf("%s: status %s, trap %q; want %s", a.name, res.Status, res.Trap, a.want)
			}
		}
		return nil
	})
	peak := stopRSS()
	workerPeak := stopWorkers()
	// A worker's memory is bounded from the run's cap (a few times it, plus
	// the runtime), a fraction of the gigabytes one such guest took before
	// (and five times that under the race detector).
	if bound := raceOverhead * (memCap*8 + 64*wasmwiz.MiB); workerPeak > bound {
		t.Errorf("a worker peaked at %s, over %s", testenv.MiB(workerPeak), testenv.MiB(bound))
	}
	testenv.Prove(t, "host memory through serve: table growth (trapping, and ignoring failure) and ref.func allocation, one after another, by a tenant capped at 16MiB (PostgreSQL and Redis)",
		"trap, timeout and memory_limit as the cap says; every worker within 8x the cap plus 64MiB; another tenant's hello worlds complete meanwhile",
		"peak RSS", "a worker "+testenv.MiB(workerPeak)+"; the test's process tree "+testenv.MiB(peak)+" ("+testenv.MiB(before)+" at rest)",
		"other tenant's latency", helloTook.String())
}

// TestServeAmplificationBounded: small requests from a free key that made
// the server do far more than they cost to send, each now bounded, sent
// through serve one after another while another tenant runs hello worlds:
//
//   - 99 links to "." sent in an archive, and outputs "*/*/*/*/x": the
//     outputs were matched through the links, 99^4 paths, in the serve
//     process after the run (20 links took 26 s and 1.7 GiB);
//   - a tar.gz of 200,000 "./" entries, skipped without being counted, read
//     before the request is admitted (a second of CPU per MiB of body);
//   - a guest making directories 4,096 deep within its write budget: serve
//     held a descriptor per level to remove the tree;
//   - a 730 KB module of 100,000 exports of a 50-parameter type: a 35 MB
//     inspection, decoded on every module list, and a 25 MB error;
//   - a run with 1 MiB of args: its record, kept for the retention and
//     listed a thousand at a time, kept them whole.
func TestServeAmplificationBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	attacker, _, attackerKey := s.newUser(wasmwiz.TierFree)
	other, hello := otherTenant(t, ctx, s)
	probe := testmodule.Read(t, "fsprobe.wasm")

	// Links multiplying the outputs.
	links := []testenv.ArchiveEntry{{Name: "x", Type: tar.TypeReg, Data: "x"}}
	for i := range 99 {
		links = append(links, testenv.ArchiveEntry{Name: fmt.Sprintf("l%02d", i), Type: tar.TypeSymlink, Linkname: "."})
	}
	var files []api.File
	took, hellos := meanwhile(t, ctx, other, hello, "links", func() error {
		res, err := attacker.Execute(ctx, &client.ExecuteRequest{Wasm: probe, Archive: testenv.Tar(t, links...),
			Outputs: []string{"*/*/*/*/x", "x"}, Args: []string{"cwd"}})
		if err != nil {
			return err
		}
		files = res.Files
		return nil
	})
	if len(files) != 1 || files[0].Path != "x" {
		t.Fatalf("outputs through 99 links to .: %d files, want x alone", len(files))
	}
	testenv.Prove(t, "output patterns through links: an archive of 99 links to . and outputs */*/*/*/x (99^4 paths when links were followed), from a free key, sqlite",
		"links to directories are not followed: x comes back once, and the answer comes; another tenant's runs complete",
		"time to answer", testenv.Ms(took), "other tenant's latency", hellos.String())

	// A tar.gz of skipped entries.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	tw := tar.NewWriter(zw)
	for range 200_000 {
		if err := tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	took, hellos = meanwhile(t, ctx, other, hello, "skipped entries", func() error {
		_, err := attacker.Execute(ctx, &client.ExecuteRequest{Wasm: probe, Archive: gz.Bytes(), Args: []string{"cwd"}})
		if codeOf(err) != wasmwiz.ETOOLARGE {
			return fmt.Errorf("a tar.gz of 200,000 ./ entries: %v, want ETOOLARGE", err)
		}
		return nil
	})
	testenv.Prove(t, fmt.Sprintf("a tar.gz of 200,000 ./ entries (%s gzipped, 98 MiB of headers), from a free key (max_files 100), sqlite", testenv.MiB(int64(gz.Len()))),
		"refused 413 ETOOLARGE at the entries' bound, before the run; another tenant's runs complete",
		"time to answer", testenv.Ms(took), "other tenant's latency", hellos.String())

	// Directories as deep as the write budget allows.
	fds := func() int64 { e, _ := os.ReadDir("/proc/self/fd"); return int64(len(e)) }
	atRest := fds()
	stopFDs := testenv.PeakOf(t, 5*time.Millisecond, fds)
	var levels int
	took, hellos = meanwhile(t, ctx, other, hello, "deep directories", func() error {
		res, err := attacker.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "deep_dirs.wasm"), Outputs: []string{"."}})
		if err != nil {
			return err
		}
		if res.Status != api.StatusExit || res.ExitCode != wasmwiz.MaxFileDepth {
			return fmt.Errorf("deep directories: status %s exit %d, want exit %d (the levels made before ENAMETOOLONG)", res.Status, res.ExitCode, wasmwiz.MaxFileDepth)
		}
		levels = res.ExitCode
		return nil
	})
	peakFDs := stopFDs()
	testenv.Prove(t, "a guest making directories as deep as its write budget allows (free: 16MiB, 4,096 levels at 4 KiB each), and outputs \".\" over them, sqlite",
		fmt.Sprintf("mkdir fails ENAMETOOLONG past %d levels; the tree is collected and removed; another tenant's runs complete", wasmwiz.MaxFileDepth),
		"levels made", fmt.Sprint(levels),
		"serve's open descriptors (the test's process, sampled every 5 ms)", fmt.Sprintf("peak %d, %d at rest", peakFDs, atRest),
		"time to answer", testenv.Ms(took), "other tenant's latency", hellos.String())

	// A module of very many exports, uploaded, listed, called.
	many := hostiletest.ManyExports(100_000, 50)
	var inspection, errText int
	took, hellos = meanwhile(t, ctx, other, hello, "many exports", func() error {
		m, err := attacker.CreateModule(ctx, client.ModuleUpload{Wasm: many, Name: "many.wasm"})
		if err != nil {
			return err
		}
		b, _ := json.Marshal(m.Inspection)
		inspection = len(b)
		if len(m.Inspection.Exports)+m.Inspection.ExportsOmitted != 100_000 || len(m.Inspection.Exports) > 1000 {
			return fmt.Errorf("inspection lists %d exports and omits %d, want at most 1000 of 100000", len(m.Inspection.Exports), m.Inspection.ExportsOmitted)
		}
		if _, _, err := attacker.ListModules(ctx, "", client.Page{}); err != nil {
			return err
		}
		params := strings.Split(strings.TrimSuffix(strings.Repeat("1,", 50), ","), ",")
		res, err := attacker.Execute(ctx, &client.ExecuteRequest{ModuleID: m.ID, Function: "f99999", Params: params})
		if err != nil || res.Status != api.StatusOK {
			return fmt.Errorf("calling the last export: %+v, %v", res, err)
		}
		// The worker finds the function missing once it holds the module:
		// on a loaded machine loading it may take the free tier's whole
		// wall time (a timeout result, no error), and the next try finds
		// it held.
		for try := 1; ; try++ {
			res, err = attacker.Execute(ctx, &client.ExecuteRequest{ModuleID: m.ID, Function: "nope"})
			if err != nil || res.Status != api.StatusTimeout || try == 3 {
				break
			}
		}
		errText = len(client.ErrorMessage(err))
		if codeOf(err) != wasmwiz.EINVALID || errText > 8<<10 {
			return fmt.Errorf("an unknown function: %d bytes of %v (%v, result %+v), want EINVALID within 8 KiB", errText, codeOf(err), err, res)
		}
		return nil
	})
	testenv.Prove(t, fmt.Sprintf("a module of 100,000 exports of a 50-parameter type (%s), from a free key: uploaded, listed, its last export called, an unknown one called, sqlite", testenv.MiB(int64(len(many)))),
		"the inspection lists at most 1000 exports and counts the rest; every export can still be called; the unknown function's error stays within 8 KiB; another tenant's runs complete",
		"inspection", fmt.Sprintf("%d bytes (35 MB when it listed all)", inspection),
		"unknown function's error", fmt.Sprintf("%d bytes (25 MB when it listed all)", errText),
		"time to answer (upload, list, two calls)", testenv.Ms(took), "other tenant's latency", hellos.String())

	// A MiB of args, kept by the run's record.
	args := make([]string, 4000)
	for i := range args {
		args[i] = strings.Repeat("a", 255)
	}
	var record int
	took, hellos = meanwhile(t, ctx, other, hello, "args", func() error {
		res, err := attacker.Execute(ctx, &client.ExecuteRequest{Wasm: hello, Args: args})
		if err != nil {
			return err
		}
		_, raw, _ := testenv.DoJSON(t, "GET", s.url+"/api/v1/runs/"+res.ID, attackerKey, nil, nil)
		record = len(raw)
		var rec api.Run
		if err := json.Unmarshal(raw, &rec); err != nil {
			return err
		}
		if !rec.DetailTruncated || record > 64<<10 {
			return fmt.Errorf("the record of a run with 1 MiB of args: %d bytes, detail_truncated %v", record, rec.DetailTruncated)
		}
		return nil
	})
	testenv.Prove(t, "a run with 4,000 args of 255 bytes (1 MiB, the argv cap), from a free key, sqlite",
		"the run gets them all; its record keeps 8 KiB of them and says so (detail_truncated); another tenant's runs complete",
		"record", fmt.Sprintf("%d bytes of JSON (over 1 MiB when it kept them whole)", record),
		"time to answer", testenv.Ms(took), "other tenant's latency", hellos.String())
}

// TestServeCompilesAreCounted: compiling is work paid for. An upload counts
// against the caller's run quota (as a run does), a missing module id costs
// none of it, and a run's answer and usage record report its compile apart
// from its guest.
func TestServeCompilesAreCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	user, _, _ := s.newTierUser("two", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 2 })
	for range 3 {
		_, err := user.Execute(ctx, &client.ExecuteRequest{ModuleID: wasmwiz.NewModuleID()})
		wantCode(t, "a missing module", err, wasmwiz.ENOTFOUND)
	}
	if _, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "hello.wasm")}); err != nil {
		t.Fatalf("the first upload, after three missing modules cost nothing: %v", err)
	}
	res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "fib.wasm"), Args: []string{"10"}})
	if err != nil {
		t.Fatalf("a run, the quota's second event: %v", err)
	}
	if res.CompileCached || res.CompileDuration <= 0 {
		t.Errorf("the first run of fib: compile_cached %v, compile_ms %v; want its compile reported", res.CompileCached, res.CompileDuration)
	}
	_, err = user.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "add.wasm")})
	wantCode(t, "an upload past the quota", err, wasmwiz.ERATELIMIT)

	var runs []*api.Run
	poll(t, "the run to be written", func() bool {
		runs, _, err = user.ListRuns(ctx, client.RunQuery{})
		return err == nil && len(runs) == 1
	})
	if runs[0].CompileMS <= 0 || runs[0].CompileMS != float64(res.CompileDuration.Microseconds())/1000 {
		t.Errorf("usage record compile_ms %v, the answer's %v", runs[0].CompileMS, res.CompileDuration)
	}
}

// TestServeCompileBombDoesNotMakeOthersWait: with two workers, while one
// user's compile bomb (90 KB of nested loops, tens of seconds to compile)
// compiles in one, another user's hello world runs at once in the other,
// and a third user's bomb meanwhile is answered 503 with Retry-After
// instead of taking the last worker. The bomb itself ends with its caller.
func TestServeCompileBombDoesNotMakeOthersWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	bomber, _, _ := s.newTierUser("patient", func(tr *wasmwiz.Tier) { tr.Timeout = 2 * time.Minute }) // the server's maximum
	second, _, _ := s.newUser("patient")
	hello, _, _ := s.newUser(wasmwiz.TierFree)
	helloWasm := testmodule.Read(t, "hello.wasm")
	if _, err := hello.Execute(ctx, &client.ExecuteRequest{Wasm: helloWasm}); err != nil {
		t.Fatalf("hello before the bomb: %v", err)
	}

	stopRSS := testenv.PeakRSS(t)
	bombCtx, stopBomb := context.WithCancel(ctx)
	defer stopBomb()
	bombDone := make(chan error, 1)
	go func() {
		_, err := bomber.CreateModule(bombCtx, client.ModuleUpload{Wasm: hostiletest.DeepLoops(30_000)})
		bombDone <- err
	}()
	testenv.WaitFor(t, "the bomb to compile in a worker", func() bool {
		return s.srv.pool.Stats().Busy == 1
	})

	refusedAt := time.Now()
	_, err := second.CreateModule(ctx, client.ModuleUpload{Wasm: hostiletest.DeepLoops(30_001)})
	refused := time.Since(refusedAt)
	wantCode(t, "a second bomb", err, wasmwiz.EUNAVAILABLE)
	if d, ok := client.RetryAfter(err); !ok || d <= 0 {
		t.Errorf("the second bomb's 503 has no Retry-After (%v %v)", d, ok)
	}
	var helloTook testenv.Latencies
	if err := timedHellos(ctx, hello, helloWasm, 3, &helloTook); err != nil {
		t.Fatalf("beside the bomb: %v", err)
	}
	select {
	case err := <-bombDone:
		t.Fatalf("the bomb ended before the hello worlds (%v): the test proves nothing", err)
	default:
	}
	stopBomb()
	<-bombDone
	testenv.Prove(t, "compile bomb: 30,000 nested loops (tens of seconds of wazero's compiler), uploaded",
		"the bomb compiles in one worker; a second bomb is refused 503 with Retry-After; another tenant's hello worlds run meanwhile",
		"time to answer", "the second bomb's 503 in "+testenv.Ms(refused),
		"other tenant's latency", helloTook.String(),
		"peak RSS", testenv.MiB(stopRSS()))
}

// TestServeCompileCacheChurn: a tenant running a stream of distinct modules,
// four times what the replica's compile cache holds, does not push another
// tenant's compiled module out of it: the other's next run is served from
// memory (compile_cached, no compile time), as the churner's oldest
// modules are not. Through serve: the owner goes from the caller's key to
// the worker that compiles.
func TestServeCompileCacheChurn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// One worker, whose memory holds about a dozen small modules.
	s := startServe(t, serveEnv(t, map[string]string{"WASMWIZ_WORKERS": "1", "WASMWIZ_COMPILE_CACHE": "1MiB"}), ServeOptions{})
	other, hello := otherTenant(t, ctx, s)
	churner, _, _ := s.newUser(wasmwiz.TierPro)
	const modules = 48
	run := func(c *client.Client, wasm []byte, fn string) *api.Result {
		t.Helper()
		res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: wasm, Function: fn})
		if err != nil || res.Status != wasmwiz.StatusOK {
			t.Fatalf("run: %v %+v", err, res)
		}
		return res
	}
	for n := range int32(modules) {
		if res := run(churner, hostiletest.Const(n), "get"); res.CompileCached {
			t.Fatalf("the churner's module %d, new, reported cached", n)
		}
	}
	res := run(other, hello, "")
	if !res.CompileCached || res.CompileDuration != 0 {
		t.Errorf("the other tenant's module after the churn: cached %v, compile %v; want it still compiled in memory", res.CompileCached, res.CompileDuration)
	}
	if first := run(churner, hostiletest.Const(0), "get"); first.CompileCached && first.CompileDuration == 0 {
		t.Error("the churner's first module is still in memory: the cache's bound did not bind")
	}
	testenv.Prove(t, "compile cache churn: a tenant runs 48 distinct modules through a replica whose compile cache holds about 12 (1 MiB, one worker)",
		"the other tenant's module stays compiled in memory (compile_cached, no compile time); the churner's oldest is evicted",
		"other tenant's compile", res.CompileDuration.String())
}
