package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdBench(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz bench is not built yet")
}
