package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/worker"
)

// workerChild is the test binary as a guest worker: serve's end-to-end
// tests start their worker pools by re-executing the test binary, which
// then runs the same ServeProcess as `wasmwiz worker`, on the real engine.
const workerChild testenv.Child = "WASMWIZ_TEST_WORKER_CHILD"

func TestMain(m *testing.M) {
	workerChild.Become(func() error {
		return worker.ServeProcess(context.Background(), worker.ServeOptions{NewEngine: newWorkerEngine})
	})
	// The end-to-end tests mostly wait (on servers, worker processes,
	// intervals). At 8, a 13 MB upload of TestServeLargeBodiesBounded found
	// every compile slot busy for 2 s on a loaded machine.
	testenv.DefaultParallel(4)
	os.Exit(testenv.Run(m))
}

// runMain runs the CLI with stdin and the environment vars, and returns the
// exit status, stdout and stderr.
func runMain(args []string, stdin string, vars map[string]string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	env := &Env{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
	code := Main(context.Background(), env, args)
	return code, stdout.String(), stderr.String()
}
