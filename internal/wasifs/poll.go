package wasifs

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// pollOneoff is poll_oneoff for this table: stdin is in memory (always
// readable: data or end of file), stdout and stderr are buffers and files
// are regular files (always ready), directories are never ready. Like
// poll(2), ready fd events return at once, and only a poll with none ready
// sleeps, until the earliest clock subscription. A poll with nothing that
// can ever be ready and no clock sleeps until Config.Sleep stops the guest.
//
// In wasi_unstable (unstable) a subscription is 56 bytes: its clock has an
// identifier before the clock id, which moves the clock's fields by 8.
func (t *Table) pollOneoff(ctx context.Context, mem api.Memory, in, out, n, neventsPtr uint32, unstable bool) Errno {
	if n == 0 {
		return errnoInval
	}
	if mem == nil {
		return errnoFault
	}
	size, clock := uint32(sizeSub), uint32(16)
	if unstable {
		size, clock = sizeSubUnstable, 24
	}
	if uint64(n)*uint64(size) > 1<<32 {
		return errnoFault
	}
	subs, ok := mem.Read(in, n*size)
	if !ok {
		return errnoFault
	}
	if uint64(n)*sizeEvent > 1<<32 {
		return errnoFault
	}
	if _, ok := mem.Read(out, n*sizeEvent); !ok {
		return errnoFault
	}
	if _, ok := mem.Read(neventsPtr, 4); !ok {
		return errnoFault
	}
	type clockSub struct {
		userdata []byte
		timeout  time.Duration
	}
	var events [][]byte
	var clocks []clockSub
	for i := uint32(0); i < n; i++ {
		s := subs[i*size : i*size+size]
		userdata := s[0:8]
		switch tag := s[8]; tag {
		case eventTypeClock:
			id, timeout, flags := le.Uint32(s[clock:]), le.Uint64(s[clock+8:]), le.Uint16(s[clock+24:])
			d := time.Duration(min(timeout, uint64(1<<63-1)))
			switch {
			case id != clockRealtime && id != clockMonotonic:
				events = append(events, event(userdata, errnoInval, tag, 0))
				continue
			case flags&subClockAbstime != 0 && id == clockRealtime:
				d = time.Unix(0, int64(min(timeout, uint64(1<<63-1)))).Sub(now())
			case flags&subClockAbstime != 0:
				// The guest's monotonic clock has no epoch we could compare
				// an absolute time with; wazero does not support it either.
				events = append(events, event(userdata, errnoNotsup, tag, 0))
				continue
			}
			clocks = append(clocks, clockSub{userdata, max(d, 0)})
		case eventTypeFdRead, eventTypeFdWrite:
			e, errno := t.get(le.Uint32(s[16:]))
			if errno != 0 {
				events = append(events, event(userdata, errno, tag, 0))
				continue
			}
			switch {
			case tag == eventTypeFdRead && e.kind == kindStdin:
				events = append(events, event(userdata, errnoSuccess, tag, uint64(e.r.Len())))
			case tag == eventTypeFdWrite && e.kind == kindWriter:
				events = append(events, event(userdata, errnoSuccess, tag, 0))
			case e.kind == kindFile:
				events = append(events, event(userdata, errnoSuccess, tag, 0))
			default:
				// Reading stdout, writing stdin, a directory: never ready.
			}
		default:
			return errnoInval
		}
	}
	if len(events) == 0 {
		if len(clocks) == 0 {
			// Nothing can ever be ready and nothing times out: block, as a
			// real poll would block forever, until the run ends.
			t.sleep(ctx, 1<<63-1)
			return errnoIntr
		}
		earliest := clocks[0].timeout
		for _, c := range clocks[1:] {
			earliest = min(earliest, c.timeout)
		}
		t.sleep(ctx, earliest)
		for _, c := range clocks {
			if c.timeout <= earliest {
				events = append(events, event(c.userdata, errnoSuccess, eventTypeClock, 0))
			}
		}
	}
	for i, e := range events {
		mem.Write(out+uint32(i)*sizeEvent, e)
	}
	mem.WriteUint32Le(neventsPtr, uint32(len(events)))
	return errnoSuccess
}

// event encodes a WASI event: userdata, error, type, then for fd events
// the bytes available and flags.
func event(userdata []byte, errno Errno, typ byte, nbytes uint64) []byte {
	e := make([]byte, sizeEvent)
	copy(e, userdata)
	le.PutUint16(e[8:], uint16(errno))
	e[10] = typ
	if typ != eventTypeClock {
		le.PutUint64(e[16:], nbytes)
	}
	return e
}
