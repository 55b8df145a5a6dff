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
// pieces, counted to user, each stream kept within limit bytes (limit < 0: no limit): one
// indexed read and at most one insert of the new bytes per stream, whatever
// the output so far.
func appendOutput(ctx context.Context, tx pgx.Tx, id string, user int64, tails [2]wasmwiz.OutputTail, limit int64) error {
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
		if _, err := tx.Exec(ctx, `INSERT INTO run_output_chunks (run_id, stream, byte_offset, data, user_id)
			VALUES ($1, $2, $3, $4, $5)`, id, outputStreams[i], held, p, user); err != nil {
			return err
		}
	}
	return nil
}

// RunOutputSince returns a run's state and, while it runs, its output past
// from: one statement over the run and its pieces.
func (db *DB) RunOutputSince(ctx context.Context, id string, from [2]int64) (wasmwiz.RunState, [2]wasmwiz.OutputTail, error) {
	tails := [2]wasmwiz.OutputTail{{Offset: from[0]}, {Offset: from[1]}}
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return "", tails, err
	}
	if !wasmwiz.ValidRunID(id) {
		return "", tails, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run not found")
	}
	rows, err := db.pool.Query(ctx, `SELECT r.state, c.stream, c.byte_offset, c.data FROM runs r
		LEFT JOIN run_output_chunks c ON c.run_id = r.id AND r.state = 'running'
			AND c.byte_offset + octet_length(c.data) > CASE c.stream WHEN 'stdout' THEN $1::bigint ELSE $2::bigint END
		WHERE r.id = $3 AND ($4 OR r.user_id = $5) ORDER BY c.stream, c.byte_offset`,
		from[0], from[1], id, caller.IsAdmin(), caller.ID)
	if err != nil {
		return "", tails, dbError(err, "run output")
	}
	defer rows.Close()
	var state string
	found := false
	for rows.Next() {
		var stream *string
		var off *int64
		var data []byte
		if err := rows.Scan(&state, &stream, &off, &data); err != nil {
			return "", tails, dbError(err, "run output")
		}
		found = true
		if stream != nil {
			i := 0
			if *stream == outputStreams[1] {
				i = 1
			}
			tails[i].Join(*off, data)
		}
	}
	if err := rows.Err(); err != nil {
		return "", tails, dbError(err, "run output")
	}
	if !found {
		return "", tails, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
	}
	return wasmwiz.RunState(state), tails, nil
}
