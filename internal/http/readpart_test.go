package http

import (
	"bytes"
	"runtime"
	"testing"
)

// TestReadPart: a multipart part is read whole and exactly, and a large part
// of a body of declared length is read into one buffer sized by what is left
// of the body (so never more memory than the body gate counted for it),
// trimmed when that was much more than the part; io.ReadAll's growing
// buffer allocated about twice a part or more, whatever the body's size.
func TestReadPart(t *testing.T) {
	part := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	big := part(4 << 20)
	tests := []struct {
		name    string
		part    []byte
		limit   int64
		left    int64
		wantLen int
		// maxAlloc bounds the bytes allocated (0: not checked); io.ReadAll
		// allocated about 9 MiB for the 4 MiB part.
		maxAlloc uint64
	}{
		{"small", part(100), 1 << 20, 1 << 30, 100, 0},
		{"exactly the first read", part(partFirstBytes), 1 << 30, 1 << 30, partFirstBytes, 0},
		// The first read's buffer, then the part's own size.
		{"large, the body's last part", big, 8 << 20, int64(len(big)) + multipartReadAhead, len(big), 4<<20 + 2*partFirstBytes + multipartReadAhead},
		// The part's limit (what is left of the body is more), then the
		// part trimmed to its size: all within the body's unread 12 MiB.
		{"large, another large part after it", big, 8 << 20, 3 * int64(len(big)), len(big), 12<<20 + 2*partFirstBytes},
		{"large, length not declared", big, 8 << 20, -1, len(big), 0},
		{"over the limit", big, 1 << 20, 1 << 30, 1<<20 + 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			data, err := readPart(bytes.NewReader(tt.part), tt.limit, tt.left)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) != tt.wantLen || !bytes.Equal(data, tt.part[:tt.wantLen]) {
				t.Fatalf("read %d bytes (equal to the part's first %d: %v)", len(data), tt.wantLen, bytes.Equal(data, tt.part[:min(len(data), tt.wantLen)]))
			}
			if tt.maxAlloc == 0 {
				return
			}
			if spare := cap(data) - len(data); spare > multipartReadAhead {
				t.Errorf("the part holds %d bytes more than its %d", spare, len(data))
			}
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > tt.maxAlloc {
				t.Errorf("reading a %d-byte part allocated %d bytes, over %d", len(data), allocated, tt.maxAlloc)
			}
		})
	}
}
