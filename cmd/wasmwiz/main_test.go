package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"strconv"
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
	flag.Parse()
	defaultParallel(packageParallel)
	os.Exit(testenv.Run(m))
}

// packageParallel is how many of this package's parallel tests run at once
// unless -parallel says otherwise. They mostly wait (on servers, worker
// processes, intervals), so GOMAXPROCS, the default, leaves a 2-core
// machine idle for most of the package's time. The rest of the module
// keeps the default: a higher one made a browser test time out.
const packageParallel = 4

// defaultParallel sets -test.parallel to n when the command line did not
// set it.
func defaultParallel(n int) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}

// runMain runs the CLI with stdin and the environment vars, and returns the
// exit status, stdout and stderr.
func runMain(args []string, stdin string, vars map[string]string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	env := &Env{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
	code := Main(context.Background(), env, args)
	return code, stdout.String(), stderr.String()
}
