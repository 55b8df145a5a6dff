// Package runfiles makes the private directory of a run from a caller's
// files (wasmwiz.RunFiles), collects the files that come back, and removes
// the directory. The in-process engine and the worker pool both use it: a
// fresh directory per run, never a directory of the host, written and read
// through an os.Root so that nothing a guest left in it (a link to /etc)
// leads the server outside it.
package runfiles

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/wasmwiz/wasmwiz"
)

// Tree is a run's directory on the host.
type Tree struct {
	Dir   string // the directory; removed by Remove
	files *wasmwiz.RunFiles
}

// Make creates a fresh directory under parent ("" means os.TempDir()),
// named unguessably and private to the server's user, and writes files'
// entries into it. files must have passed RunFiles.Check. Errors are
// EINTERNAL (a full disk, say); the directory is gone then.
func Make(parent string, files *wasmwiz.RunFiles) (*Tree, error) {
	dir, err := os.MkdirTemp(parent, "run-")
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "making the run's directory")
	}
	t := &Tree{Dir: dir, files: files}
	if err := t.write(); err != nil {
		_ = t.Remove()
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "writing the run's files")
	}
	return t, nil
}

func (t *Tree) write() error {
	root, err := os.OpenRoot(t.Dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, e := range t.files.Entries {
		if d := path.Dir(e.Path); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		switch e.Kind {
		case wasmwiz.FileDir:
			err = root.MkdirAll(e.Path, 0o755)
		case wasmwiz.FileSymlink:
			err = root.Symlink(e.Target, e.Path)
		default:
			err = writeFile(root, e.Path, e.Data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func writeFile(root *os.Root, name string, data []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// Request returns a copy of req for a run in t: the tree mounted at its
// guest directory after req's mounts. When that is not "/", the tree is
// also mounted as ".", the working directory of wasi-libc guests (C, Rust,
// which resolve relative paths against the preopens), and PWD is the mount
// unless req sets it (Go's working directory; "/" is its default). Files is
// nil in the copy.
func (t *Tree) Request(req *wasmwiz.RunRequest) *wasmwiz.RunRequest {
	c := *req
	mount := t.files.Mount
	if mount == "" {
		mount = "/"
	}
	c.Mounts = append(append([]wasmwiz.Mount(nil), req.Mounts...), wasmwiz.Mount{HostDir: t.Dir, GuestDir: mount})
	if mount != "/" {
		c.Mounts = append(c.Mounts, wasmwiz.Mount{HostDir: t.Dir, GuestDir: "."})
	}
	if _, set := req.Env["PWD"]; !set && mount != "/" {
		c.Env = make(map[string]string, len(req.Env)+1)
		for k, v := range req.Env {
			c.Env[k] = v
		}
		c.Env["PWD"] = mount
	}
	c.Files = nil
	return &c
}

// Collect returns the regular files matching the outputs, in path order:
// at most l.MaxFiles of them, with their content while the contents so far
// stay within l.MaxFilesOutBytes and Omitted after. Links are followed
// inside the tree only; a link that leads out matches nothing. It returns
// nil without outputs.
func (t *Tree) Collect(l wasmwiz.Limits) ([]wasmwiz.OutputFile, error) {
	if len(t.files.Outputs) == 0 {
		return nil, nil
	}
	root, err := os.OpenRoot(t.Dir)
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "reading the run's directory")
	}
	defer root.Close()
	fsys := root.FS()
	found := map[string]bool{}
	for _, pat := range t.files.Outputs {
		if pat == "." || strings.HasSuffix(pat, "/") {
			walk(fsys, strings.TrimSuffix(pat, "/"), found)
			continue
		}
		matches, err := fs.Glob(fsys, pat)
		if err != nil {
			continue // a malformed pattern, which Check refuses
		}
		for _, m := range matches {
			st, err := fs.Stat(fsys, m)
			switch {
			case err != nil:
			case st.Mode().IsRegular():
				found[m] = true
			case st.IsDir():
				walk(fsys, m, found)
			}
		}
	}
	paths := make([]string, 0, len(found))
	for p := range found {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if int64(len(paths)) > l.MaxFiles {
		paths = paths[:max(l.MaxFiles, 0)]
	}
	out := make([]wasmwiz.OutputFile, 0, len(paths))
	var total int64
	for _, p := range paths {
		of, err := readOutput(fsys, p, l.MaxFilesOutBytes-total)
		if err != nil {
			continue // gone or unreadable: not an output
		}
		if !of.Omitted {
			total += of.Size
		}
		out = append(out, of)
	}
	return out, nil
}

// walk adds every regular file under dir (links to regular files inside
// the tree included; directories reached through links are not entered).
func walk(fsys fs.FS, dir string, found map[string]bool) {
	_ = fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip it, keep walking
		}
		switch {
		case d.Type().IsRegular():
			found[p] = true
		case d.Type()&fs.ModeSymlink != 0:
			if st, err := fs.Stat(fsys, p); err == nil && st.Mode().IsRegular() {
				found[p] = true
			}
		}
		return nil
	})
}

// readOutput hashes a file and keeps its content when it fits in room.
func readOutput(fsys fs.FS, p string, room int64) (wasmwiz.OutputFile, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return wasmwiz.OutputFile{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return wasmwiz.OutputFile{}, fs.ErrInvalid
	}
	of := wasmwiz.OutputFile{Path: p}
	h := sha256.New()
	if st.Size() <= room {
		data, err := io.ReadAll(io.TeeReader(io.LimitReader(f, room+1), h))
		if err != nil {
			return of, err
		}
		if int64(len(data)) <= room {
			of.Data, of.Size = data, int64(len(data))
			of.SHA256 = hex.EncodeToString(h.Sum(nil))
			return of, nil
		}
		// It grew past room while read: hash the rest, send none.
		n, err := io.Copy(h, f)
		if err != nil {
			return of, err
		}
		of.Size = int64(len(data)) + n
	} else {
		n, err := io.Copy(h, f)
		if err != nil {
			return of, err
		}
		of.Size = n
	}
	of.Omitted = true
	of.SHA256 = hex.EncodeToString(h.Sum(nil))
	return of, nil
}

// Remove removes the directory and everything in it.
func (t *Tree) Remove() error {
	return os.RemoveAll(t.Dir)
}
