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
	"strings"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks the command to stop (serve drains); a second
		// one ends the process at once.
		sig := <-sigs
		cancel(signalError{sig})
		sig = <-sigs
		fmt.Fprintf(os.Stderr, "wasmwiz: %v again: exiting now\n", sig)
		os.Exit(signalStatus(sig))
	}()
	code := Main(ctx, &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, os.Args[1:])
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

// signalError is the cause of Main's context when a signal ended it.
type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return "interrupted by " + e.sig.String() }

// signalStatus is the exit status of a command a signal stopped: 128 plus
// the signal's number, as shells report it (130 for Ctrl-C).
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

type command struct {
	run     func(ctx context.Context, env *Env, args []string) error
	summary string
	// subcommands names the verbs of a command that has them (users, keys,
	// tiers), for `wasmwiz help users create`.
	subcommands []string
	// untilSignal marks a command that runs until it is told to stop: a
	// signal is its normal end (exit status 0 after a clean shutdown).
	untilSignal bool
	hidden      bool // not listed: started by serve itself
}

// commandOrder is the order of `wasmwiz help`: every command but hidden ones.
var commandOrder = []string{"serve", "run", "exec", "migrate", "users", "keys", "tiers", "config", "version", "bench", "healthcheck"}

func commands() map[string]command {
	return map[string]command{
		"serve":       {run: cmdServe, summary: "run the WasmWiz service (until Ctrl-C or SIGTERM)", untilSignal: true},
		"run":         {run: cmdRun, summary: "run a module on this machine, no server needed"},
		"exec":        {run: cmdExec, summary: "run a module on a WasmWiz server"},
		"migrate":     {run: cmdMigrate, summary: "create the database, or apply the migrations it lacks"},
		"users":       {run: cmdUsers, summary: "manage users: create, list, disable, enable, set-tier", subcommands: []string{"create", "list", "disable", "enable", "set-tier"}},
		"keys":        {run: cmdKeys, summary: "manage API keys: create, list, revoke", subcommands: []string{"create", "list", "revoke"}},
		"tiers":       {run: cmdTiers, summary: "manage tiers: list, set", subcommands: []string{"list", "set"}},
		"config":      {run: cmdConfig, summary: "print the effective configuration, secrets redacted"},
		"version":     {run: cmdVersion, summary: "print version, commit and Go version"},
		"bench":       {run: cmdBench, summary: "measure the engine and the service on this machine"},
		"healthcheck": {run: cmdHealthcheck, summary: "exit 0 when the local server answers /healthz (container HEALTHCHECK)"},
		"worker":      {run: cmdWorker, summary: "a guest-running worker process of serve", untilSignal: true, hidden: true},
	}
}

// Main runs the command line args and returns the process exit status. When
// ctx ends with a signalError as its cause, a command that is not meant to
// run until a signal exits 128+signal (130 for Ctrl-C).
func Main(ctx context.Context, env *Env, args []string) int {
	cmds := commands()
	if len(args) == 0 {
		printUsage(env.Stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printUsage(env.Stdout)
		return 0
	case "help":
		return help(ctx, env, cmds, args[1:])
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "wasmwiz: unknown command %q\nRun 'wasmwiz help' for the list of commands.\n", args[0])
		return exitUsage
	}
	err := c.run(ctx, env, args[1:])
	var sig signalError
	if errors.As(context.Cause(ctx), &sig) && !c.untilSignal {
		// Whatever the command made of its cancelled context (a guest cut
		// short looks like a timeout), it was interrupted.
		fmt.Fprintf(env.Stderr, "wasmwiz %s: interrupted\n", args[0])
		return signalStatus(sig.sig)
	}
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

// help is `wasmwiz help [COMMAND [SUBCOMMAND]]`: the same text as
// `wasmwiz COMMAND [SUBCOMMAND] --help`, on stdout.
func help(ctx context.Context, env *Env, cmds map[string]command, args []string) int {
	if len(args) == 0 {
		printUsage(env.Stdout)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "wasmwiz help: unknown command %q\nRun 'wasmwiz help' for the list of commands.\n", args[0])
		return exitUsage
	}
	switch {
	case len(args) == 1:
		return Main(ctx, env, []string{args[0], "--help"})
	case len(args) == 2 && contains(c.subcommands, args[1]):
		return Main(ctx, env, []string{args[0], args[1], "--help"})
	case len(c.subcommands) > 0 && len(args) == 2:
		fmt.Fprintf(env.Stderr, "wasmwiz help: %s has no subcommand %q (it has %s)\nRun 'wasmwiz help %s' for usage.\n",
			args[0], args[1], strings.Join(c.subcommands, ", "), args[0])
	default:
		fmt.Fprintf(env.Stderr, "wasmwiz help: too many arguments\nRun 'wasmwiz help %s' for usage.\n", args[0])
	}
	return exitUsage
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func printUsage(w io.Writer) {
	cmds := commands()
	fmt.Fprintln(w, "usage: wasmwiz <command> [flags] [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	for _, name := range commandOrder {
		fmt.Fprintf(w, "  %-12s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'wasmwiz help <command>' (or wasmwiz <command> --help) for its flags and arguments.")
	fmt.Fprintln(w, "The service is configured by WASMWIZ_* environment variables: 'wasmwiz config' prints them.")
}
