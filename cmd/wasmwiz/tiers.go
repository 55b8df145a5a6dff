package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

func cmdTiers(ctx context.Context, env *Env, args []string) error {
	return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "wasmwiz tiers is not built yet")
}
