package postgres

// SetCopyThreshold sets the batch size from which db's CreateRuns uses COPY,
// so that tests and benchmarks reach both insert paths. Call it before the
// store is used.
func SetCopyThreshold(db *DB, n int) { db.copyThreshold = n }
