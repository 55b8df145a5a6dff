package worker

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sandbox is a seccomp filter a worker installs on itself, on every
// thread, before it reads its first request, beside the Landlock domain it
// starts in (landlock.go), which limits the files it can open. It is
// defence in depth: the engine already gives a guest no sockets or
// processes and no files but its mounts, but a flaw in the compiler would
// hand a guest native code in a process of the server's user. With the filter, such code still cannot start a program, fork, open
// a socket, trace or signal another process (the server included) or read
// its memory, or reach kernel interfaces a worker never uses. Denied calls
// fail with EPERM; a call from another ABI (i386 or x32 on amd64) kills the
// worker. Everything a Go program and the engine need stays allowed, since
// the filter lists what is denied, not what is allowed.

// deniedSyscalls fail with EPERM in a worker.
var deniedSyscalls = append([]uintptr{
	unix.SYS_EXECVE, unix.SYS_EXECVEAT,
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
	unix.SYS_SOCKET, unix.SYS_SOCKETPAIR,
	unix.SYS_TKILL, unix.SYS_PIDFD_OPEN, unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_PIDFD_GETFD,
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_UNSHARE, unix.SYS_SETNS, unix.SYS_CHROOT, unix.SYS_PIVOT_ROOT,
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_KEXEC_LOAD, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF,
}, archDeniedSyscalls...)

// seccomp_data offsets.
const (
	offNr       = 0
	offArch     = 4
	offArg0Low  = 16
	offArg0High = 20
)

// BPF instructions.
func bpfLoad(off uint32) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
}
func bpfRet(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
func bpfJump(op uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}

// sandboxFilter builds the filter for a process whose pid is pid.
func sandboxFilter(pid int) []unix.SockFilter {
	allow := bpfRet(unix.SECCOMP_RET_ALLOW)
	deny := bpfRet(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	kill := bpfRet(unix.SECCOMP_RET_KILL_PROCESS)
	f := []unix.SockFilter{
		bpfLoad(offArch),
		bpfJump(unix.BPF_JEQ, auditArch, 1, 0),
		kill,
		bpfLoad(offNr),
		bpfJump(unix.BPF_JGE, 0x40000000, 0, 1), // the x32 ABI's numbers
		kill,
	}
	for _, nr := range deniedSyscalls {
		f = append(f, bpfJump(unix.BPF_JEQ, uint32(nr), 0, 1), deny)
	}
	// clone3 passes its flags in memory, out of the filter's sight: answer
	// ENOSYS, so that callers fall back to clone, whose flags it can read.
	f = append(f, bpfJump(unix.BPF_JEQ, unix.SYS_CLONE3, 0, 1), bpfRet(unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)))
	// clone: new threads only (CLONE_THREAD), never new processes.
	f = append(f,
		bpfJump(unix.BPF_JEQ, unix.SYS_CLONE, 0, 4),
		bpfLoad(offArg0Low),
		bpfJump(unix.BPF_JSET, unix.CLONE_THREAD, 0, 1),
		allow,
		deny,
	)
	// kill and tgkill: only this process (the Go runtime signals its own
	// threads for preemption and crash reports).
	for _, nr := range []uintptr{unix.SYS_KILL, unix.SYS_TGKILL} {
		f = append(f,
			bpfJump(unix.BPF_JEQ, uint32(nr), 0, 6),
			bpfLoad(offArg0High),
			bpfJump(unix.BPF_JEQ, 0, 0, 3),
			bpfLoad(offArg0Low),
			bpfJump(unix.BPF_JEQ, uint32(pid), 0, 1),
			allow,
			deny,
		)
	}
	return append(f, allow)
}

// errNoSandbox reports a platform the filter is not written for.
var errNoSandbox = errors.New("no seccomp filter for this architecture")

// installSandbox installs the filter on every thread of this process. It
// sets no_new_privs first, which seccomp requires of an unprivileged process.
func installSandbox() error {
	if auditArch == 0 {
		return errNoSandbox
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	f := sandboxFilter(os.Getpid())
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not be synchronised", r)
	}
	return nil
}
