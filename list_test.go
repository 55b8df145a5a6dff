package wasmwiz_test

import (
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

func TestCheckListOffset(t *testing.T) {
	t.Parallel()
	for offset, ok := range map[int]bool{0: true, 1: true, wasmwiz.MaxListOffset: true, -1: false, wasmwiz.MaxListOffset + 1: false, 1 << 40: false} {
		err := wasmwiz.CheckListOffset(offset)
		if ok != (err == nil) || (err != nil && wasmwiz.ErrorCode(err) != wasmwiz.EINVALID) {
			t.Errorf("CheckListOffset(%d) = %v, want ok %v (else EINVALID)", offset, err, ok)
		}
	}
}

func TestCountedTotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int
		want wasmwiz.ListTotal
		text string
	}{
		{0, wasmwiz.ListTotal{}, "0"},
		{7, wasmwiz.ListTotal{Count: 7}, "7"},
		{wasmwiz.MaxListTotal, wasmwiz.ListTotal{Count: wasmwiz.MaxListTotal}, "10000"},
		{wasmwiz.MaxListTotal + 1, wasmwiz.ListTotal{Count: wasmwiz.MaxListTotal, Capped: true}, "10000+"},
		{wasmwiz.MaxListTotal + wasmwiz.MaxListOffset, wasmwiz.ListTotal{Count: wasmwiz.MaxListTotal, Capped: true}, "10000+"},
	}
	for _, tt := range tests {
		got := wasmwiz.CountedTotal(tt.n)
		if got != tt.want || got.String() != tt.text {
			t.Errorf("CountedTotal(%d) = %+v %q, want %+v %q", tt.n, got, got, tt.want, tt.text)
		}
	}
}
