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
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

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
// the first l.MaxFiles of them, with their content while the contents so
// far stay within l.MaxFilesOutBytes and Omitted after. It returns nil
// without outputs.
//
// The outputs are matched against the tree's own entries, read once
// whatever the outputs, and a link is never followed into a directory: a
// link to a directory matches nothing and is not entered, so that links
// cannot multiply what is read (99 links "lN -> ." and "*/*/*/*/x"). A link
// to a regular file inside the tree comes back as that file, under the
// link's path; one that leads out, or to nothing, matches nothing. Reading
// stops at the l.MaxFiles-th file, or when the work maxVisits allows is
// spent (directory entries read, and the path components of the links
// followed: twice the entries a tree can hold); it goes no deeper than
// anything in a tree can be (wasmwiz.MaxFileDepth); a file reached by several paths (links, hard
// links) is hashed once.
func (t *Tree) Collect(l wasmwiz.Limits) ([]wasmwiz.OutputFile, error) {
	out, _, err := t.collect(l)
	return out, err
}

// collect is Collect, also returning its collector, which counted the
// work done.
func (t *Tree) collect(l wasmwiz.Limits) ([]wasmwiz.OutputFile, *collector, error) {
	if len(t.files.Outputs) == 0 {
		return nil, nil, nil
	}
	root, err := os.OpenRoot(t.Dir)
	if err != nil {
		return nil, nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "reading the run's directory")
	}
	defer root.Close()
	c := &collector{top: root, limits: l, maxVisits: maxVisits(l), digests: map[fileID]digest{}, out: []wasmwiz.OutputFile{}}
	var states []match
	all := false
	for _, pat := range t.files.Outputs {
		pat = strings.TrimSuffix(pat, "/")
		if pat == "." || pat == "" {
			all = true
			continue
		}
		c.patterns = append(c.patterns, strings.Split(pat, "/"))
		states = append(states, match{pattern: len(c.patterns) - 1})
	}
	if l.MaxFiles > 0 {
		c.walk(root, ".", 0, all, states)
	}
	return c.out, c, nil
}

// createCost is what the guest's write budget counts for each file,
// directory or link it makes (wasifs.CreateCost).
const createCost = 4096

// maxVisits bounds the work of Collect, in directory entries read and path
// components of links resolved: twice the entries a run's tree can hold
// (those sent in, l.MaxFiles, and those the guest may make within its
// write budget); no bound without a write budget (wasmwiz run).
func maxVisits(l wasmwiz.Limits) int64 {
	if l.MaxFileWriteBytes <= 0 {
		return math.MaxInt64
	}
	return 2 * (max(l.MaxFiles, 0) + l.MaxFileWriteBytes/createCost)
}

// maxDepth is how many directories deep Collect goes (each level it is in
// holds a descriptor): as deep as a file can be, in files sent in
// (CleanFilePath) and files a guest makes (internal/wasifs).
const maxDepth = wasmwiz.MaxFileDepth

// match is how far an output pattern has matched: its parts before next
// matched the directories above an entry.
type match struct{ pattern, next int }

// collector walks a tree once, in path order, into the directories the
// outputs can still match, and reads the files they match.
type collector struct {
	top       *os.Root   // the tree
	patterns  [][]string // the outputs other than ".", split at "/"
	limits    wasmwiz.Limits
	maxVisits int64
	visits    int64 // directory entries read, and path components of links resolved
	out       []wasmwiz.OutputFile
	sent      int64 // content bytes in out
	digests   map[fileID]digest
	hashed    int64 // bytes hashed
}

// walk goes through dir (opened as d, depth directories down), which the
// outputs in states have matched up to their next part; all: an output
// matched dir or a directory above it, so every file under it matches.
// Directories are opened from their parent, so that a deep tree costs one
// open a directory, not one a path component.
func (c *collector) walk(d *os.Root, dir string, depth int, all bool, states []match) {
	for _, e := range c.read(d) {
		if int64(len(c.out)) >= c.limits.MaxFiles {
			return
		}
		name := e.Name()
		p := path.Join(dir, name)
		matched := all
		var next []match
		for _, s := range states {
			if matched {
				break
			}
			parts := c.patterns[s.pattern]
			if ok, _ := path.Match(parts[s.next], name); !ok {
				continue
			}
			if s.next+1 == len(parts) {
				matched = true
			} else {
				next = append(next, match{s.pattern, s.next + 1})
			}
		}
		switch typ := e.Type(); {
		case typ.IsDir():
			if (matched || len(next) > 0) && depth < maxDepth {
				if sub, err := d.OpenRoot(name); err == nil {
					c.walk(sub, p, depth+1, matched, next)
					_ = sub.Close()
				}
			}
		case typ.IsRegular():
			if matched {
				if f, err := d.Open(name); err == nil {
					c.add(p, f)
				}
			}
		case typ&fs.ModeSymlink != 0:
			if !matched {
				continue
			}
			// Followed to a regular file only, through the tree's root
			// (never out of it), at the cost of the path resolved.
			target, err := d.Readlink(name)
			c.visits += int64(depth + 2 + strings.Count(target, "/"))
			if err == nil && c.visits <= c.maxVisits {
				if f, err := c.top.Open(p); err == nil {
					c.add(p, f)
				}
			}
		}
	}
}

// read returns d's entries within what is left of maxVisits, in path
// order (a directory's name sorts as if it ended in "/", as its files do).
func (c *collector) read(d *os.Root) []fs.DirEntry {
	f, err := d.Open(".")
	if err != nil {
		return nil
	}
	defer f.Close()
	var entries []fs.DirEntry
	for c.visits < c.maxVisits {
		batch, err := f.ReadDir(int(min(c.maxVisits-c.visits, 1024)))
		c.visits += int64(len(batch))
		entries = append(entries, batch...)
		if err != nil || len(batch) == 0 {
			break
		}
	}
	type keyed struct {
		key string
		e   fs.DirEntry
	}
	sorted := make([]keyed, len(entries))
	for i, e := range entries {
		sorted[i] = keyed{e.Name(), e}
		if e.IsDir() {
			sorted[i].key += "/"
		}
	}
	slices.SortFunc(sorted, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	for i := range sorted {
		entries[i] = sorted[i].e
	}
	return entries
}

// add closes f after adding it to the outputs as p, when it is a regular
// file (gone or unreadable: not an output).
func (c *collector) add(p string, f *os.File) {
	defer f.Close()
	of, err := c.output(p, f, c.limits.MaxFilesOutBytes-c.sent)
	if err != nil {
		return
	}
	if !of.Omitted {
		c.sent += of.Size
	}
	c.out = append(c.out, of)
}

// fileID is a file's identity on its device: one file reached by several
// paths is hashed once.
type fileID struct{ dev, ino uint64 }

// digest is what hashing a whole file found.
type digest struct {
	size   int64
	sha256 string
}

// output hashes a file and keeps its content when it fits in room. A file
// too large for room that was hashed before (by another path) is not read
// again.
func (c *collector) output(p string, f *os.File, room int64) (wasmwiz.OutputFile, error) {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return wasmwiz.OutputFile{}, fs.ErrInvalid
	}
	of := wasmwiz.OutputFile{Path: p}
	id, known := identity(st)
	if d, ok := c.digests[id]; known && ok && st.Size() > room {
		of.Size, of.SHA256, of.Omitted = d.size, d.sha256, true
		return of, nil
	}
	h := &countingHash{Hash: sha256.New(), n: &c.hashed}
	defer func() {
		if known && of.SHA256 != "" {
			c.digests[id] = digest{of.Size, of.SHA256}
		}
	}()
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

// countingHash counts the bytes it hashes into n.
type countingHash struct {
	hash.Hash
	n *int64
}

func (h *countingHash) Write(b []byte) (int, error) {
	*h.n += int64(len(b))
	return h.Hash.Write(b)
}

// identity returns a file's device and inode, where the system says them.
func identity(st fs.FileInfo) (fileID, bool) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(s.Dev), uint64(s.Ino)}, true
	}
	return fileID{}, false
}

// Remove removes the directory and everything in it.
func (t *Tree) Remove() error {
	return os.RemoveAll(t.Dir)
}
