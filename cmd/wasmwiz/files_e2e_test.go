package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
	"github.com/wasmwiz/wasmwiz/internal/wasisuite"
)

// tarDir archives the tree under dir, as a caller sends a run's files.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// filesServer is a server whose runs get their directories in filesDir,
// with a user on a tier that runs the WASI suite's modules.
func filesServer(t *testing.T) (s *e2eServer, c *client.Client, filesDir string) {
	t.Helper()
	filesDir = t.TempDir()
	s = backends[0].serveWith(t, map[string]string{
		"WASMWIZ_FILES_DIR":   filesDir,
		"WASMWIZ_CACHE_DIR":   wasisuite.CacheDir(t),
		"WASMWIZ_MAX_TIMEOUT": "5m",
	}, ServeOptions{})
	c, _, _ = s.newTierUser("files", func(tier *wasmwiz.Tier) {
		tier.MaxModuleBytes, tier.MaxMemoryBytes, tier.Timeout = 64*wasmwiz.MiB, 512*wasmwiz.MiB, testenv.Patience
		tier.MaxFilesInBytes, tier.MaxFiles, tier.MaxFileWriteBytes, tier.MaxFilesOutBytes = 8*wasmwiz.MiB, 1000, 64*wasmwiz.MiB, 8*wasmwiz.MiB
	})
	return s, c, filesDir
}

// leftovers lists every file and directory that runs left in the pool's
// directories: anything inside a worker's directory
// (FILES_DIR/wasmwiz-pool-*/wN/...), the only place where the server
// makes temporary files.
func leftovers(t *testing.T, filesDir string) []string {
	t.Helper()
	var found []string
	_ = filepath.WalkDir(filesDir, func(p string, d fs.DirEntry, err error) error {
		if rel, _ := filepath.Rel(filesDir, p); err == nil && strings.Count(rel, string(filepath.Separator)) >= 2 {
			found = append(found, rel)
		}
		return nil
	})
	return found
}

// TestAPIWASISuite runs every preview1 test of the WASI suite (72)
// through the HTTP API, in worker processes: each of the 49 filesystem
// tests sends its root as a tar archive into the run's directory, mounted
// at "/". A test still failing is in wasisuite.KnownFailures with its
// reason.
func TestAPIWASISuite(t *testing.T) {
	t.Parallel()
	_, c, filesDir := filesServer(t)
	wasisuite.RunAll(t, "HTTP API, roots sent as tar", func(t *testing.T, tc wasisuite.Case) wasisuite.Outcome {
		req := &client.ExecuteRequest{Name: tc.Name + ".wasm", Args: tc.Spec.Args, Env: tc.Spec.Env, Body: client.BodyMultipart}
		if tc.Spec.Root != "" {
			req.Archive, req.Mount = tarDir(t, tc.RootDir()), "/"
		}
		wasm, err := os.ReadFile(tc.Wasm)
		if err != nil {
			t.Fatal(err)
		}
		req.Wasm = wasm
		res, err := c.Execute(context.Background(), req)
		if err != nil {
			t.Fatalf("Execute: %v", err)
		}
		return suiteOutcome(res)
	})
	if l := leftovers(t, filesDir); len(l) != 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// TestAPIFiles: files in, files out, and every escape attempt of
// escapeAttempts (run_test.go) through the API, in a worker; no run's
// directory outlives its answer, however the run ends.
func TestAPIFiles(t *testing.T) {
	t.Parallel()
	s, c, filesDir := filesServer(t)
	probe := testmodule.Read(t, "fsprobe.wasm")
	ctx := context.Background()
	run := func(t *testing.T, req *client.ExecuteRequest) *api.Result {
		t.Helper()
		req.Wasm = probe
		res, err := c.Execute(ctx, req)
		if err != nil {
			t.Fatalf("Execute: %v", err)
		}
		return res
	}
	t.Run("in and out", func(t *testing.T) {
		res := run(t, &client.ExecuteRequest{Mount: "/work", Outputs: []string{"out/", "*.txt"},
			Files: []client.File{{Path: "data/in.csv", Data: []byte("a,b")}, {Path: "notes.txt", Data: []byte("n")}},
			Args:  strings.Fields("cat data/in.csv cat /work/notes.txt mkdir out copy data/in.csv out/copy.csv symlink ../../x out/up")})
		if want := "cat data/in.csv: ok a,b\ncat /work/notes.txt: ok n\nmkdir out: ok\ncopy data/in.csv out/copy.csv: ok 3\nsymlink ../../x out/up: ok\n"; string(res.Stdout) != want {
			t.Fatalf("stdout %q, want %q", res.Stdout, want)
		}
		var got []string
		for _, f := range res.Files {
			got = append(got, f.Path+"="+string(f.Content))
		}
		if strings.Join(got, " ") != "notes.txt=n out/copy.csv=a,b" {
			t.Fatalf("files %v", got)
		}
	})
	t.Run("escapes", func(t *testing.T) {
		ran := 0
		for _, tt := range escapeAttempts {
			if usesFixtureLinks(tt.args) {
				continue // links out of the tree cannot be sent in: the API refuses them (below)
			}
			ran++
			res := run(t, &client.ExecuteRequest{Files: []client.File{{Path: "in.txt", Data: []byte("hello")}, {Path: "sub/.keep"}},
				Outputs: []string{"."}, Args: strings.Fields(tt.args)})
			if strings.TrimSpace(string(res.Stdout)) != tt.want {
				t.Errorf("%s: stdout %q, want %q", tt.args, res.Stdout, tt.want)
			}
			for _, f := range res.Files {
				if f.Path != "in.txt" && f.Path != "sub/.keep" {
					t.Errorf("%s: %s came back", tt.args, f.Path)
				}
			}
		}
		if ran < 10 {
			t.Fatalf("only %d escape attempts ran", ran)
		}
	})
	t.Run("archive entries leaving the tree", func(t *testing.T) {
		for name, entries := range map[string][]testenv.ArchiveEntry{
			"../": {{Name: "../evil", Type: tar.TypeReg}}, "absolute": {{Name: "/etc/cron.d/evil", Type: tar.TypeReg}},
			"link to /etc": {{Name: "etc", Type: tar.TypeSymlink, Linkname: "/etc"}},
		} {
			_, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: probe, Archive: testenv.Tar(t, entries...)})
			wantCode(t, name, err, wasmwiz.EINVALID)
			if !strings.Contains(client.ErrorMessage(err), strings.TrimPrefix(entries[0].Name, "/")) {
				t.Errorf("%s: %v does not name the entry", name, err)
			}
		}
	})
	t.Run("links in outputs", func(t *testing.T) {
		// 99 links to "." sent in, one the guest makes, and outputs that
		// cross them: a link is never followed into a directory, so x comes
		// back once; links to x come back as x under their own paths.
		entries := []testenv.ArchiveEntry{{Name: "x", Type: tar.TypeReg, Data: "x"}, {Name: "f", Type: tar.TypeSymlink, Linkname: "x"}}
		for i := range 99 {
			entries = append(entries, testenv.ArchiveEntry{Name: fmt.Sprintf("l%02d", i), Type: tar.TypeSymlink, Linkname: "."})
		}
		res := run(t, &client.ExecuteRequest{Archive: testenv.Tar(t, entries...), Outputs: []string{"*/*/*/*/x", "l00/", "g/x", "."},
			Args: strings.Fields("symlink . g symlink x h")})
		var got []string
		for _, f := range res.Files {
			got = append(got, f.Path+"="+string(f.Content))
		}
		if strings.Join(got, " ") != "f=x h=x x=x" {
			t.Fatalf("stdout %q; files %v", res.Stdout, got)
		}
	})
	t.Run("write budget", func(t *testing.T) {
		res := run(t, &client.ExecuteRequest{Outputs: []string{}, Args: []string{"fill", "big", "100000000", "cat", "missing"}})
		if s := string(res.Stdout); !strings.Contains(s, "fill big 100000000: ENOSPC after ") || !strings.Contains(s, "cat missing: ENOENT") {
			t.Fatalf("stdout %q", s)
		}
	})
	t.Run("private", func(t *testing.T) {
		// A run holding its files in one worker; another run, in the other
		// worker at the same time, sees only its own tree; a run after it
		// finds nothing of it.
		held := make(chan error, 1)
		hctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			_, err := c.Execute(hctx, &client.ExecuteRequest{Wasm: probe, Files: []client.File{{Path: "theirs.txt", Data: []byte("private")}},
				Args: []string{"write", "made.txt", "x", "spin"}})
			held <- err
		}()
		testenv.WaitFor(t, "a run holding its files", func() bool {
			for _, l := range leftovers(t, filesDir) {
				if filepath.Base(l) == "made.txt" {
					return true
				}
			}
			return false
		})
		res := run(t, &client.ExecuteRequest{Files: []client.File{{Path: "mine.txt", Data: []byte("m")}}, Args: strings.Fields("ls / ls . cat ../theirs.txt ls ..")})
		if want := "ls /: ok . .. mine.txt\nls .: ok . .. mine.txt\ncat ../theirs.txt: ENOTCAPABLE\nls ..: ENOTCAPABLE\n"; string(res.Stdout) != want {
			t.Fatalf("beside another run: stdout %q, want %q", res.Stdout, want)
		}
		stop()
		if err := testenv.Recv(t, held, "the held run's end"); err == nil {
			t.Fatal("a cancelled request answered")
		}
		testenv.WaitFor(t, "the held run's directory to go", func() bool { return len(leftovers(t, filesDir)) == 0 })
		res = run(t, &client.ExecuteRequest{Outputs: []string{"."}, Args: strings.Fields("ls / cat theirs.txt cat made.txt")})
		if want := "ls /: ok . ..\ncat theirs.txt: ENOENT\ncat made.txt: ENOENT\n"; string(res.Stdout) != want || len(res.Files) != 0 {
			t.Fatalf("after another run: stdout %q, want %q; files %+v", res.Stdout, want, res.Files)
		}
	})
	t.Run("files out past the tier's bytes", func(t *testing.T) {
		res := run(t, &client.ExecuteRequest{Outputs: []string{"out/"}, Args: strings.Fields("mkdir out fill out/big 9000000 write out/small s")})
		if res.Status != api.StatusOK || len(res.Files) != 2 {
			t.Fatalf("%s: files %+v", res.Status, res.Files)
		}
		big, small := res.Files[0], res.Files[1]
		if big.Path != "out/big" || !big.Omitted || big.Content != nil || big.Size != 9000000 || len(big.SHA256) != 64 {
			t.Errorf("a file over max_files_out_bytes (8MiB): %+v", big)
		}
		if small.Path != "out/small" || small.Size != 1 || string(small.Content) != "s" {
			t.Errorf("a smaller file after it still fits: %+v", small)
		}
	})
	t.Run("cleanup", func(t *testing.T) {
		files := []client.File{{Path: "in.txt", Data: []byte("x")}}
		res := run(t, &client.ExecuteRequest{Files: files, Args: []string{"trap"}})
		if res.Status != api.StatusTrap {
			t.Fatalf("trap: %s", res.Status)
		}
		res = run(t, &client.ExecuteRequest{Files: files, Args: []string{"spin"}, Timeout: 300 * time.Millisecond, Outputs: []string{"."}})
		if res.Status != api.StatusTimeout || len(res.Files) != 1 {
			t.Fatalf("timeout: %s %+v", res.Status, res.Files)
		}
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			testenv.WaitFor(t, "a run in a worker", func() bool { return len(leftovers(t, filesDir)) > 0 })
			cancel()
		}()
		_, err := c.Execute(cctx, &client.ExecuteRequest{Wasm: probe, Files: files, Args: []string{"spin"}})
		if err == nil {
			t.Fatal("a cancelled request answered")
		}
		testenv.WaitFor(t, "the run's directory to go", func() bool { return len(leftovers(t, filesDir)) == 0 })

		// A worker that dies in the middle of a run (killed from outside:
		// a crash of the runtime) leaves nothing either. It is killed once
		// the guest has written its file, in the middle of the run.
		partial := filepath.Join("out", "partial")
		killed := make(chan []int, 1)
		go func() {
			testenv.WaitFor(t, "the guest to write its file", func() bool {
				return slices.ContainsFunc(leftovers(t, filesDir), func(p string) bool { return strings.HasSuffix(p, partial) })
			})
			pids := s.srv.pool.PIDs()
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			killed <- pids
		}()
		// A SIGKILL the pool did not send is EUNAVAILABLE, to retry.
		_, err = c.Execute(ctx, &client.ExecuteRequest{Wasm: probe, Files: files, Args: []string{"mkdir", "out", "write", "out/partial", "p", "spin"}})
		wantCode(t, "a run whose worker was killed", err, wasmwiz.EUNAVAILABLE)
		testenv.WaitFor(t, "the dead worker's directory to go", func() bool { return len(leftovers(t, filesDir)) == 0 })
		pids := testenv.Recv(t, killed, "the killed workers")
		testenv.WaitFor(t, "the killed workers replaced", func() bool {
			return s.srv.PoolStats().Idle > 0 && !slices.ContainsFunc(s.srv.pool.PIDs(), func(p int) bool { return slices.Contains(pids, p) })
		})
		if res := run(t, &client.ExecuteRequest{Files: files, Args: []string{"cat", "in.txt"}}); string(res.Stdout) != "cat in.txt: ok x\n" {
			t.Fatalf("a run after the crash: %q", res.Stdout)
		}
	})
	if l := leftovers(t, filesDir); len(l) != 0 {
		t.Fatalf("run directories left: %v", l)
	}
}

// usesFixtureLinks reports whether an escape attempt goes through a link
// that escapeFixture plants in the tree (abs, up, updir).
func usesFixtureLinks(args string) bool {
	for _, f := range strings.Fields(args) {
		if f == "abs" || f == "up" || f == "updir" || strings.HasPrefix(f, "updir/") {
			return true
		}
	}
	return false
}

// TestExecFiles: wasmwiz exec sends files and an archive, and writes what
// comes back into --out-dir.
func TestExecFiles(t *testing.T) {
	t.Parallel()
	s, _, _ := filesServer(t)
	_, _, key := s.newUser("files")
	dir := t.TempDir()
	in := filepath.Join(dir, "input.csv")
	if err := os.WriteFile(in, []byte("1,2"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "lib", "a.txt"), []byte("lib"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "src.tar")
	if err := os.WriteFile(archive, tarDir(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	code, stdout, stderr := runMain([]string{"exec", "--server", s.url, "--key", key, "--file", in + ":data/in.csv", "--archive", archive,
		"--mount", "/work", "--output", "results/", "--out-dir", out, testmodule.Path(t, "fsprobe.wasm"),
		"cat", "data/in.csv", "cat", "lib/a.txt", "mkdir", "results", "copy", "data/in.csv", "results/r.csv"}, "", nil)
	if code != 0 || stdout != "cat data/in.csv: ok 1,2\ncat lib/a.txt: ok lib\nmkdir results: ok\ncopy data/in.csv results/r.csv: ok 3\n" {
		t.Fatalf("exit %d\nstdout %q\nstderr %s", code, stdout, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(out, "results", "r.csv")); err != nil || string(b) != "1,2" {
		t.Fatalf("results/r.csv: %q %v", b, err)
	}
	// --follow prints the output as it comes, and the files still land.
	followed := filepath.Join(dir, "followed")
	code, stdout, stderr = runMain([]string{"exec", "--server", s.url, "--key", key, "--follow", "--file", in + ":in.csv",
		"--output", "out/", "--out-dir", followed, testmodule.Path(t, "fsprobe.wasm"), "mkdir", "out", "copy", "in.csv", "out/r.csv"}, "", nil)
	if code != 0 || stdout != "mkdir out: ok\ncopy in.csv out/r.csv: ok 3\n" {
		t.Fatalf("--follow: exit %d\nstdout %q\nstderr %s", code, stdout, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(followed, "out", "r.csv")); err != nil || string(b) != "1,2" {
		t.Fatalf("--follow: out/r.csv: %q %v", b, err)
	}
	// A stored module: its files come back the same way (the answer as a
	// tar), and an omitted file is named.
	mod, err := s.client(key).CreateModule(context.Background(), client.ModuleUpload{Wasm: testmodule.Read(t, "fsprobe.wasm"), Name: "fsprobe.wasm"})
	if err != nil {
		t.Fatal(err)
	}
	stored := filepath.Join(dir, "stored")
	code, stdout, stderr = runMain([]string{"exec", "--server", s.url, "--key", key, "--module-id", mod.ID, "--output", "*.bin",
		"--out-dir", stored, "fill", "a.bin", "1000", "fill", "z.bin", "9000000"}, "", nil)
	if code != 0 || stdout != "fill a.bin 1000: ok 1000\nfill z.bin 9000000: ok 9000000\n" || !strings.Contains(stderr, "z.bin (") {
		t.Fatalf("--module-id: exit %d\nstdout %q\nstderr %s", code, stdout, stderr)
	}
	if st, err := os.Stat(filepath.Join(stored, "a.bin")); err != nil || st.Size() != 1000 {
		t.Fatalf("--module-id: a.bin: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(stored, "z.bin")); !os.IsNotExist(err) {
		t.Fatalf("--module-id: z.bin, over max_files_out_bytes, was written: %v", err)
	}
	code, _, stderr = runMain([]string{"exec", "--server", s.url, "--key", key, "--output", "x", testmodule.Path(t, "fsprobe.wasm")}, "", nil)
	if code != 2 || !strings.Contains(stderr, "--output needs --out-dir") {
		t.Fatalf("--output without --out-dir: exit %d %s", code, stderr)
	}
}

// TestWriteOutputs: what a server sends back is written only under
// --out-dir, and a damaged file is an error.
func TestWriteOutputs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	env := &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	good := wasmwiz.OutputFile{Path: "a/b.txt", Data: []byte("b"), SHA256: sha256Hex([]byte("b"))}
	if err := writeOutputs(env, out, []wasmwiz.OutputFile{good, {Path: "big", Size: 9, Omitted: true}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "a", "b.txt")); string(b) != "b" || !strings.Contains(env.Stderr.(*bytes.Buffer).String(), "big (9B) did not come back") {
		t.Fatalf("a/b.txt %q, stderr %q", b, env.Stderr)
	}
	for _, bad := range []wasmwiz.OutputFile{
		{Path: "../escaped", Data: []byte("x"), SHA256: sha256Hex([]byte("x"))},
		{Path: "/tmp/escaped", Data: []byte("x"), SHA256: sha256Hex([]byte("x"))},
		{Path: "damaged", Data: []byte("x"), SHA256: sha256Hex([]byte("y"))},
	} {
		if err := writeOutputs(env, out, []wasmwiz.OutputFile{bad}); err == nil {
			t.Errorf("%s was written", bad.Path)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escaped")); err == nil {
		t.Fatal("a file was written outside --out-dir")
	}
	// A link planted in --out-dir does not lead the writes out either.
	if err := os.Symlink(dir, filepath.Join(out, "link")); err != nil {
		t.Fatal(err)
	}
	if err := writeOutputs(env, out, []wasmwiz.OutputFile{{Path: "link/escaped", Data: []byte("x"), SHA256: sha256Hex([]byte("x"))}}); err == nil {
		t.Fatal("written through a link out of --out-dir")
	}
}

// TestAPIFilesClient: every way in and out through the Go client on the
// real server: a stored module with a JSON body, a zip and a tar.gz
// archive, the answer as a zip and as a tar (result.json and files/...),
// and the tier's file limits in /api/v1/me.
func TestAPIFilesClient(t *testing.T) {
	t.Parallel()
	_, c, filesDir := filesServer(t)
	ctx := context.Background()
	probe := testmodule.Read(t, "fsprobe.wasm")
	mod, err := c.CreateModule(ctx, client.ModuleUpload{Wasm: probe, Name: "fsprobe.wasm"})
	if err != nil {
		t.Fatal(err)
	}
	zipped := testenv.Zip(t, testenv.ArchiveEntry{Name: "lib/a.txt", Data: "from the zip"}, testenv.ArchiveEntry{Name: "lib/b.txt", Data: "b"})
	gzipped := testenv.Gzip(t, testenv.Tar(t, testenv.ArchiveEntry{Name: "lib/a.txt", Type: tar.TypeReg, Data: "from the tar.gz"}))
	args := strings.Fields("cat lib/a.txt cat /work/data/in.csv mkdir out copy lib/a.txt out/a.txt")
	for _, tt := range []struct {
		name    string
		archive []byte
		body    client.Body
		want    string
	}{
		{"stored module, JSON, zip", zipped, client.BodyJSON, "from the zip"},
		{"stored module, multipart, tar.gz", gzipped, client.BodyMultipart, "from the tar.gz"},
	} {
		ex, err := c.ExecuteModule(ctx, mod.ID, &client.ExecuteRequest{Body: tt.body, Archive: tt.archive, Mount: "/work",
			Files: []client.File{{Path: "data/in.csv", Data: []byte("1,2")}}, Outputs: []string{"out/*.txt"}, Args: args})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		res := ex.Result
		want := "cat lib/a.txt: ok " + tt.want + "\ncat /work/data/in.csv: ok 1,2\nmkdir out: ok\ncopy lib/a.txt out/a.txt: ok " +
			strconv.Itoa(len(tt.want)) + "\n"
		if string(res.Stdout) != want {
			t.Fatalf("%s: stdout %q, want %q (stderr %q)", tt.name, res.Stdout, want, res.Stderr)
		}
		if len(res.Files) != 1 || res.Files[0].Path != "out/a.txt" || string(res.Files[0].Content) != tt.want ||
			res.Files[0].Size != int64(len(tt.want)) || res.Files[0].SHA256 != sha256Hex([]byte(tt.want)) {
			t.Fatalf("%s: files %+v", tt.name, res.Files)
		}
	}

	for _, media := range []string{"application/zip", "application/x-tar"} {
		b, err := c.ExecuteArchive(ctx, &client.ExecuteRequest{Wasm: probe, Body: client.BodyMultipart, Outputs: []string{"out/"},
			Args: strings.Fields("mkdir out write out/r.txt report fill out/big.bin 70000")}, media)
		if err != nil {
			t.Fatalf("%s: %v", media, err)
		}
		got := map[string][]byte{}
		if media == "application/zip" {
			zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range zr.File {
				rc, _ := f.Open()
				got[f.Name], _ = io.ReadAll(rc)
				_ = rc.Close()
			}
		} else {
			tr := tar.NewReader(bytes.NewReader(b))
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				if h.Typeflag == tar.TypeReg {
					got[h.Name], _ = io.ReadAll(tr)
				}
			}
		}
		var res api.Result
		if err := json.Unmarshal(got["result.json"], &res); err != nil {
			t.Fatalf("%s: result.json %q: %v", media, got["result.json"], err)
		}
		if res.Status != api.StatusOK || len(res.Files) != 2 || string(got["files/out/r.txt"]) != "report" || len(got["files/out/big.bin"]) != 70000 || len(got) != 3 {
			t.Fatalf("%s: result %+v, entries %d", media, res, len(got))
		}
		for _, f := range res.Files {
			if f.Content != nil || sha256Hex(got["files/"+f.Path]) != f.SHA256 {
				t.Fatalf("%s: %+v does not describe files/%s", media, f, f.Path)
			}
		}
	}

	me, err := c.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]int64{}
	for _, l := range me.Limits {
		shown[l.Name] = l.Value
	}
	for name, want := range map[string]int64{"max_files_in_bytes": 8 * wasmwiz.MiB, "max_files": 1000, "max_file_write_bytes": 64 * wasmwiz.MiB, "max_files_out_bytes": 8 * wasmwiz.MiB} {
		if shown[name] != want {
			t.Errorf("/api/v1/me %s = %d, want %d", name, shown[name], want)
		}
	}
	if l := leftovers(t, filesDir); len(l) != 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// TestServeMaxFileWrite: WASMWIZ_MAX_FILE_WRITE clamps every tier's
// max_file_write_bytes, for runs answered at once and for background runs,
// so that the operator sizes WASMWIZ_FILES_DIR's disk once for any tier.
func TestServeMaxFileWrite(t *testing.T) {
	t.Parallel()
	s := backends[0].serveWith(t, map[string]string{"WASMWIZ_MAX_FILE_WRITE": "64KiB"}, ServeOptions{})
	c, _, _ := s.newUser(wasmwiz.TierEnterprise) // 4GiB, seeded before the server's maximum applied
	ctx := context.Background()
	req := &client.ExecuteRequest{Wasm: testmodule.Read(t, "fsprobe.wasm"), Outputs: []string{}, Args: []string{"fill", "big", "1000000"}}
	written := func(what string, stdout []byte) {
		t.Helper()
		var n int64
		if _, err := fmt.Sscanf(string(stdout), "fill big 1000000: ENOSPC after %d", &n); err != nil || n > 64*wasmwiz.KiB {
			t.Fatalf("%s: %q, want ENOSPC within 64KiB", what, stdout)
		}
	}
	res, err := c.Execute(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	written("a run", res.Stdout)
	acc, err := c.ExecuteAsync(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.FollowRun(ctx, acc.ID, nil)
	if err != nil || rec.State != api.RunDone {
		t.Fatalf("FollowRun: %+v, %v", rec, err)
	}
	written("a background run", rec.Stdout)
}
