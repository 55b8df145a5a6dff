// Alike on purpose: internal/postgres/runoutput.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/wasmwiz/wasmwiz"
)

// outputStreams names the streams as run_output_chunks does, stdout first.
var outputStreams = [2]string{"stdout", "stderr"}

// queryer is what both the pools and a transaction offer.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// appendOutput appends the new bytes of each tail to run id's output
// pieces, counted to user, each stream kept within limit bytes (limit < 0: no limit): one
// indexed read and at most one insert of the new bytes per stream, whatever
// the output so far.
func appendOutput(ctx context.Context, tx *sql.Tx, id string, user int64, tails [2]wasmwiz.OutputTail, limit int64) error {
	for i, t := range tails {
		if len(t.Data) == 0 {
			continue
		}
		var held int64
		err := tx.QueryRowContext(ctx, `SELECT byte_offset + length(data) FROM run_output_chunks
			WHERE run_id = ? AND stream = ? ORDER BY byte_offset DESC LIMIT 1`, id, outputStreams[i]).Scan(&held)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		p, err := t.After(held, limit)
		if err != nil {
			return err
		}
		if len(p) == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO run_output_chunks (run_id, stream, byte_offset, data, user_id)
			VALUES (?, ?, ?, ?, ?)`, id, outputStreams[i], held, p, user); err != nil {
			return err
		}
	}
	return nil
}

// appendedOutput returns the output run id's heartbeats appended, each
// stream joined in order, and whether there was any.
func appendedOutput(ctx context.Context, q queryer, id string) (out [2][]byte, found bool, err error) {
	rows, err := q.QueryContext(ctx, `SELECT stream, data FROM run_output_chunks WHERE run_id = ? ORDER BY stream, byte_offset`, id)
	if err != nil {
		return out, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var stream string
		var data []byte
		if err := rows.Scan(&stream, &data); err != nil {
			return out, false, err
		}
		i := 0
		if stream == outputStreams[1] {
			i = 1
		}
		out[i], found = append(out[i], data...), true
	}
	return out, found, rows.Err()
}

// withAppendedOutput adds to a running run's record the output its
// heartbeats appended.
func withAppendedOutput(ctx context.Context, q queryer, r *wasmwiz.UsageRecord) error {
	if r.State != wasmwiz.RunRunning {
		return nil
	}
	out, _, err := appendedOutput(ctx, q, r.ID)
	r.Stdout, r.Stderr = append(r.Stdout, out[0]...), append(r.Stderr, out[1]...)
	return err
}

// keepAppendedOutput moves the output run id's heartbeats appended into its
// row, after what the row holds, for a run that ends without FinishRun
// writing its output.
func keepAppendedOutput(ctx context.Context, tx *sql.Tx, id string) error {
	out, found, err := appendedOutput(ctx, tx, id)
	if err != nil || !found {
		return err
	}
	var stdout, stderr []byte
	if err := tx.QueryRowContext(ctx, `SELECT stdout, stderr FROM runs WHERE id = ?`, id).Scan(&stdout, &stderr); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE runs SET stdout = ?, stderr = ? WHERE id = ?`,
		append(nonNil(stdout), out[0]...), append(nonNil(stderr), out[1]...), id); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM run_output_chunks WHERE run_id = ?`, id)
	return err
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
	rows, err := db.reader.QueryContext(ctx, `SELECT r.state, c.stream, c.byte_offset, c.data FROM runs r
		LEFT JOIN run_output_chunks c ON c.run_id = r.id AND r.state = 'running'
			AND c.byte_offset + length(c.data) > CASE c.stream WHEN 'stdout' THEN ? ELSE ? END
		WHERE r.id = ? AND (r.user_id = ? OR ?) ORDER BY c.stream, c.byte_offset`,
		from[0], from[1], id, caller.ID, caller.IsAdmin())
	if err != nil {
		return "", tails, dbError(err, "run output")
	}
	defer rows.Close()
	var state string
	found := false
	for rows.Next() {
		var stream sql.NullString
		var off sql.NullInt64
		var data []byte
		if err := rows.Scan(&state, &stream, &off, &data); err != nil {
			return "", tails, dbError(err, "run output")
		}
		found = true
		if stream.Valid {
			i := 0
			if stream.String == outputStreams[1] {
				i = 1
			}
			tails[i].Join(off.Int64, data)
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
