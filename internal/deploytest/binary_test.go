package deploytest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// runWasmwiz runs the binary with exactly env (plus PATH) and returns its
// exit code, stdout and stderr.
func runWasmwiz(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.WasmwizBinary(t), args...)
	cmd.Env = envList(env)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("wasmwiz %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

func envList(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
