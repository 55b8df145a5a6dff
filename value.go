package wasmwiz

import (
	"math"
	"strconv"
)

// ParseValue parses a decimal number (for floats also "nan", "inf", "-inf")
// as a wasm value of type typ, with range checks. It returns EINVALID.
func ParseValue(typ, s string) (Value, error) {
	switch typ {
	case "i32":
		if n, err := strconv.ParseInt(s, 10, 32); err == nil {
			return Value{Type: typ, Bits: uint64(uint32(int32(n)))}, nil
		}
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return Value{Type: typ, Bits: n}, nil
		}
	case "i64":
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return Value{Type: typ, Bits: uint64(n)}, nil
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return Value{Type: typ, Bits: n}, nil
		}
	case "f32":
		if f, err := strconv.ParseFloat(s, 32); err == nil {
			return Value{Type: typ, Bits: uint64(math.Float32bits(float32(f)))}, nil
		}
	case "f64":
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return Value{Type: typ, Bits: math.Float64bits(f)}, nil
		}
	default:
		return Value{}, Errorf(EINVALID, "unsupported value type %q", typ)
	}
	return Value{}, Errorf(EINVALID, "%q is not a valid %s", s, typ)
}
