package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wasmwiz/wasmwiz"
)

// TestDBError: driver errors become application errors with the code the
// HTTP layer and the usage writer act on; nothing needs a database.
func TestDBError(t *testing.T) {
	t.Parallel()
	appErr := wasmwiz.Errorf(wasmwiz.EFORBIDDEN, "admin only")
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"nil", nil, ""},
		{"application error kept", appErr, wasmwiz.EFORBIDDEN},
		{"no rows", pgx.ErrNoRows, wasmwiz.ENOTFOUND},
		{"unique violation", &pgconn.PgError{Code: "23505"}, wasmwiz.ECONFLICT},
		{"foreign key violation", &pgconn.PgError{Code: "23503"}, wasmwiz.EINVALID},
		{"check violation", &pgconn.PgError{Code: "23514"}, wasmwiz.EINVALID},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, wasmwiz.EUNAVAILABLE},
		{"too many connections", &pgconn.PgError{Code: "53300"}, wasmwiz.EUNAVAILABLE},
		{"connection failure", &pgconn.PgError{Code: "08006"}, wasmwiz.EUNAVAILABLE},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, wasmwiz.EUNAVAILABLE},
		{"syntax error is ours", &pgconn.PgError{Code: "42601"}, wasmwiz.EINTERNAL},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, wasmwiz.EUNAVAILABLE},
		{"wrapped refused", fmt.Errorf("acquire: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), wasmwiz.EUNAVAILABLE},
		{"deadline", context.DeadlineExceeded, wasmwiz.EUNAVAILABLE},
		{"closed pool", errors.New("closed pool"), wasmwiz.EUNAVAILABLE},
		{"anything else", errors.New("cannot scan"), wasmwiz.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := dbError(tt.err, "test")
			if code := wasmwiz.ErrorCode(got); code != tt.code {
				t.Fatalf("dbError(%v) = %v (code %q), want %q", tt.err, got, code, tt.code)
			}
			if tt.err != nil && !errors.Is(got, tt.err) {
				t.Fatalf("dbError(%v) does not wrap its cause", tt.err)
			}
		})
	}
}
