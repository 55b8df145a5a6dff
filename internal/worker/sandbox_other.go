//go:build !amd64 && !arm64

package worker

const auditArch = 0 // no filter: installSandbox reports errNoSandbox

var archDeniedSyscalls []uintptr
