package wasmwiz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1048576", 1 << 20, false},
		{"256MiB", 256 << 20, false},
		{"256mib", 256 << 20, false},
		{"16MB", 16_000_000, false},
		{"1GiB", 1 << 30, false},
		{"64K", 64 << 10, false},
		{"1.5KiB", 1536, false},
		{"0", 0, false},
		{"", 0, true},
		{"-1", 0, true},
		{"12XB", 0, true},
		{"MiB", 0, true},
		{"99999999999999999999", 0, true},
		{"9000000000GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := wasmwiz.ParseSize(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseSize(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil && wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
				t.Fatalf("code = %s, want EINVALID", wasmwiz.ErrorCode(err))
			}
			if got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatSizeRoundTrip(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0B", 5: "5B", 1536: "1536B", 2048: "2KiB", 3 << 20: "3MiB", 1 << 30: "1GiB"} {
		if got := wasmwiz.FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q (a size always carries its unit)", n, got, want)
		}
	}
	for _, n := range []int64{0, 1, 1023, 1024, 3 << 20, 1 << 30, 1<<30 + 1} {
		got, err := wasmwiz.ParseSize(wasmwiz.FormatSize(n))
		if err != nil || got != n {
			t.Errorf("round trip of %d via %q = %d, %v", n, wasmwiz.FormatSize(n), got, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"3s", 3 * time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"2", 2 * time.Second, false},
		{"-1s", 0, true},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		got, err := wasmwiz.ParseDuration(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestParseLowerLimits: the API's and the CLI's lower timeout and memory
// are read one way: empty asks for none, zero and malformed are EINVALID.
func TestParseLowerLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		timeout, memory string
		want            wasmwiz.Limits
		wantErr         string
	}{
		{"", "", wasmwiz.Limits{}, ""},
		{" 500ms ", "16MiB", wasmwiz.Limits{Timeout: 500 * time.Millisecond, MaxMemoryBytes: 16 * wasmwiz.MiB}, ""},
		{"2", "", wasmwiz.Limits{Timeout: 2 * time.Second}, ""},
		{"0", "", wasmwiz.Limits{}, "timeout must be positive"},
		{"", "0KiB", wasmwiz.Limits{}, "memory must be positive"},
		{"-1s", "", wasmwiz.Limits{}, "negative"},
		{"1s", "lots", wasmwiz.Limits{}, "invalid size"},
	}
	for _, tt := range tests {
		got, err := wasmwiz.ParseLowerLimits(tt.timeout, tt.memory)
		if tt.wantErr == "" && (err != nil || got != tt.want) {
			t.Errorf("ParseLowerLimits(%q, %q) = %+v, %v; want %+v", tt.timeout, tt.memory, got, err, tt.want)
		}
		if tt.wantErr != "" && (wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(err.Error(), tt.wantErr) || got != (wasmwiz.Limits{})) {
			t.Errorf("ParseLowerLimits(%q, %q) = %+v, %v; want EINVALID %q", tt.timeout, tt.memory, got, err, tt.wantErr)
		}
	}
}

// FuzzParseSize: no text makes ParseSize panic; a size it accepts is not
// negative, and a refusal is EINVALID with a message. Every accepted size
// written by FormatSize parses back to itself.
func FuzzParseSize(f *testing.F) {
	fuzzParse(f, "ParseSize", wasmwiz.ParseSize, []string{"1048576", "256MiB", "16MB", "1.5G", "0", "-1", "9223372036854775807", "4611686018427387904B",
		"1e300K", "NaNM", "+Inf KiB", " 2 kib ", "B", "0x10", ""}, func(t *testing.T, n int64) {
		if back, err := wasmwiz.ParseSize(wasmwiz.FormatSize(n)); err != nil || back != n {
			t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	})
}

// FuzzParseDuration: no text makes ParseDuration panic, and a duration it
// accepts is never negative.
func FuzzParseDuration(f *testing.F) {
	fuzzParse(f, "ParseDuration", wasmwiz.ParseDuration, []string{"3s", "500ms", "2m", "1.5", "0", "-1", "-1s", "1e300", "NaN", "-0", "Inf", "9223372036854775807ns",
		"1h1h1h", " 5s ", ""}, nil)
}

// fuzzParse fuzzes parse (called name) from seeds: no text makes it panic,
// a refusal is EINVALID with a message, and a value it accepts is not
// negative and passes accepted, when there is one.
func fuzzParse[T int64 | time.Duration](f *testing.F, name string, parse func(string) (T, error), seeds []string, accepted func(t *testing.T, v T)) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parse(s)
		if err != nil {
			if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || wasmwiz.ErrorMessage(err) == "" {
				t.Fatalf("%s(%q): %v", name, s, err)
			}
			return
		}
		if v < 0 {
			t.Fatalf("%s(%q) = %v", name, s, v)
		}
		if accepted != nil {
			accepted(t, v)
		}
	})
}
