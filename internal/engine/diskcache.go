package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// The on-disk compile cache is wazero's (Options.CacheDir), shared by the
// worker processes of a server, and wazero never deletes from it: a 1.6 MB
// module left 7.2 MB of compiled code, and every module a tenant ever sent
// stayed. diskCache bounds it by bytes (Options.CacheMaxBytes), evicting the
// least recently used files, safely across the processes that share it:
//
//   - Where. wazero names a module's file by a hash of the bytes it compiled,
//     whether guests are interruptible, its own magic and the CPU's
//     features, under a directory named by its version and the platform.
//     The engine computes the same name (TestDiskCachePathIsWazeros checks
//     it against the file wazero writes, so an upgrade that changes the
//     scheme fails a test), which also tells a compile whether the code
//     came from the disk.
//   - Recency is the file's modification time: the engine sets it when it
//     compiles or loads a module and, at most once a minute, when a run
//     finds the module in memory.
//   - Eviction runs after a compile that added a file and when the engine
//     starts: one process at a time (an flock on a lock file in the
//     directory; the others skip their turn), it sums the directory and
//     deletes the oldest files until the total is under 90 % of the bound,
//     with files of older wazero versions first in line as they are older.
//     A file another process is reading stays readable (an unlinked file
//     lives while open); one being written is a temporary file that wazero
//     renames when whole, and temporary files are deleted only when older
//     than tmpMaxAge (a writer that died). A deleted module is compiled
//     again the next time, which is all a cache miss costs.
//   - Owners share the bound fairly, as in memory (compileCache): the
//     process that compiled a file writes its owner's hash next to it
//     (claim, "<file>.owner"), and eviction takes the oldest file of the
//     owner holding the most bytes, after the files of other wazero
//     versions. A tenant compiling a stream of distinct modules evicts its
//     own files, not the code the others compiled before it. A file
//     without an owner (written before owners were kept) counts to no one
//     in particular. A file counts as the disk blocks it takes, its claim's
//     block with it: a stream of tiny modules cannot hold many times the
//     bound in blocks and inodes.

// Disk cache settings.
const (
	diskLowWater = 0.9 // evict down to this share of the bound
	tmpMaxAge    = 10 * time.Minute
	touchEvery   = time.Minute
	evictLock    = "wasmwiz-evict.lock"
	ownerSuffix  = ".owner"
	diskBlock    = 4 * 1024 // what the smallest file takes on disk
)

// diskBlocks returns size rounded up to whole disk blocks: what a file of
// size bytes takes.
func diskBlocks(size int64) int64 {
	return (size + diskBlock - 1) / diskBlock * diskBlock
}

// diskCache bounds and keeps recency in an on-disk compile cache.
type diskCache struct {
	dir string // Options.CacheDir
	sub string // wazero's directory in it for this version and platform
	max int64  // bytes; 0: no bound
	// interrupt says whether the runtime compiles in-guest interruption
	// checks (wazero's ensureTermination), which wazero's file name hashes.
	interrupt bool
	log       *slog.Logger

	evicting atomic.Bool
	evicted  atomic.Uint64 // files deleted
}

func newDiskCache(dir string, max int64, interrupt bool, log *slog.Logger) *diskCache {
	return &diskCache{
		dir: dir, max: max, interrupt: interrupt, log: log,
		sub: filepath.Join(dir, "wazero-"+wazeroVersionName()+"-"+runtime.GOARCH+"-"+runtime.GOOS),
	}
}

// wazeroVersionName is the version wazero names its cache directory after
// (internal/version.GetWazeroVersion in wazero v1.12.0).
func wazeroVersionName() string {
	v := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if strings.Contains(d.Path, "github.com/tetratelabs/wazero") {
				v = d.Version
			}
		}
		if v == "" || v == "(devel)" {
			v = bi.Main.Version
		}
	}
	if v == "" || v == "(devel)" {
		return "dev"
	}
	return v
}

// path returns the file wazero keeps the compiled code of code in: the
// module's id (sha256 of its bytes and the interruption flag), hashed with
// wazero's compiler magic and the CPU features it compiled for.
func (d *diskCache) path(code []byte) string {
	h := sha256.New()
	h.Write(code)
	if d.interrupt {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	id := h.Sum(nil)
	h = sha256.New()
	h.Write(id)
	h.Write([]byte("WAZEVO"))
	var cpu [8]byte
	binary.LittleEndian.PutUint64(cpu[:], cpuFeatures())
	h.Write(cpu[:])
	return filepath.Join(d.sub, hex.EncodeToString(h.Sum(nil)))
}

// has reports whether path exists.
func (d *diskCache) has(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// touch marks path used now.
func (d *diskCache) touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// claim records owner as the owner of path, a file the caller's compile
// added. A failure only leaves the file without an owner. An eviction
// (of this process or another) may have deleted the file since the
// compile wrote it, and with it the claim it found, none yet: a claim
// written after that is removed here, or it would stay until tmpMaxAge
// as a file the bound does not count (evict keeps a young claim whose
// file it did not see: the file may be one its listing missed).
func (d *diskCache) claim(path, owner string) {
	h := sha256.Sum256([]byte(owner))
	_ = os.WriteFile(path+ownerSuffix, []byte(hex.EncodeToString(h[:16])), 0o600)
	if !d.has(path) {
		_ = os.Remove(path + ownerSuffix)
	}
}

// readSmall reads at most n bytes of the file at path.
func readSmall(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// evictSoon runs an eviction in the background unless one of this process
// is already running.
func (d *diskCache) evictSoon() {
	if d.max <= 0 || !d.evicting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer d.evicting.Store(false)
		d.evict()
	}()
}

type cacheFile struct {
	path string
	size int64
	mod  time.Time
	tmp  bool
	// claimed: a claim stands next to it (its owner is read only when
	// evicting).
	claimed bool
}

// evict deletes files until the directory holds at most diskLowWater of the
// bound, when it holds more than the bound: first the files of other wazero
// versions, then the oldest file of the owner holding the most bytes, one at
// a time. It does nothing while another process evicts.
func (d *diskCache) evict() {
	unlock, ok := lockDir(filepath.Join(d.dir, evictLock))
	if !ok {
		return
	}
	defer unlock()
	var files []cacheFile
	claims := map[string]time.Time{} // file path -> its claim's time
	var total int64
	now := time.Now()
	_ = filepath.WalkDir(d.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || filepath.Base(p) == evictLock {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		if main, ok := strings.CutSuffix(p, ownerSuffix); ok {
			claims[main] = info.ModTime() // read only when evicting
			return nil
		}
		f := cacheFile{path: p, size: info.Size(), mod: info.ModTime(), tmp: strings.HasSuffix(p, ".tmp")}
		if f.tmp && now.Sub(f.mod) > tmpMaxAge {
			// A writer that died: its file will never be renamed.
			if os.Remove(p) == nil {
				d.evicted.Add(1)
			}
			return nil
		}
		files = append(files, f)
		return nil
	})
	// A file counts as the blocks it takes, its claim's block with it, so
	// that many tiny compiled files cannot hold many times the bound.
	// Claims whose file is gone: claimed by a process that then died, or
	// left by an eviction that stopped between the two deletes.
	for i := range files {
		f := &files[i]
		f.size = diskBlocks(f.size)
		if _, f.claimed = claims[f.path]; f.claimed {
			f.size += diskBlock
			delete(claims, f.path)
		}
		total += f.size
	}
	for main, mod := range claims {
		if now.Sub(mod) > tmpMaxAge {
			_ = os.Remove(main + ownerSuffix)
		}
	}
	if total <= d.max {
		return
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	// Queues of files, oldest first: other versions', then one per owner.
	var stale []cacheFile
	queues := map[string][]cacheFile{}
	held := map[string]int64{}
	for _, f := range files {
		switch {
		case f.tmp: // being written
		case !strings.HasPrefix(f.path, d.sub+string(filepath.Separator)):
			stale = append(stale, f)
		default:
			owner := "" // unknown: no claim, or one that cannot be read
			if f.claimed {
				if b, err := readSmall(f.path+ownerSuffix, 64); err == nil {
					owner = string(b)
				}
			}
			queues[owner] = append(queues[owner], f)
			held[owner] += f.size
		}
	}
	target := int64(float64(d.max) * diskLowWater)
	n := 0
	for total > target {
		var f cacheFile
		if len(stale) > 0 {
			f, stale = stale[0], stale[1:]
		} else {
			top, found := "", false
			for o, q := range queues {
				if len(q) > 0 && (!found || held[o] > held[top] || held[o] == held[top] && q[0].mod.Before(queues[top][0].mod)) {
					top, found = o, true
				}
			}
			if !found {
				break
			}
			f, queues[top] = queues[top][0], queues[top][1:]
			held[top] -= f.size
		}
		if err := os.Remove(f.path); err == nil || os.IsNotExist(err) {
			_ = os.Remove(f.path + ownerSuffix)
			total -= f.size
			n++
		}
	}
	d.evicted.Add(uint64(n))
	d.log.Info("compile cache evicted", "files", n, "bytes_left", total, "bound", d.max)
}
