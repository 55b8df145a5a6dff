package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// cmdHealthcheck asks a running server on this host whether it is alive: it
// GETs /healthz on WASMWIZ_ADDR (or --url) and succeeds only on 200. It exists
// for container images without a shell or curl (the Dockerfile's HEALTHCHECK).
func cmdHealthcheck(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "healthcheck", `usage: wasmwiz healthcheck [--url URL] [--timeout 3s]

Exits 0 when the server on this host answers GET /healthz with 200, 1
otherwise. It exists for container images without a shell or curl (the
Dockerfile's HEALTHCHECK).`)
	target := fs.String("url", "", "URL to GET (default: http://WASMWIZ_ADDR/healthz)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long the check may take")
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *target == "" {
		addr := env.Getenv("WASMWIZ_ADDR")
		if addr == "" {
			addr = configDefault("WASMWIZ_ADDR")
		}
		u, err := healthzURL(addr)
		if err != nil {
			return err
		}
		*target = u
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "--url: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "%s: %v", *target, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "%s answered %s", *target, resp.Status)
	}
	fmt.Fprintf(env.Stdout, "%s: %s\n", *target, resp.Status)
	return nil
}

// healthzURL turns a listen address into the URL of its /healthz, asking the
// loopback address when the server listens on every interface.
func healthzURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", wasmwiz.Errorf(wasmwiz.EINVALID, "WASMWIZ_ADDR: want host:port, got %q", addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

// configDefault is the default value of one WASMWIZ_* variable.
func configDefault(name string) string {
	for _, v := range configVars() {
		if v.Name == name {
			return v.Default
		}
	}
	return ""
}
