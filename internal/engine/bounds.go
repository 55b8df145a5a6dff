package engine

import (
	"github.com/wasmwiz/wasmwiz"
)

// wazero v1.12.0's decoder allocates by the counts and sizes a module
// declares before it reads the elements: a vector count of 2^32-1 in a
// ten-byte module made it ask for 32 GiB and the Go runtime abort the whole
// process ("fatal error: runtime: out of memory", found by FuzzInspect).
// checkSectionBounds walks each section the way the decoder will and
// refuses any count or size larger than the bytes that could hold it, so
// nothing a module declares can make wazero allocate more than a small
// multiple of the module's size.

// maxLocals bounds the locals of one function (the limit browsers apply):
// locals are run-length encoded, so their count is not bounded by size.
const maxLocals = 50000

func boundsError(section string, format string, args ...any) error {
	return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid module: %s section: "+format, append([]any{section}, args...)...)
}

// count reads a vector count and checks that the rest of the section can
// hold that many elements of at least minSize bytes each.
func (r *reader) count(section string, minSize int) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n)*uint64(minSize) > uint64(len(r.b)-r.pos) {
		return 0, boundsError(section, "declares %d entries but only %d bytes remain", n, len(r.b)-r.pos)
	}
	return n, nil
}

// skip checks that n bytes remain and moves past them.
func (r *reader) skip(section string, n uint32) error {
	if uint64(n) > uint64(len(r.b)-r.pos) {
		return boundsError(section, "declares %d bytes but only %d remain", n, len(r.b)-r.pos)
	}
	r.pos += int(n)
	return nil
}

// leb skips an LEB128 number of at most 64 bits.
func (r *reader) leb() error {
	for i := 0; i < 10; i++ {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
	}
	return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid module: malformed number at byte %d", r.pos)
}

// constExpr skips a constant expression up to its end opcode.
func (r *reader) constExpr(section string) error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41, 0x42, 0x23, 0xd2: // i32.const, i64.const, global.get, ref.func
			err = r.leb()
		case 0x43:
			err = r.skip(section, 4)
		case 0x44:
			err = r.skip(section, 8)
		case 0xd0: // ref.null heaptype
			_, err = r.byte()
		case 0xfd: // v128.const
			if err = r.leb(); err == nil {
				err = r.skip(section, 16)
			}
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		default:
			return boundsError(section, "unsupported instruction 0x%02x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

// vec reads a count of entries of at least minSize bytes and runs each.
func (r *reader) vec(section string, minSize int, each func() error) error {
	n, err := r.count(section, minSize)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := each(); err != nil {
			return err
		}
	}
	return nil
}

// sized skips a part of section that starts with its size and returns a
// reader of that part alone.
func (r *reader) sized(section string) (*reader, error) {
	size, err := r.u32()
	if err != nil {
		return nil, err
	}
	end := r.pos + int(size)
	if err := r.skip(section, size); err != nil {
		return nil, err
	}
	return &reader{b: r.b[:end], pos: end - int(size)}, nil
}

func (r *reader) skipName(section string) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	return r.skip(section, n)
}

// checkSectionBounds checks one section's declared counts and sizes.
func checkSectionBounds(id byte, r *reader) error {
	leb := r.leb
	switch id {
	case 0: // custom: a name, then bytes; the "name" section is decoded
		n, err := r.u32()
		if err != nil {
			return err
		}
		start := r.pos
		if err := r.skip("custom", n); err != nil {
			return err
		}
		if string(r.b[start:r.pos]) == "name" {
			return checkNameSection(r)
		}
	case 1: // type: vec(0x60 vec(valtype) vec(valtype))
		return r.vec("type", 3, func() error {
			if _, err := r.byte(); err != nil {
				return err
			}
			for range 2 {
				n, err := r.count("type", 1)
				if err != nil {
					return err
				}
				if err := r.skip("type", n); err != nil {
					return err
				}
			}
			return nil
		})
	case 3: // function: vec(typeidx)
		return r.vec("function", 1, leb)
	case 4: // table: vec(reftype limits)
		return r.vec("table", 3, func() error { return nil })
	case 5: // memory: vec(limits)
		return r.vec("memory", 2, func() error { return nil })
	case 6: // global: vec(valtype mut expr)
		return r.vec("global", 3, func() error {
			if err := r.skip("global", 2); err != nil {
				return err
			}
			return r.constExpr("global")
		})
	case 9: // element
		return r.vec("element", 2, func() error { return checkElement(r) })
	case 10: // code: vec(size, locals, body)
		return r.vec("code", 2, func() error {
			body, err := r.sized("code")
			if err != nil {
				return err
			}
			var sum uint64
			return body.vec("code", 2, func() error {
				n, err := body.u32()
				if err != nil {
					return err
				}
				if sum += uint64(n); sum > maxLocals {
					return boundsError("code", "a function declares more than %d locals", maxLocals)
				}
				_, err = body.byte()
				return err
			})
		})
	case 11: // data
		return r.vec("data", 2, func() error {
			flag, err := r.u32()
			if err != nil {
				return err
			}
			switch flag {
			case 0:
				err = r.constExpr("data")
			case 2:
				if err = r.leb(); err == nil {
					err = r.constExpr("data")
				}
			}
			if err != nil {
				return err
			}
			n, err := r.u32()
			if err != nil {
				return err
			}
			return r.skip("data", n)
		})
	case 13: // tag: vec(attribute typeidx)
		return r.vec("tag", 2, func() error { return nil })
	}
	return nil
}

func checkElement(r *reader) error {
	_, err := elementEntries(r)
	return err
}

// elementEntries reads one element segment and returns its number of
// entries.
func elementEntries(r *reader) (uint32, error) {
	flag, err := r.u32()
	if err != nil {
		return 0, err
	}
	if flag > 7 {
		return 0, boundsError("element", "unknown segment kind %d", flag)
	}
	if flag&0x02 != 0 && flag&0x01 == 0 { // explicit table index
		if err := r.leb(); err != nil {
			return 0, err
		}
	}
	if flag&0x01 == 0 { // active: an offset expression
		if err := r.constExpr("element"); err != nil {
			return 0, err
		}
	}
	if flag&0x03 != 0 { // elemkind or reftype
		if _, err := r.byte(); err != nil {
			return 0, err
		}
	}
	each := r.leb
	if flag&0x04 != 0 {
		each = func() error { return r.constExpr("element") }
	}
	n, err := r.count("element", 1)
	if err != nil {
		return 0, err
	}
	for range n {
		if err := each(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// checkNameSection bounds the "name" custom section, which wazero decodes:
// subsections of name maps (index, name) and indirect name maps.
func checkNameSection(r *reader) error {
	nameMap := func() error {
		return r.vec("name", 2, func() error {
			if err := r.leb(); err != nil {
				return err
			}
			return r.skipName("name")
		})
	}
	for r.pos < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return err
		}
		sub, err := r.sized("name")
		if err != nil {
			return err
		}
		saved := *r
		*r = *sub
		switch id {
		case 0:
			err = r.skipName("name")
		case 1:
			err = nameMap()
		case 2:
			err = r.vec("name", 2, func() error {
				if err := r.leb(); err != nil {
					return err
				}
				return nameMap()
			})
		}
		*r = saved
		if err != nil {
			return err
		}
	}
	return nil
}
