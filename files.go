package wasmwiz

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Mount is a directory of the host that a guest sees as one of its own
// directories: `wasmwiz run --dir HOSTDIR:GUESTDIR[:ro]`, and the private
// directory the server makes for a run's files. Everything under it is
// reached through a traversal-safe root, so no "..", absolute path or
// symbolic link in the guest leads outside HostDir. A caller never names a
// host directory: the program sets Mounts, never a request.
type Mount struct {
	HostDir  string // the directory on the host
	GuestDir string // where the guest sees it: an absolute path, "/" or "/data"; "." is its working directory
	ReadOnly bool   // the guest may read but change nothing under it
}

// CleanGuestDir returns dir as an absolute, clean guest path ("" is "/"),
// or EINVAL for one that is not absolute or has a NUL byte.
func CleanGuestDir(dir string) (string, error) {
	if dir == "" {
		return "/", nil
	}
	if dir[0] != '/' || strings.IndexByte(dir, 0) >= 0 || len(dir) > maxFilePath {
		return "", Errorf(EINVALID, "guest directory %q must be an absolute path such as / or /data", dir)
	}
	return path.Clean(dir), nil
}

// RunFiles is a run's private directory: the files a caller puts in, where
// the guest sees them, and which files come back. The server makes the
// directory fresh for the run (never a directory of the host), the guest's
// working directory is its mount, and it is removed when the run ends,
// whatever the outcome.
type RunFiles struct {
	Entries []FileEntry // created before the guest starts, in order
	Mount   string      // guest path of the directory; "" means "/"
	// Outputs are patterns relative to Mount (path.Match syntax per
	// directory level); the regular files they match, and every regular
	// file under a directory they match or that ends in "/", come back in
	// Result.Files. They match the directory's own entries: a link is
	// followed to a regular file inside the directory, never into a
	// directory.
	Outputs []string
}

// FileKind is what a FileEntry makes.
type FileKind string

// File kinds.
const (
	FileRegular FileKind = "file"
	FileDir     FileKind = "dir"
	FileSymlink FileKind = "symlink"
)

// FileEntry is one file, directory or symbolic link a caller sends into a
// run. Its directories need no entries of their own.
type FileEntry struct {
	Path   string   // relative, slash-separated, clean: "data/in.csv"
	Kind   FileKind // FileRegular when empty
	Data   []byte   // a regular file's content
	Target string   // a link's target: relative to its directory, inside the tree
}

// OutputFile is a regular file of a run's directory that matched one of
// RunFiles.Outputs.
type OutputFile struct {
	Path   string // relative to the mount
	Size   int64
	SHA256 string // hex digest of the content
	Data   []byte // the content; nil when Omitted
	// Omitted: the file did not fit in what the files before it (in path
	// order) left of the tier's max_files_out_bytes; it is listed, its
	// content is not sent. A smaller file after it may still fit.
	Omitted bool
}

// maxFilePath bounds a path a caller sends (Linux's PATH_MAX), and
// maxFileName one component of it (NAME_MAX).
const (
	maxFilePath = 4096
	maxFileName = 255
)

// CleanFilePath checks a path a caller sends for a file of a run and returns
// it clean: relative, slash-separated, with no "..", no NUL, no backslash
// (a zip written on Windows means a separator by it), no component longer
// than 255 bytes and no more than 4096 in all. It returns EINVALID naming
// the path.
func CleanFilePath(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", Errorf(EINVALID, "file path %q %s", truncateName(p), why)
	}
	switch {
	case p == "":
		return bad("is empty")
	case len(p) > maxFilePath:
		return bad("is longer than 4096 bytes")
	case strings.IndexByte(p, 0) >= 0:
		return bad("has a NUL byte")
	case strings.IndexByte(p, '\\') >= 0:
		return bad(`has a backslash (use "/" between directories)`)
	case p[0] == '/':
		return bad("is absolute: paths are relative to the mount")
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return bad(`has a ".." component: paths stay inside the mount`)
		}
		if len(c) > maxFileName {
			return bad("has a component longer than 255 bytes")
		}
	}
	clean := path.Clean(p)
	if clean == "." {
		return bad("names the mount itself")
	}
	if strings.Count(clean, "/") >= MaxFileDepth {
		return bad(fmt.Sprintf("is more than %d levels deep", MaxFileDepth))
	}
	return clean, nil
}

// truncateName keeps an error message short for a hostile path.
func truncateName(p string) string {
	if len(p) > 200 {
		return p[:200] + "…"
	}
	return p
}

// checkLinkTarget refuses a link that leaves the tree as written: absolute,
// or with more ".." than the link's directory is deep. (What a link's
// target resolves through at run time is the engine's to confine.)
func checkLinkTarget(linkPath, target string) error {
	switch {
	case target == "":
		return Errorf(EINVALID, "link %q has an empty target", truncateName(linkPath))
	case len(target) > maxFilePath || strings.IndexByte(target, 0) >= 0:
		return Errorf(EINVALID, "link %q has a target longer than 4096 bytes or with a NUL byte", truncateName(linkPath))
	case target[0] == '/':
		return Errorf(EINVALID, "link %q points to the absolute path %q: links stay inside the mount", truncateName(linkPath), truncateName(target))
	}
	resolved := path.Join(path.Dir(linkPath), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return Errorf(EINVALID, "link %q points to %q, outside the mount", truncateName(linkPath), truncateName(target))
	}
	return nil
}

// Check validates f against l before any work, and cleans its paths and
// mount in place: every path by CleanFilePath, links by their target, no
// path twice, no file where another entry needs a directory, the entries
// and the directories they imply within l.MaxFiles, their bytes within
// l.MaxFilesInBytes, the mount by CleanGuestDir, outputs as relative
// patterns (at most 100). It returns EINVALID or ETOOLARGE naming what is
// wrong.
func (f *RunFiles) Check(l Limits) error {
	mount, err := CleanGuestDir(f.Mount)
	if err != nil {
		return err
	}
	f.Mount = mount
	kinds := map[string]FileKind{} // every path the tree will hold, directories implied
	var bytes int64
	for i := range f.Entries {
		e := &f.Entries[i]
		if e.Kind == "" {
			e.Kind = FileRegular
		}
		p, err := CleanFilePath(e.Path)
		if err != nil {
			return err
		}
		e.Path = p
		switch e.Kind {
		case FileRegular:
			bytes += int64(len(e.Data))
			if bytes > l.MaxFilesInBytes {
				return Errorf(ETOOLARGE, "the files are over the %s limit of files sent into a run (at %q)", FormatSize(l.MaxFilesInBytes), truncateName(p))
			}
		case FileDir:
		case FileSymlink:
			if err := checkLinkTarget(p, e.Target); err != nil {
				return err
			}
		default:
			return Errorf(EINVALID, "file %q is a %s: only files, directories and links go into a run", truncateName(p), e.Kind)
		}
		// The directories above it.
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			switch k, seen := kinds[d]; {
			case !seen:
				kinds[d] = FileDir
			case k != FileDir:
				return Errorf(EINVALID, "%q is a %s and also the directory of %q", truncateName(d), k, truncateName(p))
			}
		}
		if k, seen := kinds[p]; seen && !(k == FileDir && e.Kind == FileDir) {
			if k == FileDir {
				return Errorf(EINVALID, "%q is a %s and also the directory of another entry", truncateName(p), e.Kind)
			}
			return Errorf(EINVALID, "%q is given twice", truncateName(p))
		}
		kinds[p] = e.Kind
		if int64(len(kinds)) > l.MaxFiles {
			return Errorf(ETOOLARGE, "more than %d files, directories and links are sent into the run (the limit of the tier)", l.MaxFiles)
		}
	}
	if len(f.Outputs) > maxOutputPatterns {
		return Errorf(EINVALID, "at most %d output patterns", maxOutputPatterns)
	}
	for i, o := range f.Outputs {
		clean, err := CleanOutputPattern(o)
		if err != nil {
			return err
		}
		f.Outputs[i] = clean
	}
	return nil
}

// maxOutputPatterns bounds RunFiles.Outputs.
const maxOutputPatterns = 100

// CleanOutputPattern checks an output pattern as CleanFilePath checks a
// path, and that path.Match can read it; a trailing "/" (every file under
// the directory) is kept. "." or "" alone means every file.
func CleanOutputPattern(p string) (string, error) {
	if p == "" || p == "." || p == "./" || p == "/" {
		return ".", nil
	}
	dir := strings.HasSuffix(p, "/")
	trimmed := strings.TrimRight(p, "/")
	clean, err := CleanFilePath(trimmed)
	if err != nil {
		why := strings.TrimPrefix(ErrorMessage(err), fmt.Sprintf("file path %q ", truncateName(trimmed)))
		return "", Errorf(EINVALID, "output pattern %q %s", truncateName(p), why)
	}
	if _, err := path.Match(clean, ""); err != nil {
		return "", Errorf(EINVALID, "output pattern %q is malformed (path.Match syntax: *, ?, [a-z])", truncateName(p))
	}
	if dir {
		clean += "/"
	}
	return clean, nil
}

// checkedFiles returns a copy of f checked and cleaned under l
// (RunFiles.Check), nil for nil: the request stays as the caller made it.
func checkedFiles(f *RunFiles, l Limits) (*RunFiles, error) {
	if f == nil {
		return nil, nil
	}
	files := *f
	files.Entries = slices.Clone(f.Entries)
	files.Outputs = slices.Clone(f.Outputs)
	return &files, files.Check(l)
}

// storedFiles is RunFiles as a store keeps it with a queued run
// (run_inputs.files).
type storedFiles struct {
	Mount   string       `json:"mount"`
	Entries []storedFile `json:"entries"`
	Outputs []string     `json:"outputs,omitempty"`
}

type storedFile struct {
	Path   string   `json:"path"`
	Kind   FileKind `json:"kind"`
	Data   []byte   `json:"data,omitempty"`
	Target string   `json:"target,omitempty"`
}

// EncodeRunFiles returns the files of a queued run as its store keeps them:
// nil for none, else JSON of the mount, the entries and the outputs.
func EncodeRunFiles(f *RunFiles) ([]byte, error) {
	if f == nil {
		return nil, nil
	}
	out := storedFiles{Mount: f.Mount, Entries: make([]storedFile, len(f.Entries)), Outputs: f.Outputs}
	for i, e := range f.Entries {
		out.Entries[i] = storedFile(e)
	}
	return json.Marshal(out)
}

// DecodeRunFiles reverses EncodeRunFiles: nil for an empty b.
func DecodeRunFiles(b []byte) (*RunFiles, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var in storedFiles
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, WrapError(EINTERNAL, err, "a queued run's stored files are not JSON")
	}
	f := &RunFiles{Mount: in.Mount, Entries: make([]FileEntry, len(in.Entries)), Outputs: in.Outputs}
	for i, e := range in.Entries {
		f.Entries[i] = FileEntry(e)
	}
	return f, nil
}

// recordFile is an OutputFile in a run's record, as a result carries it
// (package api's File): the content base64, absent when omitted.
type recordFile struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Content []byte `json:"content_base64,omitempty"`
	Omitted bool   `json:"omitted,omitempty"`
}

func recordFiles(files []OutputFile) []recordFile {
	out := make([]recordFile, len(files))
	for i, f := range files {
		out[i] = recordFile{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Content: f.Data, Omitted: f.Omitted}
	}
	return out
}

// outputFiles reverses recordFiles; a file kept empty reads back as empty
// content, not as none.
func outputFiles(files []recordFile) []OutputFile {
	out := make([]OutputFile, len(files))
	for i, f := range files {
		out[i] = OutputFile{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Data: f.Content, Omitted: f.Omitted}
		if !f.Omitted && out[i].Data == nil {
			out[i].Data = []byte{}
		}
	}
	return out
}

// EncodeOutputFiles returns the files kept with a background run's record
// as its store keeps them (runs.files): nil for none, else JSON as the
// record carries them.
func EncodeOutputFiles(files []OutputFile) ([]byte, error) {
	if files == nil {
		return nil, nil
	}
	return json.Marshal(recordFiles(files))
}

// DecodeOutputFiles reverses EncodeOutputFiles: nil for an empty b.
func DecodeOutputFiles(b []byte) ([]OutputFile, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var files []recordFile
	if err := json.Unmarshal(b, &files); err != nil {
		return nil, WrapError(EINTERNAL, err, "a run's stored files are not JSON")
	}
	return outputFiles(files), nil
}

// keptFiles returns the files of a result as a background run's record
// keeps them: in path order, each file's content while the contents
// together stay within maxStored (the tier's max_stored_output_bytes; < 0:
// all), the rest listed without it (Omitted), as a result omits what passes
// max_files_out_bytes.
func keptFiles(files []OutputFile, maxStored int64) []OutputFile {
	if files == nil {
		return nil
	}
	out := make([]OutputFile, len(files))
	var kept int64
	for i, f := range files {
		out[i] = f
		if f.Omitted {
			continue
		}
		if maxStored >= 0 && kept+int64(len(f.Data)) > maxStored {
			out[i].Data, out[i].Omitted = nil, true
			continue
		}
		kept += int64(len(f.Data))
	}
	return out
}
