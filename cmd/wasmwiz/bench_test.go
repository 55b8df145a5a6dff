package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBench runs `wasmwiz bench` with a few requests: every target answers
// the module's output (bench fails on any other answer) and the table has
// one row per target with its ratio to raw wazero.
func TestBench(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"WASMWIZ_DATABASE_URL": filepath.Join(t.TempDir(), "bench.db"), "WASMWIZ_WORKERS": "2"}
	var stdout, stderr syncBuffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
	err := runBench(context.Background(), env, []string{"--requests", "40", "--warmup", "5", "--rounds", "1", "--concurrency", "2", "--steps", "20"},
		benchOptions{serve: testServeOptions()})
	if err != nil {
		t.Fatalf("bench: %v\nstderr: %s", err, stderr.String())
	}
	out := stdout.String()
	for _, target := range []string{"bare", "raw-wazero", "full-stack"} {
		row := regexp.MustCompile(`(?m)^\s*` + target + `\s+\d+\s+\S+\s+\S+\s+\S+\s+\d+\.\d\d\s*$`)
		if !row.MatchString(out) {
			t.Errorf("no row for %s in:\n%s", target, out)
		}
	}
	if !regexp.MustCompile(`(?m)^\s*raw-wazero .* 1\.00\s*$`).MatchString(out) {
		t.Errorf("raw-wazero is not the 1.00 reference:\n%s", out)
	}
	for _, step := range []string{"authenticate the key", "find the tier", "rate quota", "concurrency slot", "load the stored module", "run in a worker", "usage record", "raw wazero run"} {
		if !regexp.MustCompile(`(?m)^  ` + step + `.*\s\d+(\.\d+)?(ns|µs|ms|s)\s*$`).MatchString(out) {
			t.Errorf("no breakdown line for %q in:\n%s", step, out)
		}
	}
	if !strings.Contains(out, "machine: ") {
		t.Errorf("no machine line:\n%s", out)
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
