package deploytest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
	binaryOut  []byte
	binaryDir  string
)

// wasmwizBinary builds cmd/wasmwiz once for the package's tests (not with
// -race: it is the program under test, not the test).
func wasmwizBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		binaryDir, binaryErr = os.MkdirTemp("", "deploytest-bin-")
		if binaryErr != nil {
			return
		}
		goCmd, err := exec.LookPath("go")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(binaryDir, "wasmwiz")
		cmd := exec.Command(goCmd, "build", "-o", binaryPath, "./cmd/wasmwiz")
		cmd.Dir = repoPath(t, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		binaryOut, binaryErr = cmd.CombinedOutput()
	})
	if binaryErr != nil {
		t.Fatalf("go build ./cmd/wasmwiz: %v\n%s", binaryErr, binaryOut)
	}
	return binaryPath
}

// runWasmwiz runs the binary with exactly env (plus PATH) and returns its
// exit code, stdout and stderr.
func runWasmwiz(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, wasmwizBinary(t), args...)
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

func TestMain(m *testing.M) {
	code := testenv.Run(m)
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
	os.Exit(code)
}
