package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// WASI preview1 constants used by poll_oneoff.
const (
	errnoSuccess = 0
	errnoFault   = 21
	errnoInval   = 28
	errnoNotsup  = 58

	eventTypeClock   = 0
	eventTypeFdRead  = 1
	eventTypeFdWrite = 2

	clockRealtime   = 0
	clockMonotonic  = 1
	subClockAbstime = 1
)

// runStateKey carries the state of one run that the engine's own host
// functions need, in the context wazero passes them.
type runStateKey struct{}

type runState struct {
	stdin *bytes.Reader
}

// exportPollOneoff replaces wazero's poll_oneoff with one that knows this
// engine's guests: stdin is in memory (always readable: data or end of
// file), stdout and stderr are buffers (always writable), and no other fd
// is open. Like poll(2), ready fd events return at once and only a poll
// with none ready sleeps, until the earliest clock subscription; the sleep
// ends, stopping the guest, at the run's deadline. wazero's version reports
// ENOTSUP for writes to stdout and sleeps even when an fd is ready.
func exportPollOneoff(b wazero.HostModuleBuilder) {
	i32 := api.ValueTypeI32
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(pollOneoff), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("in", "out", "nsubscriptions", "result.nevents").
		Export("poll_oneoff")
}

func pollOneoff(ctx context.Context, mod api.Module, stack []uint64) {
	in, out, n, neventsPtr := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	stack[0] = pollOneoffErrno(ctx, mod, in, out, n, neventsPtr)
}

func pollOneoffErrno(ctx context.Context, mod api.Module, in, out, n, neventsPtr uint32) uint64 {
	if n == 0 {
		return errnoInval
	}
	mem := mod.Memory()
	if mem == nil {
		return errnoFault
	}
	subs, ok := mem.Read(in, n*48)
	if !ok {
		return errnoFault
	}
	if _, ok := mem.Read(out, n*32); !ok {
		return errnoFault
	}
	if _, ok := mem.Read(neventsPtr, 4); !ok {
		return errnoFault
	}
	st, _ := ctx.Value(runStateKey{}).(*runState)

	type clockSub struct {
		userdata []byte
		timeout  time.Duration
	}
	var events [][]byte
	var clocks []clockSub
	le := binary.LittleEndian
	for i := uint32(0); i < n; i++ {
		s := subs[i*48 : i*48+48]
		userdata := s[0:8]
		switch tag := s[8]; tag {
		case eventTypeClock:
			id, timeout, flags := le.Uint32(s[16:]), le.Uint64(s[24:]), le.Uint16(s[40:])
			d := time.Duration(min(timeout, uint64(1<<63-1)))
			switch {
			case id != clockRealtime && id != clockMonotonic:
				events = append(events, event(userdata, errnoInval, tag, 0))
				continue
			case flags&subClockAbstime != 0 && id == clockRealtime:
				d = time.Until(time.Unix(0, int64(min(timeout, uint64(1<<63-1)))))
			case flags&subClockAbstime != 0:
				// The guest's monotonic clock has no epoch we could compare
				// an absolute time with; wazero does not support it either.
				events = append(events, event(userdata, errnoNotsup, tag, 0))
				continue
			}
			clocks = append(clocks, clockSub{userdata, max(d, 0)})
		case eventTypeFdRead, eventTypeFdWrite:
			fd := le.Uint32(s[16:])
			switch {
			case fd > 2:
				events = append(events, event(userdata, errnoBadf, tag, 0))
			case tag == eventTypeFdRead && fd == 0:
				var avail uint64
				if st != nil {
					avail = uint64(st.stdin.Len())
				}
				events = append(events, event(userdata, errnoSuccess, tag, avail))
			case tag == eventTypeFdWrite && fd != 0:
				events = append(events, event(userdata, errnoSuccess, tag, 0))
			default:
				// Reading stdout or writing stdin: never ready.
			}
		default:
			return errnoInval
		}
	}
	if len(events) == 0 {
		if len(clocks) == 0 {
			// Nothing can ever be ready and nothing times out: block until
			// the deadline, as a real poll would block forever.
			<-ctx.Done()
			panic(errDeadline)
		}
		earliest := clocks[0].timeout
		for _, c := range clocks[1:] {
			earliest = min(earliest, c.timeout)
		}
		sleep(ctx, int64(earliest))
		for _, c := range clocks {
			if c.timeout <= earliest {
				events = append(events, event(c.userdata, errnoSuccess, eventTypeClock, 0))
			}
		}
	}
	for i, e := range events {
		mem.Write(out+uint32(i)*32, e)
	}
	mem.WriteUint32Le(neventsPtr, uint32(len(events)))
	return errnoSuccess
}

// event encodes a WASI event: userdata, error, type, then for fd events
// the bytes available and flags.
func event(userdata []byte, errno uint16, typ byte, nbytes uint64) []byte {
	e := make([]byte, 32)
	copy(e, userdata)
	binary.LittleEndian.PutUint16(e[8:], errno)
	e[10] = typ
	if typ != eventTypeClock {
		binary.LittleEndian.PutUint64(e[16:], nbytes)
	}
	return e
}
