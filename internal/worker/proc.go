package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wasmwiz/wasmwiz"
)

// proc is one worker process as the pool sees it.
type proc struct {
	pid    int
	cmd    *exec.Cmd
	stdin  *os.File      // our end of the child's stdin: requests
	stdout *os.File      // our end of the child's stdout: answers
	r      *bufio.Reader // over stdout
	tail   *tailBuffer   // the end of the child's stderr, for crash reports
	// region is the output region the child shares with us (region.go),
	// or nil; unmapped when stdout closes (regionGone), which can come
	// before a request that acquired a worker that has just died reads it.
	region     *outputRegion
	stdoutOnce sync.Once // closeStdout
	// filesDir is the worker's own directory for its runs' files, the one
	// place besides the compile cache where its Landlock domain lets it
	// write. Removed once the worker is reaped and no run uses it
	// (useFiles), whichever comes last.
	filesDir string

	mu         sync.Mutex
	filesInUse bool   // a run reads or writes in filesDir
	reaped     bool   // the process has been reaped
	dead       bool   // the process has exited; its pid stays ours until reaped
	killed     bool   // we sent it SIGKILL
	fatal      string // the Go runtime's "fatal error" line, when it died of one (the stack dump after it fills the tail)
	closed     bool   // close has run
	holdingOut bool   // a request reads stdout: close leaves it open for releaseStdout
	regionGone bool   // region is unmapped

	exited  chan struct{} // closed once the process is reaped and its stderr drained
	waitErr error         // cmd.Wait's answer, readable after exited

	// Guarded by Pool.mu, or owned by the run that acquired the worker.
	state       procState
	mods        *lru               // mirror of the modules the child holds
	retire      bool               // the child asked to be replaced after this request
	cacheStats  wasmwiz.CacheStats // as the child last reported them
	cpuAtAnswer time.Duration      // the child's CPU time at its last final answer
	runSeq      uint64             // the number of the child's last run request (region.go)
}

// cpuSinceAnswer is the CPU time (user and system) the worker used since its
// last final answer: what a run that ended by killing it used, compile
// included. It is known once the process has been reaped (0 before; and a
// worker killed in its first run counts its start too).
func (p *proc) cpuSinceAnswer() time.Duration {
	select {
	case <-p.exited:
	default:
		return 0
	}
	ps := p.cmd.ProcessState
	if ps == nil {
		return 0
	}
	return max(ps.UserTime()+ps.SystemTime()-p.cpuAtAnswer, 0)
}

type procState int

const (
	stateIdle procState = iota
	stateBusy
	stateGone
)

// startProc starts a worker process and waits for its hello. The child gets
// its own process group, is killed if this process dies (Pdeathsig), has
// exactly env as its environment, and an oom_score_adj of 1000. With ll it
// starts in that Landlock domain, which lets it write in filesDir (created
// here, removed when the child has been reaped).
func startProc(ctx context.Context, argv, env []string, cfg childConfig, timeout time.Duration, log *slog.Logger,
	children *sync.WaitGroup, onExit func(*proc), ll *landlock, filesDir string) (*proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("worker: empty command")
	}
	if err := os.Mkdir(filesDir, 0o700); err != nil {
		return nil, fmt.Errorf("worker: its files directory: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{}, env...) // never nil: nil would inherit ours
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	handoff, childHandoff, err := newHandoff()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		_ = os.RemoveAll(filesDir)
		return nil, fmt.Errorf("worker: handoff socket: %w", err)
	}
	cmd.ExtraFiles = []*os.File{childHandoff} // descriptor 3: see handoff.go
	// Descriptor 4: the output region (region.go). Without one (no memfd
	// here), output travels in frames only.
	region, regionFile, err := newOutputRegion()
	if err != nil {
		region, regionFile = nil, nil
	} else {
		cmd.ExtraFiles = append(cmd.ExtraFiles, regionFile)
	}
	exited := make(chan struct{})
	if ll != nil {
		err = ll.start(cmd, filesDir, exited)
	} else {
		err = startParked(cmd, exited, nil)
	}
	// The child holds its ends now (or failed to start); ours must go so that
	// EOF arrives when the child dies.
	inR.Close()
	outW.Close()
	errW.Close()
	childHandoff.Close()
	if regionFile != nil {
		regionFile.Close()
	}
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		handoff.Close()
		if region != nil {
			region.unmap()
		}
		_ = os.RemoveAll(filesDir)
		return nil, fmt.Errorf("worker: starting %s: %w", argv[0], err)
	}
	sendHandoff(handoff, cmd.Process.Pid)
	// Under memory pressure the kernel should kill a worker (whose run then
	// fails alone) before it kills the server. Raising another process's
	// score needs no privilege; where /proc is not writable, the default
	// stays. (The worker cannot: its Landlock domain keeps it out of /proc.)
	_ = os.WriteFile("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/oom_score_adj", []byte("1000"), 0)
	children.Add(1)
	p := &proc{
		pid:    cmd.Process.Pid,
		cmd:    cmd,
		stdin:  inW,
		stdout: outR,
		r:      bufio.NewReaderSize(outR, 64<<10),
		region: region,
		tail:   &tailBuffer{max: 8 << 10},
		exited: exited,

		filesDir: filesDir,
		state:    stateBusy, // not idle until the pool says so
		mods:     newLRU(cfg.ModuleCacheBytes),
	}
	stderrDone := make(chan struct{})
	go p.readStderr(errR, log, stderrDone)
	go func() {
		defer children.Done()
		p.wait(stderrDone, onExit)
	}()

	// Handshake: config out, hello back, within timeout.
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, p.kill)
	defer stop()
	_ = p.stdin.SetWriteDeadline(deadline)
	_ = p.stdout.SetReadDeadline(deadline)
	e := newFrame(64)
	cfg.encode(e)
	err = writeFrame(p.stdin, msgConfig, e)
	var kind byte
	var body []byte
	if err == nil {
		kind, body, err = readFrame(p.r)
	}
	if err == nil {
		d := &dec{b: body}
		switch kind {
		case msgHello:
			if v := d.uvarint(); d.err == nil && v != protocolVersion {
				err = fmt.Errorf("worker protocol: the worker speaks version %d, the pool %d (was the binary replaced? restart the server)", v, protocolVersion)
				break
			}
			d.varint()
			err = d.done()
		case msgError:
			err = decodeError(d)
		default:
			err = fmt.Errorf("worker protocol: hello expected, got %q", kind)
		}
	}
	if err != nil {
		p.kill()
		<-p.exited
		p.close()
		if t := p.tail.String(); t != "" {
			err = fmt.Errorf("%w; worker stderr: %s", err, t)
		}
		return nil, fmt.Errorf("worker: starting %s: %w", argv[0], err)
	}
	return p, nil
}

// readStderr forwards the child's stderr to the log, line by line, and keeps
// its end for crash reports. It returns at EOF, when the child has died.
func (p *proc) readStderr(f *os.File, log *slog.Logger, done chan<- struct{}) {
	defer close(done)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("fatal error: ")) {
			p.mu.Lock()
			if p.fatal == "" {
				p.fatal = string(line)
			}
			p.mu.Unlock()
		}
		p.tail.Write(line)
		p.tail.Write([]byte{'\n'})
		log.Info("worker", "pid", p.pid, "line", string(line))
	}
	// A line longer than the scanner's buffer ends the scan: drain the rest
	// so the child never blocks writing to a full pipe.
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		p.tail.Write(buf[:n])
		if err != nil {
			return
		}
	}
}

// beforeReap, when set (by tests), is called with a worker's pid once it
// has exited and is marked dead, before it is reaped and the pool hears of
// it: holding it back keeps a dead worker idle in the pool, as when a
// request takes it in that moment.
var beforeReap atomic.Pointer[func(pid int)]

// wait waits for the child to exit, marks it dead before reaping it (so that
// kill never signals a reused pid), reaps it, and reports to the pool.
func (p *proc) wait(stderrDone <-chan struct{}, onExit func(*proc)) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.mu.Lock()
	p.dead = true
	p.mu.Unlock()
	if hook := beforeReap.Load(); hook != nil {
		(*hook)(p.pid)
	}
	p.waitErr = p.cmd.Wait()
	<-stderrDone
	p.mu.Lock()
	p.reaped = true
	remove := !p.filesInUse
	p.mu.Unlock()
	if remove {
		_ = os.RemoveAll(p.filesDir)
	}
	if onExit != nil {
		onExit(p)
	}
	close(p.exited)
}

// isDead reports whether the process has exited (it may not be reaped yet).
func (p *proc) isDead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead
}

// useFiles marks filesDir in use by a run (or no longer, when inUse is
// false, removing it if the worker has been reaped meanwhile): a worker
// killed at its deadline leaves its run's files for the run to collect.
func (p *proc) useFiles(inUse bool) {
	p.mu.Lock()
	p.filesInUse = inUse
	remove := !inUse && p.reaped
	p.mu.Unlock()
	if remove {
		_ = os.RemoveAll(p.filesDir)
	}
}

// kill sends SIGKILL to the worker's process group. It is safe to call at any
// time, any number of times: after the child exited it does nothing.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dead {
		p.killed = true
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// close releases our pipe ends. Call it once the process has exited. While
// a request holds stdout (holdStdout), that end stays open until the request
// lets go, so the request can still read what the worker wrote before it died.
func (p *proc) close() {
	p.mu.Lock()
	p.closed = true
	hold := p.holdingOut
	p.mu.Unlock()
	p.stdin.Close()
	if !hold {
		p.closeStdout()
	}
}

// closeStdout closes our end of the child's stdout and unmaps its output
// region: nothing reads either after. Only the first call does anything (a
// second unmap could take a mapping made at the same address since).
func (p *proc) closeStdout() {
	p.stdoutOnce.Do(func() {
		p.stdout.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.region != nil {
			p.region.unmap()
			p.regionGone = true
		}
	})
}

// regionOutput adds what the output region holds of run seq to out: nothing
// when the worker never marked the region as that run's (it did not take the
// run up) or when the region is unmapped already.
func (p *proc) regionOutput(seq uint64, out *runOutput) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.region == nil || p.regionGone || p.region.run() != seq {
		return nil
	}
	return readRegion(p.region, p.region.written(), out)
}

// regionPeak returns the linear memory run seq reached as the worker last
// stored it in the output region, or 0 (no region, unmapped, or the worker
// never took the run up).
func (p *proc) regionPeak(seq uint64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.region == nil || p.regionGone || p.region.run() != seq {
		return 0
	}
	return p.region.peak()
}

// holdStdout keeps stdout open past close until releaseStdout.
func (p *proc) holdStdout() {
	p.mu.Lock()
	p.holdingOut = true
	p.mu.Unlock()
}

// releaseStdout ends holdStdout, closing stdout if close ran meanwhile.
func (p *proc) releaseStdout() {
	p.mu.Lock()
	p.holdingOut = false
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.closeStdout()
	}
}

// wasKilled reports whether the pool has sent the worker SIGKILL.
func (p *proc) wasKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

// outOfMemory reports whether the worker died of memory by its own bound:
// the watchdog, or the Go runtime when the kernel refuses a mapping past
// the process's own limit (memlimit.go), ends it with a fatal error that
// says so. A SIGKILL from outside (killedFromOutside) is not: the kernel's
// out-of-memory killer sends it for the host's memory, which a worker
// within its bound did not exhaust.
func (p *proc) outOfMemory() bool {
	p.mu.Lock()
	fatal := p.fatal
	p.mu.Unlock()
	// "out of memory" from the heap, "cannot allocate memory" (ENOMEM) from
	// the runtime's own allocations.
	return strings.Contains(fatal, "out of memory") || strings.Contains(fatal, "cannot allocate memory") ||
		strings.Contains(p.tail.String(), "out of memory")
}

// killedFromOutside reports whether the worker died of a SIGKILL the pool
// had not sent before it saw the worker fail (killedBefore): the kernel's
// out-of-memory killer's, or an operator's.
func (p *proc) killedFromOutside(killedBefore bool) bool {
	var ee *exec.ExitError
	if killedBefore || !errors.As(p.waitErr, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// crashReport describes how a worker ended, for the log.
func (p *proc) crashReport() string {
	var b strings.Builder
	b.WriteString("pid " + strconv.Itoa(p.pid))
	if p.waitErr != nil {
		b.WriteString(": " + p.waitErr.Error())
	}
	p.mu.Lock()
	fatal := p.fatal
	p.mu.Unlock()
	if fatal != "" {
		b.WriteString("; " + fatal)
	}
	if t := p.tail.String(); t != "" {
		b.WriteString("; stderr: " + t)
	}
	return b.String()
}

// rssBytes returns the worker's resident memory, or 0 when unknown.
func (p *proc) rssBytes() int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/statm")
	if err != nil {
		return 0
	}
	n, _ := statmBytes(b, 1)
	return n
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

// Write implements io.Writer; it never fails.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// String returns what is kept, trimmed.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
