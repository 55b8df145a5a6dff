package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// sayingChild is the test binary as a child that prints what
// WASMWIZ_TESTENV_SAY holds and whether it inherited HOME, or fails with
// it when WASMWIZ_TESTENV_FAIL is set.
const sayingChild Child = "WASMWIZ_TESTENV_TEST_CHILD"

func TestMain(m *testing.M) {
	sayingChild.Become(func() error {
		say := os.Getenv("WASMWIZ_TESTENV_SAY")
		if os.Getenv("WASMWIZ_TESTENV_FAIL") != "" {
			return errors.New(say)
		}
		fmt.Printf("%s, HOME=%q", say, os.Getenv("HOME"))
		return nil
	})
	os.Exit(m.Run())
}

// TestChild: a child started with Command runs Become's function in place
// of the tests, with nothing of the environment but what it was given, and
// exits 0 when the function returns nil, 1 with its error on stderr when it
// fails.
func TestChild(t *testing.T) {
	t.Parallel()
	run := func(env ...string) (code int, stdout, stderr string) {
		cmd := sayingChild.Command(t, env...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		var ee *exec.ExitError
		if err := cmd.Run(); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errOut.String()
	}
	if code, stdout, stderr := run("WASMWIZ_TESTENV_SAY=hello"); code != 0 || stdout != `hello, HOME=""` || stderr != "" {
		t.Errorf("returning child: exit %d stdout %q stderr %q, want 0 and its words without HOME", code, stdout, stderr)
	}
	if code, stdout, stderr := run("WASMWIZ_TESTENV_SAY=broken", "WASMWIZ_TESTENV_FAIL=1"); code != 1 || stdout != "" || stderr != "broken\n" {
		t.Errorf("failing child: exit %d stdout %q stderr %q, want 1 and its error", code, stdout, stderr)
	}
	if got := sayingChild.Argv(); len(got) != 2 || got[0] != os.Args[0] || got[1] != "-test.run=^$" {
		t.Errorf("Argv() = %q, want this binary running no test", got)
	}
}
