package wasmwiz_test

import (
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

// FuzzParseValue: no text makes ParseValue panic; a value it accepts
// prints as text that parses back to the same bits.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"5", "-2147483648", "4294967295", "4294967296", "1.5", "nan", "-inf", "1e39", "0x1p-2", "-0", "abc"} {
		for _, typ := range []string{"i32", "i64", "f32", "f64"} {
			f.Add(typ, s)
		}
	}
	f.Add("v128", "1")
	f.Fuzz(func(t *testing.T, typ, s string) {
		v, err := wasmwiz.ParseValue(typ, s)
		if err != nil {
			if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || wasmwiz.ErrorMessage(err) == "" {
				t.Fatalf("ParseValue(%q, %q): %v", typ, s, err)
			}
			return
		}
		back, err := wasmwiz.ParseValue(typ, v.String())
		if err != nil || back != v {
			t.Fatalf("ParseValue(%q, %q) = %s, which parses back as %v, %v", typ, s, v, back, err)
		}
	})
}
