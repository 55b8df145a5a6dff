package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdWorker(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz worker is not built yet")
}
