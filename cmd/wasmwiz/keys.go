package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdKeys(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz keys is not built yet")
}
