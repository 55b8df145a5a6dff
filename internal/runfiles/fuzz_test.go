package runfiles

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

// FuzzMake extracts archives as a run does (ReadArchive, RunFiles.Check,
// Make, Collect, Remove). Whatever the archive and output patterns: Make
// writes whatever Check passed, and writes only inside the run's
// directory; Collect returns no more than its limits and nothing from
// outside the tree (a secret beside it, which no archive can know); Remove
// leaves nothing behind. The seeds are FuzzReadArchive's hostile archives
// (../../testdata/fuzz/FuzzReadArchive) and the ones in testdata/fuzz.
func FuzzMake(f *testing.F) {
	seeds, _ := filepath.Glob("../../testdata/fuzz/FuzzReadArchive/*")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		if data, ok := corpusBytes(b); ok {
			f.Add(data, ".")
			f.Add(data, "*\nlink\nd/")
		}
	}
	if len(seeds) == 0 {
		f.Fatal("no seeds in ../../testdata/fuzz/FuzzReadArchive")
	}
	l := wasmwiz.Limits{MaxFilesInBytes: 4096, MaxFiles: 16, MaxFilesOutBytes: 64}
	f.Fuzz(func(t *testing.T, archive []byte, outputs string) {
		entries, err := wasmwiz.ReadArchive(archive, l)
		if err != nil {
			return
		}
		files := &wasmwiz.RunFiles{Entries: entries, Outputs: strings.Split(outputs, "\n")}
		if err := files.Check(l); err != nil {
			return
		}
		parent := t.TempDir()
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		secretFile := filepath.Join(parent, "secret")
		if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
			t.Fatal(err)
		}
		tree, err := Make(parent, files)
		if err != nil {
			t.Fatalf("Make refused what Check passed: %v", err)
		}
		err = filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != parent && p != secretFile && p != tree.Dir && !strings.HasPrefix(p, tree.Dir+string(filepath.Separator)) {
				t.Errorf("Make wrote %s, outside the run's directory %s", p, tree.Dir)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		out, err := tree.Collect(l)
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		if int64(len(out)) > l.MaxFiles {
			t.Fatalf("Collect returned %d files, over the limit", len(out))
		}
		var n int64
		for _, o := range out {
			n += int64(len(o.Data))
			if bytes.Contains(o.Data, secret) {
				t.Fatalf("Collect returned %s with the secret from outside the tree", o.Path)
			}
		}
		if n > l.MaxFilesOutBytes {
			t.Fatalf("Collect returned %d bytes, over the limit", n)
		}
		if err := tree.Remove(); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(parent); len(left) != 1 {
			t.Fatalf("after Remove %d entries are left beside the secret", len(left)-1)
		}
	})
}

// corpusBytes reads the []byte of a one-value corpus file (go test fuzz v1).
func corpusBytes(file []byte) ([]byte, bool) {
	lines := strings.SplitN(string(file), "\n", 3)
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		return nil, false
	}
	v := strings.TrimSpace(lines[1])
	if !strings.HasPrefix(v, "[]byte(") || !strings.HasSuffix(v, ")") {
		return nil, false
	}
	s, err := strconv.Unquote(v[len("[]byte(") : len(v)-1])
	return []byte(s), err == nil
}
