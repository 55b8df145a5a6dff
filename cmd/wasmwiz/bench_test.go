package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestBench runs `wasmwiz bench` with a few requests at two client counts:
// every target answers the module's output (bench fails on any other
// answer), each table has one row per target with its best and median
// ratio to raw wazero, and the breakdown has a line per step.
func TestBench(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"WASMWIZ_DATABASE_URL": filepath.Join(t.TempDir(), "bench.db"), "WASMWIZ_WORKERS": "2"}
	var stdout, stderr testenv.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
	err := runBench(context.Background(), env, []string{"--requests", "40", "--warmup", "5", "--rounds", "2", "--concurrency", "1,3", "--steps", "20"},
		benchOptions{serve: testServeOptions()})
	if err != nil {
		t.Fatalf("bench: %v\nstderr: %s", err, stderr.String())
	}
	out := stdout.String()
	for _, clients := range []string{"1", "3"} {
		if !strings.Contains(out, "\n"+clients+" clients:\n") {
			t.Errorf("no table for %s clients in:\n%s", clients, out)
		}
	}
	for _, target := range []string{"bare", "raw-wazero", "full-stack"} {
		row := regexp.MustCompile(`(?m)^\s*` + target + `\s+\d+\s+\d+\s+\S+\s+\S+\s+\d+\.\d\d\s+\d+\.\d\d\s*$`)
		if n := len(row.FindAllString(out, -1)); n != 2 {
			t.Errorf("%d rows for %s, want one per client count, in:\n%s", n, target, out)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^\s*raw-wazero .* 1\.00\s+1\.00\s*$`).FindAllString(out, -1)); n != 2 {
		t.Errorf("raw-wazero is not the 1.00 reference in both tables:\n%s", out)
	}
	for _, step := range []string{"authenticate the key: Directory", "authenticate the key: database", "admit:", "stored module's owner", "stored module's bytes", "run in a worker by digest", "usage record", "raw wazero run"} {
		if !regexp.MustCompile(`(?m)^  ` + step + `.*\s\d+(\.\d+)?(ns|µs|ms|s)\s*$`).MatchString(out) {
			t.Errorf("no breakdown line for %q in:\n%s", step, out)
		}
	}
	if !strings.Contains(out, "machine: ") {
		t.Errorf("no machine line:\n%s", out)
	}
	// CPU per request: this process's and the workers' are measured for
	// every target (on Linux; /proc counts in ticks of 10ms, so this few
	// requests may show 0s, and then the ratio "-"), SQLite has no Redis
	// or PostgreSQL column.
	if runtime.GOOS == "linux" {
		dur := `\d+(\.\d+)?(ns|µs|ms|s)`
		for _, target := range []string{"bare", "raw-wazero", "full-stack"} {
			row := regexp.MustCompile(`(?m)^\s*` + target + `\s+` + dur + `\s+` + dur + `\s+-\s+-\s+` + dur + `\s+(\d+\.\d\d|-)\s*$`)
			if n := len(row.FindAllString(out, -1)); n != 2 {
				t.Errorf("%d CPU rows for %s, want one per client count, in:\n%s", n, target, out)
			}
		}
	}
}

// TestBenchCPU: the CPU figures of two readings subtract and add per
// process, an unmeasured process stays unmeasured, and Redis's comes from
// INFO cpu.
func TestBenchCPU(t *testing.T) {
	t.Parallel()
	a := benchCPU{self: 5 * time.Second, workers: 3 * time.Second, redis: -1, pg: 2 * time.Second}
	b := benchCPU{self: 2 * time.Second, workers: time.Second, redis: -1, pg: -1}
	d := a.sub(b)
	if want := (benchCPU{self: 3 * time.Second, workers: 2 * time.Second, redis: -1, pg: -1}); d != want {
		t.Fatalf("sub = %+v, want %+v", d, want)
	}
	if got := d.add(d); got != (benchCPU{self: 6 * time.Second, workers: 4 * time.Second, redis: -1, pg: -1}) || got.total() != 10*time.Second {
		t.Fatalf("add = %+v, total %v", got, got.total())
	}
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\nused_cpu_sys_children:9.000000\r\n"
	if got := redisCPU(info); got != 1750*time.Millisecond {
		t.Fatalf("redisCPU = %v, want 1.75s", got)
	}
	if got := redisCPU("# CPU\r\n"); got != -1 {
		t.Fatalf("redisCPU of nothing = %v, want -1", got)
	}
}

// TestBenchFlags: bad flags are a usage error.
func TestBenchFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"zero requests", []string{"--requests", "0"}},
		{"unknown flag", []string{"--nope"}},
		{"argument", []string{"extra"}},
	}
	for _, tt := range tests {
		code, _, errOut := runMain(append([]string{"bench"}, tt.args...), "", nil)
		if code != exitUsage || !strings.HasSuffix(errOut, "\nRun 'wasmwiz help bench' for usage.\n") {
			t.Errorf("%s: exit %d, stderr %q", tt.name, code, errOut)
		}
	}
}

// TestBenchModule: the module bench embeds is its .wat source built.
func TestBenchModule(t *testing.T) {
	t.Parallel()
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm is not installed: bench.wasm is not checked against bench.wat")
	}
	out := filepath.Join(t.TempDir(), "bench.wasm")
	if b, err := exec.Command(wat2wasm, "bench.wat", "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	built, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, benchModule) {
		t.Fatal("bench.wasm is not bench.wat built: run wat2wasm bench.wat -o bench.wasm")
	}
}
