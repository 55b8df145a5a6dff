package worker

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock confines what a worker process can open to what it was handed:
// its executable (to start), the system's shared libraries when the
// executable is linked dynamically, the compiled-code cache, and its own
// directory for run files. Everything else the server's user can read (the
// database, the data directory, configuration, other workers' run files)
// is out of reach for the worker, so that a flaw in the compiler or the
// runtime that hands a guest native code still cannot read it.
//
// The kernel applies a Landlock domain to the calling thread and to what it
// starts; before Landlock ABI 8 there is no way to apply it to every thread
// of a running process, and a Go process always has several. So the pool
// applies the domain to a thread of its own made for the purpose, starts
// the worker from that thread (fork and exec keep the domain, and every
// thread of the worker descends from it), and keeps that thread parked
// until the worker is reaped: the parent-death signal (Pdeathsig) is tied
// to the thread that started the child. Go never starts new threads from a
// locked thread (it asks its template thread), so nothing else inherits the
// domain. See docs/RATIONALE.md ("Worker processes").

// landlockABI returns the kernel's Landlock ABI version, 0 without Landlock.
var landlockABI = sync.OnceValue(func() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
})

// Access rights by the ABI that introduced them.
const (
	llFSv1 = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	llFSv2  = llFSv1 | unix.LANDLOCK_ACCESS_FS_REFER
	llFSv3  = llFSv2 | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	llFSv5  = llFSv3 | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	llNetv4 = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP

	// What a worker may do where.
	llExec  = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_EXECUTE
	llCache = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_REFER | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	llFiles = llCache | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_SYM
)

// errNoLandlock reports a kernel without a usable Landlock: none, or ABI 1,
// under which a domain refuses every rename or link across directories
// (which guests do).
var errNoLandlock = errors.New("the kernel has no Landlock ABI 2 or newer")

// llRule lets a worker do access to path (a directory: beneath it).
type llRule struct {
	path   string
	access uint64
}

// landlock is the domain of the pool's workers: the rules they share; each
// worker adds its own files directory.
type landlock struct {
	rules []llRule
}

// systemLibDirs hold the shared libraries a dynamically linked executable's
// loader may open: public files, no secrets.
var systemLibDirs = []string{"/lib", "/lib32", "/lib64", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/local/lib"}

// newLandlock returns the domain for workers started from exe with the
// compiled-code cache cacheDir ("" for none), or errNoLandlock.
func newLandlock(exe, cacheDir string) (*landlock, error) {
	if landlockABI() < 2 {
		return nil, errNoLandlock
	}
	path, err := exec.LookPath(exe)
	if err != nil {
		return nil, err
	}
	l := &landlock{rules: []llRule{{path, llExec}}}
	if f, err := elf.Open(path); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				// The loader opens the libraries; it reads its cache first.
				for _, d := range systemLibDirs {
					l.rules = append(l.rules, llRule{d, llExec})
				}
				l.rules = append(l.rules, llRule{"/etc/ld.so.cache", unix.LANDLOCK_ACCESS_FS_READ_FILE})
				if interp, err := interpreter(p); err == nil {
					l.rules = append(l.rules, llRule{filepath.Dir(interp), llExec})
				}
				break
			}
		}
		f.Close()
	}
	if cacheDir != "" {
		l.rules = append(l.rules, llRule{cacheDir, llCache})
	}
	return l, nil
}

func interpreter(p *elf.Prog) (string, error) {
	b := make([]byte, p.Filesz)
	if _, err := p.ReadAt(b, 0); err != nil {
		return "", err
	}
	if i := len(b) - 1; i >= 0 && b[i] == 0 {
		b = b[:i]
	}
	return string(b), nil
}

// start starts cmd in the domain, with filesDir added, from a thread that
// stays parked until keep is closed (when the worker has been reaped).
func (l *landlock) start(cmd *exec.Cmd, filesDir string, keep <-chan struct{}) error {
	rules := append(l.rules[:len(l.rules):len(l.rules)], llRule{filesDir, llFiles})
	return startParked(cmd, keep, func() error { return restrictThread(rules) })
}

// startParked starts cmd from a thread of its own, which prepare (nil: none)
// readies first and which stays parked until keep is closed (when the
// child has been reaped). The child's parent-death signal (Pdeathsig) is
// tied to the thread that started it, not to the process: started from
// any thread, a child was killed when that thread ended, as a thread does
// when a goroutine locked to it returns (another worker's start, below,
// once that worker was reaped).
func startParked(cmd *exec.Cmd, keep <-chan struct{}, prepare func() error) error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread keeps what prepare did, and ends with
		// this goroutine instead of running other goroutines.
		runtime.LockOSThread()
		if prepare != nil {
			if err := prepare(); err != nil {
				done <- err
				return
			}
		}
		err := cmd.Start()
		done <- err
		if err == nil {
			<-keep
		}
	}()
	return <-done
}

// restrictThread puts the calling thread, which must be locked to its
// goroutine, in a new Landlock domain made of rules.
func restrictThread(rules []llRule) error {
	abi := landlockABI()
	var handled uint64
	switch {
	case abi >= 5:
		handled = llFSv5
	case abi >= 3:
		handled = llFSv3
	default:
		handled = llFSv2
	}
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	if abi >= 4 {
		attr.Handled_access_net = llNetv4 // no TCP at all: the worker has no rule for it
	}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	defer unix.Close(int(fd))
	for _, r := range rules {
		if err := addRule(int(fd), r, handled); err != nil {
			return err
		}
	}
	// Per thread, like the domain: the server's other threads keep theirs.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", errno)
	}
	return nil
}

// fileAccess are the rights a rule on a file (not a directory) may hold.
const fileAccess = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
	unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV

func addRule(ruleset int, r llRule, handled uint64) error {
	fd, err := unix.Open(r.path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a library directory this system does not have
	}
	if err != nil {
		return fmt.Errorf("landlock rule for %s: %w", r.path, err)
	}
	defer unix.Close(fd)
	access := r.access & handled
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock rule for %s: %w", r.path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &= fileAccess
	}
	attr := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&attr)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("landlock rule for %s: %w", r.path, errno)
	}
	return nil
}
