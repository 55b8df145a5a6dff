package worker

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_AARCH64

var archDeniedSyscalls []uintptr // arm64 has no fork or vfork system call
