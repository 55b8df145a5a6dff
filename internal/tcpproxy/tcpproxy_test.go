package tcpproxy_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	return testenv.ServeTCP(t, func(c net.Conn) { io.Copy(c, c); c.Close() })
}

func roundTrip(addr string, deadline time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(deadline))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

func TestStopStartStall(t *testing.T) {
	t.Parallel()
	p := tcpproxy.New(t, echoServer(t))
	// Each step does something to the proxy, then a round trip through it
	// within deadline answers or not.
	steps := []struct {
		name     string
		do       func()
		deadline time.Duration
		answers  bool
	}{
		{"through the proxy", func() {}, 10 * time.Second, true},
		{"after Stop", p.Stop, 10 * time.Second, false},
		{"after Start, on the same address", p.Start, 10 * time.Second, true},
		{"after Stall", p.Stall, 200 * time.Millisecond, false},
		{"after Unstall", p.Unstall, 10 * time.Second, true},
	}
	for _, s := range steps {
		s.do()
		if err := roundTrip(p.Addr(), s.deadline); (err == nil) != s.answers {
			t.Fatalf("%s: the proxy answered %v (%v), want %v", s.name, err == nil, err, s.answers)
		}
	}
}

func TestClosedAddr(t *testing.T) {
	if c, err := net.Dial("tcp", tcpproxy.ClosedAddr(t)); err == nil {
		c.Close()
		t.Fatal("something answers on ClosedAddr")
	}
}
