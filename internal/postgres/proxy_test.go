package postgres_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
)

// behindProxy makes a migrated schema and returns a store on it straight to
// the database, a proxy in front of the database, and the schema's URL
// through the proxy.
func behindProxy(t testing.TB) (direct *postgres.DB, proxy *tcpproxy.Proxy, proxied string) {
	t.Helper()
	url := pgtest.Schema(t)
	direct = openURL(t, url, true)
	proxy = tcpproxy.New(t, targetOf(t, url))
	return direct, proxy, viaProxy(t, url, proxy)
}

// openStallable opens a store at proxied, behind proxy, whose calls time
// out after callTimeout. When the test ends the proxy lets the answers it
// holds go before the store closes: Close waits for calls still held.
func openStallable(t testing.TB, proxy *tcpproxy.Proxy, proxied string, callTimeout time.Duration) *postgres.DB {
	t.Helper()
	db, err := postgres.OpenWith(context.Background(), proxied, postgres.Options{CallTimeout: callTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	t.Cleanup(proxy.Unstall)
	return db
}

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
