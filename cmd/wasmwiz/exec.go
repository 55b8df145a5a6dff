package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdExec(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz exec is not built yet")
}
