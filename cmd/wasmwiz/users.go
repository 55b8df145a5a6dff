package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdUsers(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz users is not built yet")
}
