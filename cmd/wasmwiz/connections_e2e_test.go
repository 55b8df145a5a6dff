package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// slowConn is one attacking connection: it sends head at once, then the
// rest one byte per interval, and records whether and how the server ended
// it before the rest was sent.
type slowConn struct {
	cut    bool
	status string // the answer's status line, "" when closed without one
}

func trickleRequest(t *testing.T, addr, head, rest string, interval time.Duration) slowConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return slowConn{}
	}
	defer conn.Close()
	closed := make(chan string, 1)
	go func() {
		br := bufio.NewReader(conn)
		line, _ := br.ReadString('\n')
		_, _ = io.Copy(io.Discard, br)
		closed <- strings.TrimSpace(line)
	}()
	// cut waits for the server to close a connection it stopped reading
	// (t.Error, not Fatal: this runs on a goroutine of the test's).
	cut := func() slowConn {
		select {
		case st := <-closed:
			return slowConn{cut: true, status: st}
		case <-time.After(testenv.Patience):
			t.Error("the server stopped reading but kept the connection")
			return slowConn{}
		}
	}
	if _, err := io.WriteString(conn, head); err != nil {
		return cut()
	}
	for i := 0; i < len(rest); i++ {
		select {
		case st := <-closed:
			return slowConn{cut: true, status: st}
		case <-time.After(interval):
		}
		if _, err := conn.Write([]byte{rest[i]}); err != nil {
			return cut()
		}
	}
	return slowConn{}
}

// TestServeSlowConnections: connections that trickle hold nothing for
// long, on SQLite and on PostgreSQL with Redis: a body sent slower than
// WASMWIZ_MIN_TRANSFER_RATE is cut with a key (400) and without (401, the
// connection closed), headers that trickle are cut by
// WASMWIZ_HEADER_TIMEOUT, headers over WASMWIZ_MAX_HEADER_BYTES are 431;
// and while 24 such connections are open, another tenant's runs complete.
func TestServeSlowConnections(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serveWith(t, map[string]string{
			"WASMWIZ_HEADER_TIMEOUT":    "1s",
			"WASMWIZ_MIN_TRANSFER_RATE": "1KiB",
			"WASMWIZ_MAX_HEADER_BYTES":  "8KiB",
		}, ServeOptions{})
		_, _, attackerKey := s.newUser(wasmwiz.TierFree)
		other, _, _ := s.newUser(wasmwiz.TierBasic)
		u, _ := url.Parse(s.url)
		addr := u.Host

		// Each whole request would take 4000 × 50ms = 200s; the
		// server must end every one long before.
		body := strings.Repeat("x", 4000)
		execHead := func(key string) string {
			h := "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/wasm\r\n"
			if key != "" {
				h += "Authorization: Bearer " + key + "\r\n"
			}
			return h + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
		}
		attacks := []struct {
			name       string
			head, rest string
			want       string // status line prefix of an answer, if one arrives
		}{
			{"body with a key", execHead(attackerKey), body, "HTTP/1.1 400"},
			{"body without a key", execHead(""), body, "HTTP/1.1 401"},
			{"headers", "POST /api/v1/execute HTTP/1.1\r\n", "X-Slow: " + body, ""},
		}
		stopRSS := testenv.PeakRSS(t)
		var cutAfter, otherTook testenv.Latencies
		var wg sync.WaitGroup
		results := make([]slowConn, 8*len(attacks))
		for i := range results {
			a := attacks[i%len(attacks)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				results[i] = trickleRequest(t, addr, a.head, a.rest, 50*time.Millisecond)
				cutAfter.Since(start)
			}()
		}
		// The other tenant runs meanwhile.
		if err := timedHellos(ctx, other, testmodule.Read(t, "hello.wasm"), 3, &otherTook); err != nil {
			t.Fatalf("another tenant during the attack: %v", err)
		}
		testenv.Wait(t, "the slow connections", wg.Wait)
		for i, r := range results {
			a := attacks[i%len(attacks)]
			// A close may reset the connection before the client reads
			// the answer (unread bytes in the server's buffer): no
			// answer is fine, a wrong one is not.
			if !r.cut {
				t.Errorf("%s: the server read the whole trickle", a.name)
			} else if r.status != "" && !strings.HasPrefix(r.status, a.want) {
				t.Errorf("%s: answer %q, want %q", a.name, r.status, a.want)
			}
		}

		// Headers over the limit: 431 at once.
		status, _ := rawHeaderRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 16<<10)+"\r\n\r\n")
		if !strings.HasPrefix(status, "HTTP/1.1 431") {
			t.Errorf("16KiB of headers: %q, want 431", status)
		}
		testenv.Prove(t, "slow connections: 24 trickling a byte per 50ms (bodies with and without a key, headers), "+be.name,
			"each cut (400, 401 or closed) by WASMWIZ_MIN_TRANSFER_RATE 1KiB/s after WASMWIZ_HEADER_TIMEOUT 1s; another tenant's runs complete",
			"time to answer", "cut after "+cutAfter.String()+" (the whole trickle would take 200 s)",
			"other tenant's latency", otherTook.String(),
			"peak RSS", testenv.MiB(stopRSS()))
	})
}

// rawHeaderRequest sends req as it is and returns the answer's status line.
func rawHeaderRequest(t *testing.T, addr, req string) (string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestServeIdleConnections: a connection holds nothing for long when it
// sends nothing: a keep-alive connection after its answer is closed after
// WASMWIZ_IDLE_TIMEOUT, and one that never sends a request after
// WASMWIZ_HEADER_TIMEOUT.
func TestServeIdleConnections(t *testing.T) {
	t.Parallel()
	s := backends[0].serveWith(t, map[string]string{"WASMWIZ_HEADER_TIMEOUT": "1s", "WASMWIZ_IDLE_TIMEOUT": "1s"}, ServeOptions{})
	u, _ := url.Parse(s.url)
	closedBy := func(conn net.Conn, br *bufio.Reader) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(testenv.Patience))
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("the server kept the idle connection: %v", err)
		}
	}

	kept, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if _, err := io.WriteString(kept, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(kept)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("healthz: %q, %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	_, _ = br.ReadString('\n') // the body: one line
	closedBy(kept, br)

	silent, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closedBy(silent, bufio.NewReader(silent))
}
