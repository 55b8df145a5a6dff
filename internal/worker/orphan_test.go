package worker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// parentEnv makes the test binary a server stand-in: it starts a pool,
// starts a never-ending run on it, prints its workers' pids, and waits to be
// killed.
const parentEnv = "WASMWIZ_WORKER_TEST_PARENT"

func poolParentMain() int {
	pl, err := New(context.Background(), Options{
		Size:    1,
		Spares:  1,
		Command: []string{os.Args[0], "-test.run=^$"},
		Env:     []string{childEnv + "=1"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	wasm, err := testmodule.ReadFile("fib_recursive.wasm")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: wasmwiz.Limits{Timeout: time.Hour}})
	for len(busyPIDs(pl)) != 1 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println(strings.Trim(fmt.Sprint(pl.PIDs()), "[]"))
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test kills us
	return 0
}

// alive reports whether pid is a running process: zombies count as dead,
// since an orphan's reaper may be slow or absent in a container.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// TestWorkersDieWithTheServer: when the server process dies without a
// chance to close its pool (SIGKILL), its workers die too, the busy one in
// the middle of a guest that never returns included.
func TestWorkersDieWithTheServer(t *testing.T) {
	t.Parallel()
	cmd := testenv.Command(t, os.Args[0], "-test.run=^$")
	cmd.Env = []string{parentEnv + "=1"}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
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
