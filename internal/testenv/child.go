package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Child is a part the test binary plays in a process of its own, started by
// a test or by the code under test, instead of running tests: a worker of a
// pool, a server stand-in. Its value is the environment variable that
// selects it. The package's TestMain calls Become for each of its children
// before it runs the tests.
type Child string

// Argv is the command line that starts the test binary as c: it runs no
// test, so that only TestMain's Become acts.
func (c Child) Argv() []string { return []string{os.Args[0], "-test.run=^$"} }

// Env is the environment variable, as name=value, that selects c.
func (c Child) Env() string { return string(c) + "=1" }

// Command is Command (killed before the test binary's deadline) of the test
// binary as c, with env for its whole environment besides c's variable:
// nothing else is inherited.
func (c Child) Command(t testing.TB, env ...string) *exec.Cmd {
	t.Helper()
	argv := c.Argv()
	cmd := Command(t, argv[0], argv[1:]...)
	cmd.Env = append([]string{c.Env()}, env...)
	return cmd
}

// Become, in a process started as c, runs main and exits: with status 1
// after printing main's error to stderr, else 0. In any other process it
// returns at once.
func (c Child) Become(main func() error) {
	if os.Getenv(string(c)) != "1" {
		return
	}
	if err := main(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
