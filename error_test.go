package wasmwiz

import (
	"errors"
	"fmt"
	"testing"
)

func TestHasCode(t *testing.T) {
	coded := Errorf(ENOTFOUND, "module not found")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a plain error", errors.New("disk on fire"), false},
		{"an *Error", coded, true},
		{"an *Error wrapping a plain error", WrapError(EUNAVAILABLE, errors.New("refused"), "database unavailable"), true},
		{"a plain error wrapping an *Error", fmt.Errorf("find module: %w", coded), true},
	}
	for _, tt := range tests {
		if got := HasCode(tt.err); got != tt.want {
			t.Errorf("HasCode(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
