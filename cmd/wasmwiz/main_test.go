package main

import (
	"context"
	"os"
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
	os.Exit(testenv.Run(m))
}
