package redis

import (
	"net"
	"net/netip"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// ProductionProblems returns what makes a Redis URL unfit for production,
// read the way go-redis reads it (redis.ParseURL): a host that is not
// loopback, a Unix socket or one of plaintextHosts reached without TLS (use
// rediss://), so that a password could cross the network in clear. nil when
// there is none.
func ProductionProblems(url string, plaintextHosts []string) []string {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		return []string{"go-redis cannot parse it"}
	}
	if opts.Network == "unix" || opts.TLSConfig != nil {
		return nil
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		host = opts.Addr
	}
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		return nil
	}
	for _, h := range plaintextHosts {
		if strings.EqualFold(h, host) {
			return nil
		}
	}
	return []string{"host " + host + " is reached without TLS: use rediss:// (or list the host in WASMWIZ_PLAINTEXT_HOSTS if it is on a private network)"}
}
