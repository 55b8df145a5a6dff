package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdMigrate(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz migrate is not built yet")
}
