package worker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// serverStandIn is the test binary as a server stand-in: it starts a pool,
// starts a never-ending run on it, prints its workers' pids, and waits to be
// killed.
const serverStandIn testenv.Child = "WASMWIZ_WORKER_TEST_PARENT"

// parentFilesEnv, set, is the stand-in's Options.FilesDir, and its
// never-ending run has files there.
const parentFilesEnv = "WASMWIZ_WORKER_TEST_PARENT_FILES"

func serverStandInMain() error {
	pl, err := New(context.Background(), Options{
		Size:     1,
		Spares:   1,
		Command:  workerChild.Argv(),
		Env:      []string{workerChild.Env()},
		FilesDir: os.Getenv(parentFilesEnv),
	})
	if err != nil {
		return err
	}
	req := &wasmwiz.RunRequest{Limits: wasmwiz.Limits{Timeout: time.Hour}}
	module := "fib_recursive.wasm"
	if os.Getenv(parentFilesEnv) != "" {
		module, req.Args = "fsprobe.wasm", []string{"spin"}
		req.Limits.MaxMemoryBytes, req.Limits.MaxOutputBytes = 64*wasmwiz.MiB, wasmwiz.MiB
		req.Limits.MaxFilesInBytes, req.Limits.MaxFiles, req.Limits.MaxFileWriteBytes, req.Limits.MaxFilesOutBytes = wasmwiz.MiB, 10, wasmwiz.MiB, wasmwiz.MiB
		req.Files = &wasmwiz.RunFiles{Entries: []wasmwiz.FileEntry{{Path: "in.txt", Data: []byte("held")}}}
		if err := req.Files.Check(req.Limits); err != nil {
			return err
		}
	}
	if req.Wasm, err = testmodule.ReadFile(module); err != nil {
		return err
	}
	go pl.Run(context.Background(), req)
	for len(busyPIDs(pl)) != 1 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println(strings.Trim(fmt.Sprint(pl.PIDs()), "[]"))
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test kills us
	return nil
}

// alive reports whether pid is a running process: zombies count as dead,
// since an orphan's reaper may be slow or absent in a container.
func alive(pid int) bool {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return false
	}
	st, err := p.Stat()
	return err == nil && st.State != "Z"
}

// startServerStandIn starts the test binary as a server with a pool and a
// never-ending run in one of its two workers, and returns it with its
// workers' pids.
func startServerStandIn(t *testing.T, env ...string) (*exec.Cmd, []int) {
	t.Helper()
	cmd := serverStandIn.Command(t, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close() })
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("reading the workers' pids: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(line) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("bad pid %q", f)
		}
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		t.Fatalf("pids = %v, want 2 workers", pids)
	}
	return cmd, pids
}

// TestWorkersDieWithTheServer: when the server process dies without a
// chance to close its pool (SIGKILL), its workers die too, the busy one in
// the middle of a guest that never returns included.
func TestWorkersDieWithTheServer(t *testing.T) {
	t.Parallel()
	cmd, pids := startServerStandIn(t)
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("worker %d is not running before the server dies", pid)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, pid := range pids {
		testenv.WaitFor(t, fmt.Sprintf("worker %d to die with the server", pid), func() bool { return !alive(pid) })
	}
}

// TestDeadServersFilesGo: a server killed in the middle of a run with
// files (SIGKILL: no chance to remove anything) leaves its pool's
// directory behind; the next pool to start in the same FilesDir removes
// it, and nothing a live process holds: another live pool's directory,
// one being made, or one of a version before the lock.
func TestDeadServersFilesGo(t *testing.T) {
	t.Parallel()
	filesDir := t.TempDir()
	cmd, pids := startServerStandIn(t, parentFilesEnv+"="+filesDir)
	var dead []string
	testenv.WaitFor(t, "the stand-in's run files", func() bool {
		dead, _ = filepath.Glob(filepath.Join(filesDir, filesRootPrefix+"*", "w*", "run-*", "in.txt"))
		return len(dead) == 1
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, pid := range pids {
		testenv.WaitFor(t, fmt.Sprintf("worker %d to die with the server", pid), func() bool { return !alive(pid) })
	}
	if _, err := os.Stat(dead[0]); err != nil {
		t.Fatalf("the killed server's run files are gone before a pool starts: %v", err)
	}

	opts := testOptions(t, 1, 0)
	opts.FilesDir = filesDir
	live := newTestPool(t, opts)
	held, err := lockDir(mkdir(t, filepath.Join(filesDir, filesRootPrefix+"held")))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	keep := []string{live.filesRoot, held.Name(), mkdir(t, filepath.Join(filesDir, newRootPrefix+"fresh")), mkdir(t, filepath.Join(filesDir, "wasmwiz-files-old"))}
	stale := mkdir(t, filepath.Join(filesDir, newRootPrefix+"stale"))
	past := time.Now().Add(-2 * newRootAge)
	if err := os.Chtimes(stale, past, past); err != nil {
		t.Fatal(err)
	}

	next := newTestPool(t, opts)
	for _, p := range []string{filepath.Dir(filepath.Dir(filepath.Dir(dead[0]))), stale} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
	for _, p := range append(keep, next.filesRoot) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s went: %v", p, err)
		}
	}
	// The live pool still runs files in its directory.
	f := &wasmwiz.RunFiles{Entries: []wasmwiz.FileEntry{{Path: "in.txt", Data: []byte("mine")}}}
	if err := f.Check(fileLimits()); err != nil {
		t.Fatal(err)
	}
	res, err := live.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "fsprobe.wasm"), Args: []string{"cat", "in.txt"}, Limits: fileLimits(), Files: f})
	if err != nil || string(res.Stdout) != "cat in.txt: ok mine\n" {
		t.Fatalf("a run on the live pool: %v %+v", err, res)
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
