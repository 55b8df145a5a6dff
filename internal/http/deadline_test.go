package http_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// listen serves the fixture's handler on a real loopback listener (the
// deadlines are on connections), calling done after each request.
func (f *fixture) listen(done func()) string {
	f.t.Helper()
	h := f.srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer done()
		h.ServeHTTP(w, r)
	}))
	f.t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// trickle sends a request whose body comes one byte at a time, every
// interval, and reports whether the server closed the connection before
// the body was complete, with the status line of its answer if any.
func trickle(t *testing.T, addr, header string, bodyLen int, interval time.Duration) (cut bool, status string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n", header, bodyLen); err != nil {
		t.Fatal(err)
	}
	closed := make(chan string, 1)
	go func() {
		br := bufio.NewReader(conn)
		line, _ := br.ReadString('\n')
		_, _ = io.Copy(io.Discard, br) // until the server closes
		closed <- strings.TrimSpace(line)
	}()
	for i := 0; i < bodyLen; i++ {
		select {
		case status := <-closed:
			return true, status
		case <-time.After(interval):
		}
		if _, err := conn.Write([]byte{'x'}); err != nil {
			select {
			case status := <-closed:
				return true, status
			case <-time.After(30 * time.Second):
				t.Fatal("the server stopped reading but did not close the connection")
			}
		}
	}
	return false, ""
}

// TestTricklingBodyIsCut: a body that arrives slower than the minimum rate
// is cut, on an execute route with a key and without one, and on an admin
// route; a body at a decent rate is read, and a run that lasts far longer
// than the grace after its body arrived is not cut (its request is not
// cancelled).
func TestTricklingBodyIsCut(t *testing.T) {
	t.Parallel()
	var ranLong bool
	f := newFixture(t, func(o *wwhttp.Options) {
		o.MinTransferRate = 1 << 10
		o.TransferGrace = 200 * time.Millisecond
	})
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		if string(req.Stdin) == "long" {
			select {
			case <-time.After(time.Second): // five graces
				ranLong = true
			case <-ctx.Done():
				return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, ctx.Err(), "request ended")
			}
		}
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}
	addr := f.listen(func() {})
	// The whole body would take 2000 × 20ms = 40s; a trickle at 50 B/s is
	// cut after about grace + what it sent at 1 KiB/s.
	for name, header := range map[string]string{
		"execute with a key": "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + userKey + "\r\nContent-Type: application/wasm\r\n",
		"execute, no key":    "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/wasm\r\n",
		"admin route":        "POST /api/v1/admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminKey + "\r\nContent-Type: application/json\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			cut, status := trickle(t, addr, header, 2000, 20*time.Millisecond)
			if !cut {
				t.Fatal("a body trickling at 50 B/s was read to its end")
			}
			t.Logf("cut; answer %q", status)
		})
	}

	res, err := http.Post("http://"+addr+"/api/v1/execute?stdin=long", "application/wasm", bytes.NewReader(wasmHeader))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/execute?stdin=long", bytes.NewReader(append(wasmHeader, make([]byte, 64<<10)...)))
	req.Header.Set("Authorization", "Bearer "+userKey)
	req.Header.Set("Content-Type", "application/wasm")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !ranLong {
		t.Fatalf("a run longer than the grace after a fast body: %d %s (ran to its end: %v)", res.StatusCode, b, ranLong)
	}
}

// TestAnswerNobodyReadsEnds: a client that never reads a large answer does
// not hold the handler: the write deadline (grace + length at the minimum
// rate) ends it. A live-output stream lasts as long as its run, but each
// event gets its own write deadline, so a client that stops reading it does
// not hold the handler either.
func TestAnswerNobodyReadsEnds(t *testing.T) {
	t.Parallel()
	for name, accept := range map[string]string{"answer": "", "event stream": "Accept: text/event-stream\r\n"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) {
				o.MinTransferRate = 64 << 20
				o.TransferGrace = 200 * time.Millisecond
			})
			big := bytes.Repeat([]byte("a"), 32<<20) // more than loopback buffers hold
			f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
				return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: big}, nil
			}
			done := make(chan struct{}, 1)
			addr := f.listen(func() { done <- struct{}{} })
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%sContent-Type: application/wasm\r\nContent-Length: %d\r\n\r\n%s",
				userKey, accept, len(wasmHeader), wasmHeader)
			// The handler encodes 32 MiB twice before its writes time out:
			// work that grows with the machine's load (a -race run beside
			// other packages' took over a minute), so the wait is
			// testenv.Wait's, which gives up only near the binary's deadline.
			testenv.Wait(t, "the handler writing an "+name+" to a client that reads nothing to end", func() { <-done })
		})
	}
}

// TestLongAnswerGetsTimeAsItGrows: an answer of unknown length (an
// archive) read at a decent rate, above the minimum but far slower than its
// first deadline (grace plus 1MiB at the minimum rate) allows for all of
// it, arrives whole: its deadline moves on as it is written.
func TestLongAnswerGetsTimeAsItGrows(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) {
		o.MinTransferRate = 1 << 20
		o.TransferGrace = 100 * time.Millisecond
	})
	file := bytes.Repeat([]byte("f"), 32<<20) // far more than loopback buffers hold
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Files: []wasmwiz.OutputFile{{Path: "big.bin", Size: int64(len(file)), Data: file}}}, nil
	}
	addr := f.listen(func() {})
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/execute", bytes.NewReader(wasmHeader))
	req.Header.Set("Authorization", "Bearer "+userKey)
	req.Header.Set("Content-Type", "application/wasm")
	req.Header.Set("Accept", "application/x-tar")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// About ten times the minimum rate: 256KiB every 25ms at most; the
	// whole answer takes some 3s, its first deadline allowed 1.1s.
	var got int64
	buf := make([]byte, 256<<10)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		got += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("the answer was cut after %d bytes: %v", got, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if got < int64(len(file)) {
		t.Fatalf("the answer ended after %d bytes, want the whole archive (over %d)", got, len(file))
	}
}
