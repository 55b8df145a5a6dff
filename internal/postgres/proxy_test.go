package postgres_test

import (
	"errors"
	"net"
	"net/url"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
)

// viaProxy returns dbURL with its host replaced by the proxy's address.
func viaProxy(t testing.TB, dbURL string, p *tcpproxy.Proxy) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

// targetOf returns the host:port of a postgres URL.
func targetOf(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		t.Fatal(errors.New("WASMWIZ_TEST_POSTGRES_URL has no host; the proxy test needs TCP"))
	}
	if port == "" {
		port = "5432"
	}
	return net.JoinHostPort(host, port)
}
