package testenv

import (
	"net"
	"testing"
)

// ServeTCP listens on a port of 127.0.0.1 until the test ends and hands
// each connection it accepts to serve, in a goroutine of its own; it
// returns the listener's address. It is for a peer that speaks raw TCP,
// where an httptest server would answer too politely.
func ServeTCP(t testing.TB, serve func(c net.Conn)) string {
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
			go serve(c)
		}
	}()
	return ln.Addr().String()
}
