package wasmwiz_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz"
)

// TestRecordKeepsABoundedCall: a request may carry a MiB of args and env
// names and a function may return thousands of values; the run gets and
// returns them whole, but its record, kept for the tier's retention and
// listed a thousand at a time, keeps RecordDetailBytes of each side (the
// leading strings, the last cut at a character) and says it cut them.
func TestRecordKeepsABoundedCall(t *testing.T) {
	t.Parallel()
	arg := func(i int) string { return fmt.Sprintf("%04d", i) + strings.Repeat("a", 196) }
	many := make([]string, 4000) // 800 KB, within the argv caps
	for i := range many {
		many[i] = arg(i)
	}
	names := map[string]string{}
	for i := range 1000 {
		names[fmt.Sprintf("N%04d", i)+strings.Repeat("é", 60)] = "v"
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		results int
		cut     bool
	}{
		{"args past the budget", many, nil, 5000, true},
		{"env names past the budget", many[:30], names, 2, true},
		{"a call within the budget", many[:3], map[string]string{"K": "v"}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			results := make([]wasmwiz.Value, tc.results)
			for i := range results {
				results[i] = wasmwiz.Value{Type: "i64", Bits: uint64(1) << 62}
			}
			f := newExecutorFixture(t)
			var got *wasmwiz.RunRequest
			f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
				got = req
				return &wasmwiz.Result{Status: wasmwiz.StatusOK, Results: results, Duration: time.Millisecond,
					Module: wasmwiz.ModuleInfo{SHA256: "abc"}}, nil
			}
			ex, err := f.ex.Execute(userCtx(7, wasmwiz.TierFree), nil, &wasmwiz.RunRequest{Wasm: wasmHeader, Args: tc.args, Env: tc.env})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Args, tc.args) || len(got.Env) != len(tc.env) || len(ex.Result.Results) != tc.results {
				t.Fatalf("the run got %d args and %d env vars and returned %d results, want all %d, %d and %d",
					len(got.Args), len(got.Env), len(ex.Result.Results), len(tc.args), len(tc.env), tc.results)
			}
			r := f.usage.Runs()[0]
			if r.DetailTruncated != tc.cut {
				t.Fatalf("detail_truncated %v, want %v", r.DetailTruncated, tc.cut)
			}
			call := 0
			for _, s := range slices.Concat(r.Args, r.EnvNames) {
				call += len(s)
				if !utf8.ValidString(s) {
					t.Fatalf("%q in the record: cut inside a character", s)
				}
			}
			whole := slices.Concat(tc.args, wasmwiz.EnvNames(tc.env))
			kept := slices.Concat(r.Args, r.EnvNames)
			last := len(kept) - 1
			switch {
			case !tc.cut && !slices.Equal(kept, whole):
				t.Fatalf("a call within the budget kept %d of its %d strings", len(kept), len(whole))
			case tc.cut && (call > wasmwiz.RecordDetailBytes || call < wasmwiz.RecordDetailBytes-1):
				t.Fatalf("the record keeps %d bytes of args and env names, want RecordDetailBytes (%d) but for a split character", call, wasmwiz.RecordDetailBytes)
			case tc.cut && (!slices.Equal(kept[:last], whole[:last]) || !strings.HasPrefix(whole[last], kept[last]) || kept[last] == whole[last]):
				t.Fatal("the record does not keep the leading strings, the last of them cut")
			}
			bytes := 0
			for _, v := range r.Results {
				bytes += len(v.Type) + len(v.Value)
			}
			if bytes > wasmwiz.RecordDetailBytes || len(r.Results) == 0 || (len(r.Results) == tc.results) == (tc.results == 5000) {
				t.Fatalf("the record keeps %d of %d results (%d bytes), want the leading ones within %d bytes",
					len(r.Results), tc.results, bytes, wasmwiz.RecordDetailBytes)
			}
		})
	}
}

// TestFunctionNameIsBounded: the name of the function a request calls is
// kept whole in its record, so it has a bound.
func TestFunctionNameIsBounded(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	_, err := f.ex.Execute(userCtx(7, wasmwiz.TierFree), nil, &wasmwiz.RunRequest{Wasm: wasmHeader, Function: strings.Repeat("f", 1025)})
	if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || len(f.runs) != 0 {
		t.Fatalf("a 1025-byte function name: %v, %d runs", err, len(f.runs))
	}
}
