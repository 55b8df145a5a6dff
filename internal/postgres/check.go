package postgres

import (
	"net/netip"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ProductionProblems returns what makes dsn unfit for production, read the
// way the driver reads it (pgconn.ParseConfig: URL or keyword form, hosts in
// host= parameters, fallbacks from sslmode=prefer or several hosts): no
// explicit user, or a host that is not loopback, a Unix socket or one of
// plaintextHosts reached without TLS on any of the driver's attempts, so
// that a password could cross the network in clear. Each problem is one
// sentence; nil when there is none.
func ProductionProblems(dsn string, plaintextHosts []string) []string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return []string{"the driver cannot parse it"}
	}
	var problems []string
	if !explicitUser(dsn) {
		problems = append(problems, "it names no user (the driver would fall back to the OS user or PGUSER)")
	}
	type attempt struct {
		host string
		tls  bool
	}
	attempts := []attempt{{cfg.Host, cfg.TLSConfig != nil}}
	for _, f := range cfg.Fallbacks {
		attempts = append(attempts, attempt{f.Host, f.TLSConfig != nil})
	}
	seen := map[string]bool{}
	for _, a := range attempts {
		if a.tls || seen[a.host] || isLocalHost(a.host) || contains(plaintextHosts, a.host) {
			continue
		}
		seen[a.host] = true
		problems = append(problems, "host "+a.host+" may be reached without TLS: use sslmode=require, verify-ca or verify-full (or list the host in WASMWIZ_PLAINTEXT_HOSTS if it is on a private network)")
	}
	return problems
}

// explicitUser reports whether a URL or keyword/value DSN names a user.
func explicitUser(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return (u.User != nil && u.User.Username() != "") || u.Query().Get("user") != ""
	}
	for _, f := range strings.Fields(dsn) {
		if k, v, ok := strings.Cut(f, "="); ok && k == "user" && strings.Trim(v, "'") != "" {
			return true
		}
	}
	return false
}

// isLocalHost reports whether host is a Unix socket directory or a loopback
// name or address.
func isLocalHost(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
