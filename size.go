package wasmwiz

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Byte sizes used throughout the project.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so "MiB" is not read as "B".
	{"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", KiB}, {"M", MiB}, {"G", GiB},
	{"B", 1},
}

// ParseSize parses a byte size written as a plain number of bytes ("1048576")
// or a number with a unit: binary KiB, MiB, GiB (K, M, G are the same) or
// decimal KB, MB, GB. Units are case-insensitive. It returns an EINVALID error
// for anything else, including negative sizes and overflow.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, Errorf(EINVALID, "empty size")
	}
	num, mult := in, int64(1)
	for _, u := range sizeUnits {
		if len(in) > len(u.suffix) && strings.EqualFold(in[len(in)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(in[:len(in)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(num, 64)
		if ferr != nil || mult == 1 {
			return 0, Errorf(EINVALID, "invalid size %q: want bytes or a number with KiB, MiB, GiB, KB, MB or GB", s)
		}
		// Written so that NaN, which every comparison fails, is refused too.
		if !(f >= 0 && f*float64(mult) <= float64(1<<62)) {
			return 0, Errorf(EINVALID, "size %q out of range", s)
		}
		return int64(f * float64(mult)), nil
	}
	if n < 0 {
		return 0, Errorf(EINVALID, "size %q is negative", s)
	}
	if n > (1<<62)/mult {
		return 0, Errorf(EINVALID, "size %q out of range", s)
	}
	return n * mult, nil
}

// FormatSize writes n bytes in the largest binary unit that divides it
// exactly, else in bytes with a B ("1536B"): always with a unit, so that a
// message never shows a bare number, and ParseSize(FormatSize(n)) == n.
func FormatSize(n int64) string {
	switch {
	case n != 0 && n%GiB == 0:
		return fmt.Sprintf("%dGiB", n/GiB)
	case n != 0 && n%MiB == 0:
		return fmt.Sprintf("%dMiB", n/MiB)
	case n != 0 && n%KiB == 0:
		return fmt.Sprintf("%dKiB", n/KiB)
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseDuration parses a positive duration such as "3s", "500ms" or "2m". A
// bare number is read as seconds. It returns EINVALID for anything else.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(in, 64); err == nil {
		if n < 0 {
			return 0, Errorf(EINVALID, "duration %q is negative", s)
		}
		// NaN, infinities and more seconds than a Duration holds would
		// convert to a negative Duration.
		if !(n*float64(time.Second) < float64(math.MaxInt64)) {
			return 0, Errorf(EINVALID, "duration %q out of range", s)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(in)
	if err != nil {
		return 0, Errorf(EINVALID, "invalid duration %q: want e.g. 3s or 500ms", s)
	}
	if d < 0 {
		return 0, Errorf(EINVALID, "duration %q is negative", s)
	}
	return d, nil
}

// ParseLowerLimits reads the lower wall time and memory a caller may ask
// for under its tier's, as the API's timeout and memory fields and the
// CLI's --timeout and --memory write them; an empty text asks for none
// (0). EINVALID for a malformed, negative or zero value.
func ParseLowerLimits(timeout, memory string) (Limits, error) {
	var lim Limits
	var err error
	if strings.TrimSpace(timeout) != "" {
		if lim.Timeout, err = ParseDuration(timeout); err == nil && lim.Timeout == 0 {
			err = Errorf(EINVALID, "timeout must be positive")
		}
	}
	if err == nil && strings.TrimSpace(memory) != "" {
		if lim.MaxMemoryBytes, err = ParseSize(memory); err == nil && lim.MaxMemoryBytes == 0 {
			err = Errorf(EINVALID, "memory must be positive")
		}
	}
	if err != nil {
		return Limits{}, err
	}
	return lim, nil
}

// SizeError is the one ETOOLARGE for a module or stdin over its limit, as
// every layer that refuses one words it: what ("module", "stdin"), its size
// (negative when a body was cut off at the limit before its end), the limit,
// and the tier it belongs to ("" leaves the tier out).
func SizeError(what string, size, limit int64, tier string) error {
	msg := what + " is over the " + FormatSize(limit) + " limit"
	if size >= 0 {
		msg = what + " is " + FormatSize(size) + ", over the " + FormatSize(limit) + " limit"
	}
	if tier != "" {
		msg += " of tier " + tier
	}
	return &Error{Code: ETOOLARGE, Message: msg}
}

// CheckSizes returns SizeError for a module of moduleBytes or a stdin of
// stdinBytes over l (a MaxModuleBytes of 0 means no module limit); tier
// names the tier in the message.
func (l Limits) CheckSizes(moduleBytes, stdinBytes int64, tier string) error {
	if l.MaxModuleBytes > 0 && moduleBytes > l.MaxModuleBytes {
		return SizeError("module", moduleBytes, l.MaxModuleBytes, tier)
	}
	if stdinBytes > l.MaxStdinBytes {
		return SizeError("stdin", stdinBytes, l.MaxStdinBytes, tier)
	}
	return nil
}
