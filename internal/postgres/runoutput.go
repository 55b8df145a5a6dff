// Alike on purpose: internal/sqlite/runoutput.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too. Here a
// run's pieces are joined in SQL (string_agg of bytea), in the statement that reads or
// fails the run; SQLite has no byte-exact aggregate of blobs, so it joins them in Go.

package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

// outputStreams names the streams as run_output_chunks does, stdout first.
var outputStreams = [2]string{"stdout", "stderr"}

// runLiveOutputColumns follow runColumns, in place of runOutputColumns, when
// one run of a statement on runs is read with its output: the row's,
// followed by what its heartbeats appended while it runs, read in the same
// statement and so of one moment; keptStdout and keptStderr are each alone.
const runLiveOutputColumns = `, ` + keptStdout + `, ` + keptStderr

const (
	keptStdout = `coalesce(stdout, '') || coalesce((SELECT string_agg(c.data, '' ORDER BY c.byte_offset)
		FROM run_output_chunks c WHERE c.run_id = runs.id AND c.stream = 'stdout'), '')`
	keptStderr = `coalesce(stderr, '') || coalesce((SELECT string_agg(c.data, '' ORDER BY c.byte_offset)
		FROM run_output_chunks c WHERE c.run_id = runs.id AND c.stream = 'stderr'), '')`
)

// appendOutput appends the new bytes of each tail to run id's output
// pieces, each stream kept within limit bytes (limit < 0: no limit): one
// indexed read and at most one insert of the new bytes per stream, whatever
// the output so far.
func appendOutput(ctx context.Context, tx pgx.Tx, id string, tails [2]wasmwiz.OutputTail, limit int64) error {
	for i, t := range tails {
		if len(t.Data) == 0 {
			continue
		}
		var held int64
		err := tx.QueryRow(ctx, `SELECT byte_offset + octet_length(data) FROM run_output_chunks
			WHERE run_id = $1 AND stream = $2 ORDER BY byte_offset DESC LIMIT 1`, id, outputStreams[i]).Scan(&held)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		p, err := t.After(held, limit)
		if err != nil {
			return err
		}
		if len(p) == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, `INSERT INTO run_output_chunks (run_id, stream, byte_offset, data)
			VALUES ($1, $2, $3, $4)`, id, outputStreams[i], held, p); err != nil {
			return err
		}
	}
	return nil
}
