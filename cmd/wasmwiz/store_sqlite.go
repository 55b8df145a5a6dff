package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz/internal/sqlite"
)

// openSQLite opens the embedded store at path.
func openSQLite(ctx context.Context, path string) (Store, error) {
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err // not a nil *sqlite.DB in a non-nil Store
	}
	return db, nil
}
