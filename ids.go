package wasmwiz

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

// Id prefixes. Ids are URL-safe: a prefix and characters of idAlphabet.
const (
	ModuleIDPrefix = "mod_"
	RunIDPrefix    = "run_"
)

// idAlphabet is base62 in ASCII order, so that fixed-width encodings of
// numbers compare as strings exactly as the numbers compare.
const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const (
	idTimeChars = 9  // 62^9 > 2^48: a unix millisecond time until the year 10889
	idRandChars = 14 // 62^14 > 2^80 > 62^13: 80 random bits
)

// NewModuleID returns a new random module id: "mod_" and 22 base62
// characters (128 bits from crypto/rand). Module ids reveal nothing, not
// even when the module was created.
func NewModuleID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	return ModuleIDPrefix + encode128(hi, lo, 22)
}

// runIDState makes run ids created in one millisecond by this process
// increase: the second and later ones add one to the previous random part,
// as ULIDs do, instead of drawing new random bits.
var runIDState struct {
	sync.Mutex
	ms     uint64
	hi, lo uint64 // the previous random part: 16 high and 64 low bits
}

// NewRunID returns a new run id for a run created at t: "run_", 9 characters
// of t's unix milliseconds and 14 of randomness, 27 characters in all. Ids of
// later times sort after earlier ones as plain strings, and consecutive ids
// this process makes for one millisecond sort in the order they were made, so
// ordering by id orders by creation (within a millisecond, across processes,
// the order is random).
func NewRunID(t time.Time) string {
	ms := uint64(max(t.UnixMilli(), 0)) & (1<<48 - 1)
	runIDState.Lock()
	var hi, lo uint64
	if ms == runIDState.ms && (runIDState.hi != 1<<16-1 || runIDState.lo != ^uint64(0)) {
		hi, lo = runIDState.hi, runIDState.lo+1
		if lo == 0 {
			hi++
		}
	} else {
		var b [10]byte
		_, _ = rand.Read(b[:])
		hi = uint64(binary.BigEndian.Uint16(b[:2]))
		lo = binary.BigEndian.Uint64(b[2:])
	}
	runIDState.ms, runIDState.hi, runIDState.lo = ms, hi, lo
	runIDState.Unlock()

	var sb strings.Builder
	sb.Grow(len(RunIDPrefix) + idTimeChars + idRandChars)
	sb.WriteString(RunIDPrefix)
	sb.WriteString(encode128(0, ms, idTimeChars))
	sb.WriteString(encode128(hi, lo, idRandChars))
	return sb.String()
}

// RunIDTime returns the creation time encoded in a run id, to the
// millisecond, and false when id is not a run id.
func RunIDTime(id string) (time.Time, bool) {
	if !validID(id, RunIDPrefix, idTimeChars+idRandChars) {
		return time.Time{}, false
	}
	var ms uint64
	for _, c := range []byte(id[len(RunIDPrefix) : len(RunIDPrefix)+idTimeChars]) {
		ms = ms*62 + uint64(strings.IndexByte(idAlphabet, c))
	}
	if ms >= 1<<48 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)).UTC(), true
}

// ValidModuleID reports whether s has the shape of a module id, so that
// garbage in a URL is refused before a database lookup.
func ValidModuleID(s string) bool { return validID(s, ModuleIDPrefix, 22) }

// ValidRunID reports whether s has the shape of a run id.
func ValidRunID(s string) bool { return validID(s, RunIDPrefix, idTimeChars+idRandChars) }

func validID(s, prefix string, n int) bool {
	if len(s) != len(prefix)+n || !strings.HasPrefix(s, prefix) {
		return false
	}
	for _, c := range []byte(s[len(prefix):]) {
		if strings.IndexByte(idAlphabet, c) < 0 {
			return false
		}
	}
	return true
}

// encode128 writes the 128-bit number hi:lo in base62, zero-padded (and
// truncated to its low digits) to width characters.
func encode128(hi, lo uint64, width int) string {
	out := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		// Long division of hi:lo by 62, one 64-bit half at a time.
		qh, rh := hi/62, hi%62
		// (rh<<64 + lo) / 62 without overflow: split lo into 32-bit halves.
		x := rh<<32 | lo>>32
		q1, r1 := x/62, x%62
		y := r1<<32 | lo&0xffffffff
		q2, r2 := y/62, y%62
		hi, lo = qh, q1<<32|q2
		out[i] = idAlphabet[r2]
	}
	return string(out)
}

// NewWebhookSecret returns a new random webhook signing secret: "whsec_"
// and 64 hex characters (256 bits from crypto/rand).
func NewWebhookSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "whsec_" + hex.EncodeToString(b[:])
}
