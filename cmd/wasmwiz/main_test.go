package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/worker"
)

// workerChildEnv makes the test binary a guest worker: serve's end-to-end
// tests start their worker pools by re-executing the test binary, which
// then runs the same ServeProcess as `wasmwiz worker`, on the real engine.
const workerChildEnv = "WASMWIZ_TEST_WORKER_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(workerChildEnv) == "1" {
		if err := worker.ServeProcess(context.Background(), worker.ServeOptions{NewEngine: newWorkerEngine}); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testenv.Run(m))
}
