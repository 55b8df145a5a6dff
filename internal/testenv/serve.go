package testenv

import (
	"maps"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// ServeProcess is `wasmwiz serve` of the built program (WasmwizBinary)
// running as a child process of a test.
type ServeProcess struct {
	Cmd    *exec.Cmd
	Stdout *Buffer
	Stderr *Buffer
	URL    string // where it listens, as it printed
	done   chan error
}

var listeningRE = regexp.MustCompile(`listening on (http://[0-9.]+:[0-9]+)`)

// StartServe starts `wasmwiz serve` with vars as its environment, plus
// PATH, a HOME of its own and, unless vars set them, WASMWIZ_ADDR
// 127.0.0.1:0 and a WASMWIZ_DATA_DIR of its own; it waits until serve
// prints its address, and kills it when the test ends. What serve printed
// before it listened (the first admin's key on an empty database) is in
// Stdout by then.
func StartServe(t testing.TB, vars map[string]string) *ServeProcess {
	t.Helper()
	env := map[string]string{"WASMWIZ_ADDR": "127.0.0.1:0", "WASMWIZ_DATA_DIR": t.TempDir()}
	maps.Copy(env, vars)
	p := &ServeProcess{Stdout: &Buffer{}, Stderr: &Buffer{}, done: make(chan error, 1)}
	p.Cmd = exec.Command(WasmwizBinary(t), "serve")
	p.Cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		p.Cmd.Env = append(p.Cmd.Env, k+"="+v)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Stdout, p.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.Cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		Recv(t, p.done, "serve to end after SIGKILL")
	})
	WaitFor(t, "serve to print its address", func() bool {
		m := listeningRE.FindStringSubmatch(p.Stdout.String())
		if m != nil {
			p.URL = m[1]
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("serve exited: %v\nstdout: %s\nstderr: %s", err, p.Stdout, p.Stderr)
		default:
		}
		return m != nil
	})
	return p
}

// Terminate sends SIGTERM and returns how the process exited (nil for
// status 0), failing t when it does not exit within two minutes.
func (p *ServeProcess) Terminate(t testing.TB) error {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not exit after SIGTERM\nstderr: %s", p.Stderr)
		return nil
	}
}
