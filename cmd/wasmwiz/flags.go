package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// flagSet is a subcommand's flags with the CLI's habits: --help (or -h)
// prints the command's help on stdout and exits 0, the same text as `wasmwiz
// help COMMAND`; a bad flag or argument prints one line and a hint on stderr
// and exits 2.
type flagSet struct {
	*flag.FlagSet
	env   *Env
	name  string // the command as typed: "run", "users create"
	topic string // what `wasmwiz help` takes for it: "run", "users create"
	help  string // usage lines and description, before the flags
	after string // text after the flags (exit statuses, notes)
}

// newFlagSet returns the flags of the command name, described by help.
func newFlagSet(env *Env, name, help string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package prints its error and the usage itself; parse prints
	// instead, where each belongs.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, env: env, name: name, topic: name, help: help}
}

// parse parses args. It returns exitError{0} after printing help for -h or
// --help, exitError{2} after a one-line complaint for a bad flag.
func (f *flagSet) parse(args []string) error {
	err := f.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		f.printHelp(f.env.Stdout)
		return exitError{0}
	default:
		return f.usageError("%v", err)
	}
}

// usageError prints "wasmwiz NAME: message" and the hint where the help is,
// and returns exit status 2.
func (f *flagSet) usageError(format string, args ...any) error {
	return usageError(f.env, f.name, f.topic, format, args...)
}

// usageError prints "wasmwiz NAME: message" and a hint naming `wasmwiz help
// TOPIC`, and returns exit status 2.
func usageError(env *Env, name, topic, format string, args ...any) error {
	fmt.Fprintf(env.Stderr, "wasmwiz %s: %s\nRun 'wasmwiz help %s' for usage.\n", name, fmt.Sprintf(format, args...), topic)
	return exitError{exitUsage}
}

// printHelp writes the help text, the flags with their defaults, and the
// closing text.
func (f *flagSet) printHelp(w io.Writer) {
	fmt.Fprint(w, strings.TrimRight(f.help, "\n")+"\n")
	hasFlags := false
	f.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nflags:")
		f.SetOutput(w)
		f.PrintDefaults()
		f.SetOutput(io.Discard)
	}
	if f.after != "" {
		fmt.Fprint(w, "\n"+strings.TrimRight(f.after, "\n")+"\n")
	}
}

// parseArgs parses flags and wants exactly n positional arguments.
func parseArgs(fs *flagSet, args []string, n int) error {
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() != n {
		switch {
		case n == 0:
			return fs.usageError("unexpected argument %q", fs.Arg(0))
		case fs.NArg() < n:
			return fs.usageError("want %d argument(s), got %d", n, fs.NArg())
		default:
			return fs.usageError("want %d argument(s), got %d: unexpected %q", n, fs.NArg(), fs.Arg(n))
		}
	}
	return nil
}

// adminSubcommand splits `wasmwiz NAME SUB [flags]` into SUB, its arguments
// and SUB's flag set, whose help is the command's usage. With no SUB it
// prints that usage on stderr and returns a nil flag set and exit status 2;
// with a help word, on stdout, and exit status 0.
func adminSubcommand(env *Env, name, usage string, args []string) (string, []string, *flagSet, error) {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return "", nil, nil, exitError{exitUsage}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.Stdout, usage)
		return "", nil, nil, exitError{0}
	}
	fs := newFlagSet(env, name+" "+args[0], usage)
	return args[0], args[1:], fs, nil
}

// unknownSubcommand is the answer to `wasmwiz NAME SUB` for a SUB that NAME
// does not have.
func unknownSubcommand(env *Env, name, sub string) error {
	return usageError(env, name, name, "unknown subcommand %q", sub)
}
