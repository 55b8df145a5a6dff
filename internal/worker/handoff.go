package worker

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A worker in its Landlock domain cannot open /proc, yet it reads its own
// /proc/PID/statm to bound its memory (memlimit.go). The pool hands it that
// file instead: it opens /proc/PID/statm of the new child itself and sends
// the descriptor over a socket the child inherits as descriptor 3. Landlock
// checks opening, not reading what is already open; seccomp denies the
// worker new sockets, not receiving on one it was given.

// handoffFD is the descriptor a worker inherits the handoff socket as.
const handoffFD = 3

// newHandoff returns a socket pair: ours, and the child's end for
// cmd.ExtraFiles[0].
func newHandoff() (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "handoff"), os.NewFile(uintptr(fds[1]), "handoff-child"), nil
}

// sendHandoff sends the child pid its own /proc/PID/statm over ours and
// closes ours. A child that died meanwhile gets nothing, which is fine.
func sendHandoff(ours *os.File, pid int) {
	defer ours.Close()
	statm, err := os.Open("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return // no /proc: the worker does without (its memory bound is off)
	}
	defer statm.Close()
	_ = unix.Sendmsg(int(ours.Fd()), []byte{'S'}, unix.UnixRights(int(statm.Fd())), nil, 0)
}

// receiveHandoff takes what the pool sent on descriptor 3 and closes it: the
// worker's own statm, or nil when nothing came (or there is no such socket,
// as when the process was not started by a pool).
func receiveHandoff() *os.File {
	var st unix.Stat_t
	if unix.Fstat(handoffFD, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	defer unix.Close(handoffFD)
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(handoffFD, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || oobn == 0 {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil
	}
	return os.NewFile(uintptr(fds[0]), "statm")
}
