package tcpproxy_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
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
	if err := roundTrip(p.Addr(), 10*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Stop()
	if err := roundTrip(p.Addr(), 10*time.Second); err == nil {
		t.Fatal("a stopped proxy answered")
	}
	p.Start()
	if err := roundTrip(p.Addr(), 10*time.Second); err != nil {
		t.Fatalf("after Start, on the same address: %v", err)
	}
	p.Stall()
	if err := roundTrip(p.Addr(), 200*time.Millisecond); err == nil {
		t.Fatal("a stalled proxy answered")
	}
	p.Unstall()
	if err := roundTrip(p.Addr(), 10*time.Second); err != nil {
		t.Fatalf("after Unstall: %v", err)
	}
}

func TestClosedAddr(t *testing.T) {
	if c, err := net.Dial("tcp", tcpproxy.ClosedAddr(t)); err == nil {
		c.Close()
		t.Fatal("something answers on ClosedAddr")
	}
}
