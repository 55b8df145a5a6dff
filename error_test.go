package wasmwiz

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestAsError: AsError finds the first *Error in a chain (HasCode says
// whether there is one), and ErrorCode and ErrorMessage read it or fall back.
func TestAsError(t *testing.T) {
	coded := Errorf(ENOTFOUND, "module not found")
	outer := WrapError(EUNAVAILABLE, coded, "database unavailable")
	tests := []struct {
		name          string
		err           error
		want          *Error
		code, message string
	}{
		{"nil", nil, nil, "", ""},
		{"a plain error", errors.New("disk on fire"), nil, EINTERNAL, "internal error"},
		{"an *Error", coded, coded, ENOTFOUND, "module not found"},
		{"an *Error wrapping an *Error", outer, outer, EUNAVAILABLE, "database unavailable"},
		{"a plain error wrapping an *Error", fmt.Errorf("find module: %w", coded), coded, ENOTFOUND, "module not found"},
	}
	for _, tt := range tests {
		if got := AsError(tt.err); got != tt.want {
			t.Errorf("AsError(%s) = %v, want %v", tt.name, got, tt.want)
		}
		if got := HasCode(tt.err); got != (tt.want != nil) {
			t.Errorf("HasCode(%s) = %v", tt.name, got)
		}
		if got := ErrorCode(tt.err); got != tt.code {
			t.Errorf("ErrorCode(%s) = %q, want %q", tt.name, got, tt.code)
		}
		if got := ErrorMessage(tt.err); got != tt.message {
			t.Errorf("ErrorMessage(%s) = %q, want %q", tt.name, got, tt.message)
		}
	}
}

// TestRetryLater: the error carries its code, its message and the
// Retry-After that RetryAfter reads.
func TestRetryLater(t *testing.T) {
	err := RetryLater(ERATELIMIT, 3*time.Second, "at most %d a minute", 30)
	if err.Code != ERATELIMIT || err.Message != "at most 30 a minute" {
		t.Fatalf("RetryLater: %+v", err)
	}
	if d, ok := RetryAfter(fmt.Errorf("wrapped: %w", err)); !ok || d != 3*time.Second {
		t.Fatalf("RetryAfter: %v %v", d, ok)
	}
}
