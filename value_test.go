package wasmwiz_test

import (
	"encoding/json"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

func TestParseValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, in, want string
		wantErr       bool
	}{
		{"i32", "5", "5", false},
		{"i32", "-2147483648", "-2147483648", false},
		{"i32", "4294967295", "-1", false}, // unsigned spelling of the same bits
		{"i32", "4294967296", "", true},
		{"i32", "1.5", "", true},
		{"i64", "-9223372036854775808", "-9223372036854775808", false},
		{"i64", "18446744073709551616", "", true},
		{"f32", "1.5", "1.5", false},
		{"f64", "nan", "nan", false},
		{"f64", "-inf", "-inf", false},
		{"f64", "abc", "", true},
		{"v128", "1", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.in, func(t *testing.T) {
			v, err := wasmwiz.ParseValue(tt.typ, tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && v.String() != tt.want {
				t.Fatalf("got %s, want %s", v, tt.want)
			}
		})
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	t.Parallel()
	nan, _ := wasmwiz.ParseValue("f64", "nan")
	seven, _ := wasmwiz.ParseValue("i64", "7")
	in := wasmwiz.ResultJSON{ID: "run_1", Result: &wasmwiz.Result{
		Status:  wasmwiz.StatusOK,
		Stdout:  []byte("hi\n"),
		Stderr:  []byte{0xff, 0x00},
		Results: []wasmwiz.Value{seven, nan},
	}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["stdout_encoding"] != "utf-8" || m["stderr_encoding"] != "base64" {
		t.Fatalf("encodings: %s", b)
	}
	var out wasmwiz.ResultJSON
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if string(out.Stderr) != "\xff\x00" || string(out.Stdout) != "hi\n" || out.ID != "run_1" {
		t.Fatalf("round trip lost output: %+v", out.Result)
	}
	if len(out.Results) != 2 || out.Results[0].String() != "7" || out.Results[1].String() != "nan" {
		t.Fatalf("round trip lost results: %v", out.Results)
	}
}
