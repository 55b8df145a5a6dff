// Command wasmwiz runs WebAssembly: as a one-shot CLI (wasmwiz run), as the
// WasmWiz service (wasmwiz serve), and administers the service's database.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// Env is what a subcommand may touch of its process: tests pass their own.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// exitError ends a subcommand with a specific exit status, after the
// subcommand has already printed what it had to say.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

type command struct {
	run   func(ctx context.Context, env *Env, args []string) error
	usage string
}

func commands() map[string]command {
	return map[string]command{
		"serve":       {cmdServe, "run the WasmWiz service"},
		"run":         {cmdRun, "run a module locally: wasmwiz run [flags] module.wasm [args...]"},
		"exec":        {cmdExec, "run a module on a WasmWiz server"},
		"migrate":     {cmdMigrate, "apply database migrations"},
		"users":       {cmdUsers, "manage users: create|list|disable|set-tier"},
		"keys":        {cmdKeys, "manage API keys: create|list|revoke"},
		"tiers":       {cmdTiers, "manage tiers: list|set"},
		"config":      {cmdConfig, "print the effective configuration, secrets redacted"},
		"version":     {cmdVersion, "print version, commit and Go version"},
		"worker":      {cmdWorker, "internal: a guest-running worker process of serve"},
		"bench":       {cmdBench, "measure the engine and the service on this machine"},
		"healthcheck": {cmdHealthcheck, "exit 0 when the local server answers /healthz (for container HEALTHCHECK)"},
	}
}

// Main runs the command line args and returns the process exit status.
func Main(ctx context.Context, env *Env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.Stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "wasmwiz: unknown command %q\n", args[0])
		printUsage(env.Stderr, cmds)
		return 2
	}
	err := c.run(ctx, env, args[1:])
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(env.Stderr, "wasmwiz %s: %v\n", args[0], errorText(err))
		return 1
	}
}

func printUsage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: wasmwiz <command> [flags]")
	fmt.Fprintln(w, "commands:")
	for _, name := range []string{"serve", "run", "exec", "migrate", "users", "keys", "tiers", "config", "version", "bench"} {
		fmt.Fprintf(w, "  %-8s %s\n", name, cmds[name].usage)
	}
}
