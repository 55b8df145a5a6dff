package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

// openSQLite opens the embedded store at path.
func openSQLite(ctx context.Context, path string) (Store, error) {
	return nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the SQLite store is not built yet; set WASMWIZ_DATABASE_URL=postgres://…")
}
