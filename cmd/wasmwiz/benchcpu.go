package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/procfs"

	"github.com/wasmwiz/wasmwiz/internal/postgres"
)

// benchCPU is the CPU time (user and system) each process that serves a
// request has spent so far; a negative figure was not measured. Requests
// per second on a shared machine move with its other tenants; CPU time per
// request moves much less, and says which process a request's cost is in.
type benchCPU struct {
	self    time.Duration // this process: every target's server and the clients
	workers time.Duration // the worker processes (this process's children)
	redis   time.Duration // redis-server (INFO cpu), when the limiter is Redis
	pg      time.Duration // PostgreSQL's processes, when the database is on this machine
}

func (c benchCPU) sub(o benchCPU) benchCPU {
	return benchCPU{self: diffCPU(c.self, o.self), workers: diffCPU(c.workers, o.workers),
		redis: diffCPU(c.redis, o.redis), pg: diffCPU(c.pg, o.pg)}
}

func (c benchCPU) add(o benchCPU) benchCPU {
	return benchCPU{self: c.self + o.self, workers: sumCPU(c.workers, o.workers),
		redis: sumCPU(c.redis, o.redis), pg: sumCPU(c.pg, o.pg)}
}

// total is the sum of what was measured.
func (c benchCPU) total() time.Duration {
	var t time.Duration
	for _, d := range []time.Duration{c.self, c.workers, c.redis, c.pg} {
		t += max(d, 0)
	}
	return t
}

func diffCPU(a, b time.Duration) time.Duration {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a-b, 0)
}

func sumCPU(a, b time.Duration) time.Duration {
	if a < 0 || b < 0 {
		return -1
	}
	return a + b
}

// cpu reads each process's CPU time so far, from /proc (Linux; elsewhere
// only Redis's is known) and Redis's INFO cpu. PostgreSQL's is the sum over
// every process named postgres on this machine, so it counts its other
// databases' work too: measure on a server of its own, as for counters.
func (b *benchServer) cpu(ctx context.Context) benchCPU {
	c := benchCPU{self: -1, workers: -1, redis: -1, pg: -1}
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if procs, err := fs.AllProcs(); err == nil {
			pid := os.Getpid()
			countPG := b.localPostgres()
			c.workers = 0
			if countPG {
				c.pg = 0
			}
			for _, p := range procs {
				st, err := p.Stat()
				if err != nil {
					continue // ended since the listing
				}
				d := time.Duration(st.CPUTime() * float64(time.Second))
				switch {
				case st.PID == pid:
					c.self = d
				case st.PPID == pid:
					c.workers += d
				case countPG && st.Comm == "postgres":
					c.pg += d
				}
			}
		}
	}
	if b.srv.rclient != nil {
		if info, err := b.srv.rclient.Info(ctx, "cpu").Result(); err == nil {
			c.redis = redisCPU(info)
		}
	}
	return c
}

// redisCPU is used_cpu_sys plus used_cpu_user of an INFO cpu answer, -1
// when it has neither.
func redisCPU(info string) time.Duration {
	var secs float64
	found := false
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			secs += f
			found = true
		}
	}
	if !found {
		return -1
	}
	return time.Duration(secs * float64(time.Second))
}

// localPostgres reports whether the store is PostgreSQL reached over a
// Unix socket or loopback, so that its processes are on this machine.
func (b *benchServer) localPostgres() bool {
	db, ok := b.srv.store.(*postgres.DB)
	if !ok {
		return false
	}
	host := db.Pool().Config().ConnConfig.Host
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// printCPU writes each target's CPU time per request (n requests each) by
// process, and the raw-wazero target's total over each target's.
func printCPU(w io.Writer, targets []*benchTarget, n float64) error {
	fmt.Fprintln(w, "CPU per request (this process holds every target's server and the clients; the others run whatever the target is):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tthis process\tworkers\tRedis\tPostgreSQL\ttotal\traw-wazero vs target\t")
	per := func(d time.Duration) string {
		if d < 0 {
			return "-"
		}
		return (time.Duration(float64(d) / n)).Round(time.Microsecond).String()
	}
	var raw time.Duration
	for _, tg := range targets {
		if tg.name == "raw-wazero" {
			raw = tg.cpu.total()
		}
	}
	for _, tg := range targets {
		ratio := "-"
		if t := tg.cpu.total(); t > 0 && raw > 0 {
			ratio = fmt.Sprintf("%.2f", float64(raw)/float64(t))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", tg.name, per(tg.cpu.self), per(tg.cpu.workers), per(tg.cpu.redis),
			per(tg.cpu.pg), per(tg.cpu.total()), ratio)
	}
	return tw.Flush()
}
