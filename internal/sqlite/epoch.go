// Alike on purpose: internal/postgres/epoch.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"

	"github.com/wasmwiz/wasmwiz"
)

// CacheEpoch returns the database's cache epoch, which the triggers of
// migration 0002 raise in every transaction that changes what the execute
// path caches. It needs no caller.
func (db *DB) CacheEpoch(ctx context.Context) (int64, error) {
	var e int64
	if err := db.reader.QueryRowContext(ctx, `SELECT epoch FROM cache_epoch WHERE id = 1`).Scan(&e); err != nil {
		return 0, dbError(err, "read the cache epoch")
	}
	return e, nil
}

var _ wasmwiz.CacheEpochService = (*DB)(nil)
