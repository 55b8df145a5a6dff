package wasmwiz_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

func TestCheckArgv(t *testing.T) {
	t.Parallel()
	manyEnv := func(n, size int) map[string]string {
		env := map[string]string{}
		for i := range n {
			env[fmt.Sprintf("V%05d", i)] = strings.Repeat("x", size)
		}
		return env
	}
	tests := []struct {
		name     string
		argv0    string
		args     []string
		env      map[string]string
		code     string
		contains string
	}{
		{name: "nothing"},
		{name: "at every count cap", args: make([]string, wasmwiz.MaxArgs), env: manyEnv(wasmwiz.MaxEnvVars, 0)},
		{name: "one argument at its cap", args: []string{strings.Repeat("a", wasmwiz.MaxArgBytes)}},
		{name: "one argument too many", args: make([]string, wasmwiz.MaxArgs+1), code: wasmwiz.ETOOLARGE, contains: "more than 4096 arguments"},
		{name: "one variable too many", env: manyEnv(wasmwiz.MaxEnvVars+1, 0), code: wasmwiz.ETOOLARGE, contains: "more than 4096 environment variables"},
		{name: "an argument over its cap", args: []string{"ok", strings.Repeat("a", wasmwiz.MaxArgBytes+1)}, code: wasmwiz.ETOOLARGE,
			contains: "argument 2 is 131073B, over the 128KiB limit of one argument"},
		{name: "a variable over its cap (K=V)", env: map[string]string{"K": strings.Repeat("v", wasmwiz.MaxArgBytes-1)}, code: wasmwiz.ETOOLARGE,
			contains: `environment variable "K" is 131073B, over the 128KiB limit`},
		{name: "args over the total", args: []string{strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10),
			strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10),
			strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10), strings.Repeat("a", 100<<10)},
			code: wasmwiz.ETOOLARGE, contains: "over the 1MiB limit of both together"},
		{name: "args and env over the total together", args: []string{strings.Repeat("a", 120<<10)}, env: manyEnv(8, 120<<10),
			code: wasmwiz.ETOOLARGE, contains: "over the 1MiB limit of both together"},
		{name: "exactly the total", args: []string{strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1), strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1),
			strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1), strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1), strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1),
			strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1), strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1), strings.Repeat("a", wasmwiz.MaxArgvBytes/8-1)}},
		{name: "NUL in an argument", args: []string{"a\x00"}, code: wasmwiz.EINVALID, contains: "argument 1 contains a NUL byte"},
		{name: "NUL in argv[0]", argv0: "m\x00", code: wasmwiz.EINVALID, contains: "module name contains a NUL byte"},
		{name: "empty variable name", env: map[string]string{"": "v"}, code: wasmwiz.EINVALID, contains: "must be non-empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := wasmwiz.CheckArgv(tt.argv0, tt.args, tt.env)
			if code := wasmwiz.ErrorCode(err); code != tt.code && !(tt.code == "" && err == nil) {
				t.Fatalf("code %q (%v), want %q", code, err, tt.code)
			}
			if tt.code == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.contains != "" && !strings.Contains(wasmwiz.ErrorMessage(err), tt.contains) {
				t.Errorf("message %q, want it to contain %q", wasmwiz.ErrorMessage(err), tt.contains)
			}
		})
	}
}

// TestArgvBudgetStopsAtTheFirst: a decoder counting as it reads is refused
// at the first argument past the cap, without the rest.
func TestArgvBudgetStopsAtTheFirst(t *testing.T) {
	t.Parallel()
	var b wasmwiz.ArgvBudget
	for i := range wasmwiz.MaxArgs {
		if err := b.AddArg("x"); err != nil {
			t.Fatalf("argument %d: %v", i+1, err)
		}
	}
	if err := b.AddArg("x"); wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Fatalf("argument %d: %v, want ETOOLARGE", wasmwiz.MaxArgs+1, err)
	}
}
