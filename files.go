package wasmwiz

import (
	"path"
	"strings"
)

// Mount is a directory of the host that a guest sees as one of its own
// directories: `wasmwiz run --dir HOSTDIR:GUESTDIR[:ro]`, and the private
// directory the server makes for a run's files. Everything under it is
// reached through a traversal-safe root, so no "..", absolute path or
// symbolic link in the guest leads outside HostDir. A caller never names a
// host directory: the server sets Mounts, never a request.
type Mount struct {
	HostDir  string // the directory on the host
	GuestDir string // where the guest sees it: an absolute path, "/" or "/data"
	ReadOnly bool   // the guest may read but change nothing under it
}

// CleanGuestDir returns dir as an absolute, clean guest path ("" is "/"),
// or EINVAL for one that is not absolute or has a NUL byte.
func CleanGuestDir(dir string) (string, error) {
	if dir == "" {
		return "/", nil
	}
	if dir[0] != '/' || strings.IndexByte(dir, 0) >= 0 {
		return "", Errorf(EINVALID, "guest directory %q must be an absolute path such as / or /data", dir)
	}
	return path.Clean(dir), nil
}
