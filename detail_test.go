package wasmwiz_test

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

// sameAsMarshal fails t unless d.AppendJSON writes what json.Marshal does,
// after what b held already, but for how each spells the replacement of
// invalid UTF-8 (the escape \ufffd, or the character U+FFFD itself as
// json.Marshal does from Go 1.27 on: the same string to any JSON reader).
func sameAsMarshal(t *testing.T, d wasmwiz.RunDetail, name string) {
	t.Helper()
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("%s: json.Marshal: %v", name, err)
	}
	got, err := d.AppendJSON([]byte("prefix"))
	if err != nil {
		t.Fatalf("%s: AppendJSON: %v", name, err)
	}
	if !json.Valid(got[len("prefix"):]) {
		t.Fatalf("%s: AppendJSON wrote invalid JSON\n%s", name, got)
	}
	if rawReplacement(string(got)) != "prefix"+rawReplacement(string(want)) {
		t.Fatalf("%s: AppendJSON wrote\n%s\nwant (json.Marshal)\nprefix%s", name, got, want)
	}
}

// rawReplacement returns JSON text with every escape \ufffd written as the
// character U+FFFD. Outside strings JSON has no backslash, and inside one a
// backslash starts a pair, so "\\ufffd" (an escaped backslash, then ufffd)
// is left alone.
func rawReplacement(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], `\ufffd`):
			b.WriteString("\ufffd")
			i += len(`\ufffd`) - 1
		case s[i] == '\\' && i+1 < len(s):
			b.WriteString(s[i : i+2])
			i++
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// TestRawReplacement: the comparison's own helper.
func TestRawReplacement(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`"\ufffd"`:         "\"\ufffd\"",
		`"a\ufffdb\ufffd"`: "\"a\ufffdb\ufffd\"",
		`"\\ufffd"`:        `"\\ufffd"`,
		`"\\\ufffd"`:       "\"\\\\\ufffd\"",
		`"\u0000\ufffe"`:   `"\u0000\ufffe"`,
	} {
		if got := rawReplacement(in); got != want {
			t.Errorf("rawReplacement(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestRunDetailAppendJSON: stored details are read back with
// json.Unmarshal, and rows written by json.Marshal stay in the stores, so
// the hand-written encoding is the same document, byte for byte (but for
// the spelling of U+FFFD, see sameAsMarshal), including
// for hostile strings a caller chooses (args, env names, function, params,
// callback URL).
func TestRunDetailAppendJSON(t *testing.T) {
	t.Parallel()
	hostile := "<script>&\"\\\x00\x01\x1f\x7f\b\f\n\r\t\xff\xc3(é\u2028\u2029😀'</script>"
	for _, c := range []struct {
		name string
		d    wasmwiz.RunDetail
	}{
		{"zero", wasmwiz.RunDetail{}},
		{"empty, not nil, slices and map", wasmwiz.RunDetail{Args: []string{}, EnvNames: []string{}, Params: []string{},
			Limits: map[string]int64{}, Results: []wasmwiz.RunValue{}}},
		{"a WASI run", wasmwiz.RunDetail{Name: "hello.wasm", Args: []string{"--name", "world"}, EnvNames: []string{"LANG"},
			StdinSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Limits:      wasmwiz.LimitsMap(wasmwiz.DefaultTiers()[0].Limits), CPUMS: 1.5, StdoutTruncated: true}},
		{"a plain function", wasmwiz.RunDetail{Function: "add", Params: []string{"1", "-2.5"}, Trap: "unreachable",
			Results: []wasmwiz.RunValue{{Type: "i32", Value: "-1"}, {Type: "f64", Value: "NaN"}}, StderrTruncated: true}},
		{"an async run", wasmwiz.RunDetail{Async: true, Args: []string{"a"}, Message: "cancelled by its caller",
			CallbackURL: "https://example.com/hook?a=1&b=<2>"}},
		{"hostile strings everywhere", wasmwiz.RunDetail{Name: hostile, Args: []string{hostile, ""}, EnvNames: []string{hostile},
			Function: hostile, Params: []string{hostile}, StdinSHA256: hostile, Limits: map[string]int64{hostile: -1, "": math.MaxInt64, "a": math.MinInt64},
			Trap: hostile, Results: []wasmwiz.RunValue{{Type: hostile, Value: hostile}}, Message: hostile, CallbackURL: hostile}},
		{"a key order a byte compare gives", wasmwiz.RunDetail{Limits: map[string]int64{"b": 1, "B": 2, "a_b": 3, "ab": 4, "é": 5, "z": 6}}},
		{"cpu tiny", wasmwiz.RunDetail{CPUMS: 1e-7}},
		{"cpu just tiny enough for decimals", wasmwiz.RunDetail{CPUMS: 1e-6}},
		{"cpu huge", wasmwiz.RunDetail{CPUMS: 1e21}},
		{"cpu just below huge", wasmwiz.RunDetail{CPUMS: 999999999999999900000}},
		{"cpu negative exponent of two digits", wasmwiz.RunDetail{CPUMS: -1.5e-10}},
		{"cpu exponent of three digits", wasmwiz.RunDetail{CPUMS: 5e-324}},
		{"cpu negative zero", wasmwiz.RunDetail{CPUMS: math.Copysign(0, -1)}},
		{"cpu largest", wasmwiz.RunDetail{CPUMS: math.MaxFloat64}},
	} {
		sameAsMarshal(t, c.d, c.name)
	}
}

// TestRunDetailAppendJSONCoversEveryField sets each field of RunDetail in
// turn: a field added to RunDetail but not to AppendJSON fails here.
func TestRunDetailAppendJSONCoversEveryField(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[wasmwiz.RunDetail]()
	for i := range typ.NumField() {
		var d wasmwiz.RunDetail
		f := reflect.ValueOf(&d).Elem().Field(i)
		switch v := f.Addr().Interface().(type) {
		case *bool:
			*v = true
		case *string:
			*v = "x"
		case *float64:
			*v = 2.25
		case *[]string:
			*v = []string{"x", "y"}
		case *map[string]int64:
			*v = map[string]int64{"x": 1, "y": 2}
		case *[]wasmwiz.RunValue:
			*v = []wasmwiz.RunValue{{Type: "i64", Value: "7"}}
		default:
			t.Fatalf("RunDetail.%s is a %s: teach AppendJSON and this test to encode it", typ.Field(i).Name, f.Type())
		}
		sameAsMarshal(t, d, "RunDetail."+typ.Field(i).Name+" set")
	}
}

// TestRunDetailAppendJSONRefusesNonFinite: JSON has no NaN or infinity;
// json.Marshal refuses them too.
func TestRunDetailAppendJSONRefusesNonFinite(t *testing.T) {
	t.Parallel()
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		d := wasmwiz.RunDetail{CPUMS: f}
		if _, err := json.Marshal(d); err == nil {
			t.Fatalf("json.Marshal took cpu_ms %v", f)
		}
		if _, err := d.AppendJSON(nil); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
			t.Fatalf("AppendJSON of cpu_ms %v: %v, want EINVALID", f, err)
		}
	}
}

func FuzzRunDetailAppendJSON(f *testing.F) {
	f.Add("hello.wasm", "--name", "LANG", "add", "1", "timeout_ms", int64(5000), 1.5, "i32", "https://example.com/h", true)
	f.Add("\xff<\u2028", "\x00", "", "", "", "\xc3", int64(-1), 1e-9, "\\\"", "&", false)
	f.Fuzz(func(t *testing.T, name, arg, env, function, param, key string, limit int64, cpu float64, value, url string, flag bool) {
		if math.IsNaN(cpu) || math.IsInf(cpu, 0) {
			return // refused by both: TestRunDetailAppendJSONRefusesNonFinite
		}
		d := wasmwiz.RunDetail{Async: flag, Name: name, Args: []string{arg, name}, EnvNames: []string{env}, Function: function,
			Params: []string{param}, StdinSHA256: value, Limits: map[string]int64{key: limit, name: -limit, "timeout_ms": 1},
			CPUMS: cpu, Trap: value, Results: []wasmwiz.RunValue{{Type: value, Value: param}}, StdoutTruncated: flag,
			StderrTruncated: !flag, Message: arg, CallbackURL: url}
		sameAsMarshal(t, d, "fuzzed detail")
	})
}

// BenchmarkRunDetailJSON encodes a WASI run's detail as the stores did
// (json.Marshal) and do (AppendJSON).
func BenchmarkRunDetailJSON(b *testing.B) {
	d := wasmwiz.RunDetail{Name: "hello.wasm", Args: []string{"--name", "world"}, EnvNames: []string{"LANG"},
		StdinSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Limits:      wasmwiz.LimitsMap(wasmwiz.DefaultTiers()[0].Limits), CPUMS: 1.5}
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.AppendJSON(make([]byte, 0, 512)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
