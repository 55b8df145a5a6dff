package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

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
	other, _, _ := s.newUser(wasmwiz.TierPro)
	hello := testmodule.Read(t, "hello.wasm")
	probe := testmodule.Read(t, "fsprobe.wasm")
	if _, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("hello before the attacks: %v", err)
	}

	// meanwhile runs attack while the other tenant runs hello worlds, and
	// returns how long the attack took and the hello worlds' latencies.
	meanwhile := func(name string, attack func() error) (time.Duration, *testenv.Latencies) {
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
				t.Fatalf("%s: the other tenant's hello: %+v, %v", name, res, err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				return took, &hellos
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	// Links multiplying the outputs.
	links := []testenv.ArchiveEntry{{Name: "x", Type: tar.TypeReg, Data: "x"}}
	for i := range 99 {
		links = append(links, testenv.ArchiveEntry{Name: fmt.Sprintf("l%02d", i), Type: tar.TypeSymlink, Linkname: "."})
	}
	var files []api.File
	took, hellos := meanwhile("links", func() error {
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
	took, hellos = meanwhile("skipped entries", func() error {
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
	var peakFDs atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := fds(); n > peakFDs.Load() {
				peakFDs.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var levels int
	took, hellos = meanwhile("deep directories", func() error {
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
	close(stop)
	<-sampled
	testenv.Prove(t, "a guest making directories as deep as its write budget allows (free: 16MiB, 4,096 levels at 4 KiB each), and outputs \".\" over them, sqlite",
		fmt.Sprintf("mkdir fails ENAMETOOLONG past %d levels; the tree is collected and removed; another tenant's runs complete", wasmwiz.MaxFileDepth),
		"levels made", fmt.Sprint(levels),
		"serve's open descriptors (the test's process, sampled every 5 ms)", fmt.Sprintf("peak %d, %d at rest", peakFDs.Load(), atRest),
		"time to answer", testenv.Ms(took), "other tenant's latency", hellos.String())

	// A module of very many exports, uploaded, listed, called.
	many := hostiletest.ManyExports(100_000, 50)
	var inspection, errText int
	took, hellos = meanwhile("many exports", func() error {
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
		_, err = attacker.Execute(ctx, &client.ExecuteRequest{ModuleID: m.ID, Function: "nope"})
		errText = len(client.ErrorMessage(err))
		if codeOf(err) != wasmwiz.EINVALID || errText > 8<<10 {
			return fmt.Errorf("an unknown function: %d bytes of %v, want EINVALID within 8 KiB", errText, codeOf(err))
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
	took, hellos = meanwhile("args", func() error {
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
