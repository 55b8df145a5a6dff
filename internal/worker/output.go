package worker

import (
	"github.com/wasmwiz/wasmwiz"
)

// runOutput collects a run's stdout and stderr from the worker's output
// frames, as the guest writes them, so that a run whose worker is killed
// (timeout) or dies (out of memory) still returns what the guest printed.
// The two streams together are bounded by the run's MaxOutputBytes (0: no
// bound), the way the engine bounds them: a frame that passes the cap keeps
// what fits and marks its stream truncated. The worker's engine already stops the guest at the
// cap, so the parent's bound only matters for a worker that misbehaves; it
// keeps the parent's memory bounded whatever a worker sends.
type runOutput struct {
	limit  int64
	stdout outStream
	stderr outStream
	// onOutput, when set, gets each piece of output kept, as it arrives (the
	// run request's OnOutput).
	onOutput func(stderr bool, p []byte)
}

// outStream is one collected stream.
type outStream struct {
	b         []byte
	truncated bool
}

func newRunOutput(limit int64) *runOutput { return &runOutput{limit: limit} }

// add appends an output frame's body. It fails only for a malformed body.
func (o *runOutput) add(body []byte) error {
	fd, p, err := decodeOutput(body)
	if err != nil {
		return err
	}
	s := &o.stdout
	if fd == fdStderr {
		s = &o.stderr
	}
	if o.stdout.truncated || o.stderr.truncated {
		return nil // the run's cap was reached: nothing more is kept
	}
	room := int64(-1)
	if o.limit > 0 {
		room = o.limit - int64(len(o.stdout.b)+len(o.stderr.b))
	}
	before := len(s.b)
	s.write(p, room)
	if o.onOutput != nil && len(s.b) > before {
		o.onOutput(fd == fdStderr, s.b[before:len(s.b):len(s.b)])
	}
	return nil
}

// write appends p, or what fits in room (negative: no bound).
func (s *outStream) write(p []byte, room int64) {
	if room >= 0 && int64(len(p)) > room {
		p = p[:room]
		s.truncated = true
	}
	if len(p) == 0 {
		return
	}
	if s.b == nil {
		// p is the frame's own body, allocated for this frame alone and
		// capped (decodeOutput), so it can be kept without a copy; a later
		// append copies.
		s.b = p
		return
	}
	s.b = append(s.b, p...)
}

// fill puts the collected output into res. Truncation flags already in res
// (the worker's engine reported them) stay set.
func (o *runOutput) fill(res *wasmwiz.Result) {
	res.Stdout = o.stdout.b
	res.Stderr = o.stderr.b
	res.StdoutTruncated = res.StdoutTruncated || o.stdout.truncated
	res.StderrTruncated = res.StderrTruncated || o.stderr.truncated
}
