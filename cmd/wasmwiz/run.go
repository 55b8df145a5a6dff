package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdRun(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz run is not built yet")
}
