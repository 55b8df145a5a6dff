package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdServe(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz serve is not built yet")
}
