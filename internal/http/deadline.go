package http

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// transfer is how slowly a client may move a body or an answer: Grace to
// start, then MinRate bytes per second on average. A request body must
// have arrived, at every moment, at MinRate since Grace after the request's
// headers; an answer has Grace plus its length at MinRate to be written.
// Neither bounds the time a handler works between the two, so a run as
// long as the longest tier allows is never cut by them.
type transfer struct {
	grace   time.Duration
	minRate int64 // bytes per second; 0: no deadlines
}

// defaultAnswerBytes is the length assumed for the write deadline of an
// answer that does not declare its length.
const defaultAnswerBytes = 1 << 20

// at returns when n bytes are due, counting from start.
func (t transfer) at(start time.Time, n int64) time.Time {
	return start.Add(t.grace + time.Duration(float64(n)/float64(t.minRate)*float64(time.Second)))
}

// bodyTime is the longest a body of n bytes may take to arrive (0 when
// there are no transfer deadlines).
func (t transfer) bodyTime(n int64) time.Duration {
	if t.minRate <= 0 {
		return 0
	}
	return t.at(time.Time{}, n).Sub(time.Time{})
}

// transferDeadlines gives a request's body read deadlines that follow
// MinRate, so that a body that trickles (with or without a key: the
// deadline is set before authentication, and also bounds the discarding of
// a body nobody read) ends its connection instead of holding it.
func (s *Server) transferDeadlines(next http.Handler) http.Handler {
	t := s.transfer
	if t.minRate <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			b := &rateBody{body: r.Body, rc: http.NewResponseController(w), t: t, start: time.Now()}
			// Before any read: a handler that answers without reading
			// (a refused key, a Content-Length over the limit) leaves the
			// server to discard what follows, under this deadline.
			_ = b.rc.SetReadDeadline(t.at(b.start, 0))
			r.Body = b
		}
		next.ServeHTTP(w, r)
	})
}

// rateBody is a request body read under a deadline that moves with what
// has arrived: after n bytes, the next must come by start+grace+n/rate.
type rateBody struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	t     transfer
	start time.Time
	n     int64
	eof   bool
}

func (b *rateBody) Read(p []byte) (int, error) {
	if !b.eof {
		// Not after the end: the server then reads the connection in the
		// background (to notice a client that goes away) with no
		// deadline, and a deadline here would end that read and cancel
		// the request.
		_ = b.rc.SetReadDeadline(b.t.at(b.start, b.n))
	}
	n, err := b.body.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, &wasmwiz.Error{Code: wasmwiz.EINVALID, Err: err,
			Message: "the request body arrived slower than " + wasmwiz.FormatSize(b.t.minRate) + " per second; the connection is closed"}
	}
	return n, err
}

func (b *rateBody) Close() error { return b.body.Close() }

// answerDeadline is the write deadline of one answer: grace plus its
// length (declared, else defaultAnswerBytes) at MinRate from its start, so
// that a client that does not read cannot hold the handler and its answer.
// An answer that grows past what its deadline allowed (an archive, a JSON
// answer of unknown length, an event stream) gets more time when it is
// written on: from then, grace plus the new allowance at MinRate, the
// allowance doubling each time, so that a deadline is set a few times per
// answer, not per write. A client that stops reading stops the writes, and
// the deadline set last ends the answer.
type answerDeadline struct {
	t       transfer
	allowed int64 // bytes the deadline set last allows in all; 0: not started
}

// begin starts the answer's deadline; w's headers are final.
func (d *answerDeadline) begin(w http.ResponseWriter) {
	if d.t.minRate <= 0 || d.allowed > 0 {
		return
	}
	d.allowed = defaultAnswerBytes
	if cl := w.Header().Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			d.allowed = max(v, 1)
		}
	}
	_ = http.NewResponseController(w).SetWriteDeadline(d.t.at(time.Now(), d.allowed))
}

// write gives a write of n bytes after written ones its time when the
// answer grows past what the deadline allowed.
func (d *answerDeadline) write(w http.ResponseWriter, written, n int64) {
	if d.t.minRate <= 0 || d.allowed == 0 || written+n <= d.allowed {
		return
	}
	d.allowed = max(2*d.allowed, written+n)
	_ = http.NewResponseController(w).SetWriteDeadline(d.t.at(time.Now(), d.allowed-written))
}
