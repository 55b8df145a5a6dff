package engine

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// dirBytes sums the disk blocks of the files under dir (as eviction counts
// them), but for the eviction lock.
func dirBytes(t *testing.T, dir string) (total int64, files int) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && filepath.Base(p) != evictLock {
			if info, err := e.Info(); err == nil {
				total += diskBlocks(info.Size())
				files++
			}
		}
		return nil
	})
	return total, files
}

// settle waits for e's background eviction, then runs one in the
// foreground, so that what the test reads next is the bound applied.
func settle(t *testing.T, e *Engine) {
	t.Helper()
	testenv.WaitFor(t, "the background eviction", func() bool { return !e.disk.evicting.Load() })
	e.disk.evict()
}

// TestDiskCachePathIsWazeros: the engine names a module's file in the
// on-disk cache as wazero does, for modules compiled as sent and with their
// tables rewritten, with and without in-guest interruption; a wazero
// upgrade that changes its scheme fails here, not silently.
func TestDiskCachePathIsWazeros(t *testing.T) {
	t.Parallel()
	for _, noInterrupt := range []bool{false, true} {
		dir := t.TempDir()
		e := newEngine(t, Options{CacheDir: dir, NoGuestInterrupt: noInterrupt})
		for _, wasm := range [][]byte{testmodule.Read(t, "hello.wasm"), hostiletest.TableGrowLoop(1, -1, hostiletest.Return)} {
			if _, err := e.Inspect(context.Background(), wasm, testmodule.Limits()); err != nil {
				t.Fatal(err)
			}
			h, err := parseHeader(wasm)
			if err != nil {
				t.Fatal(err)
			}
			if p := e.disk.path(rewriteTables(wasm, h)); !e.disk.has(p) {
				_, n := dirBytes(t, dir)
				t.Errorf("no file at %s (interrupt %v) among the %d in the cache: wazero names its files otherwise", p, !noInterrupt, n)
			}
		}
	}
}

// TestDiskCacheBound: the files of the on-disk cache stay within
// CacheMaxBytes, the least recently used go first (a module another
// process loaded stays), and modules whose files went are compiled again.
func TestDiskCacheBound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	modules := make([][]byte, 12)
	for i := range modules {
		modules[i] = hostiletest.ManyFunctions(400 + i) // distinct, tens of KB compiled each
	}
	// Size one file, then bound the cache at about five of them.
	probe := newEngine(t, Options{CacheDir: t.TempDir()})
	if _, err := probe.Inspect(context.Background(), modules[0], wasmwiz.Limits{}); err != nil {
		t.Fatal(err)
	}
	one, _ := dirBytes(t, probe.opts.CacheDir)
	max := one * 11 / 2 // five files and a half
	a := newEngine(t, Options{CacheDir: dir, CacheMaxBytes: max})
	b := newEngine(t, Options{CacheDir: dir, CacheMaxBytes: max}) // another worker process
	compile := func(e *Engine, i int) {
		t.Helper()
		if _, err := e.Inspect(context.Background(), modules[i], wasmwiz.Limits{}); err != nil {
			t.Fatalf("module %d: %v", i, err)
		}
	}
	path := func(i int) string { return a.disk.path(modules[i]) }
	for i := range 5 {
		compile(a, i)
	}
	settle(t, a)
	// Age them, module 0 the oldest, as minutes of use would.
	for i := range 5 {
		old := time.Now().Add(-time.Duration(10-i) * time.Minute)
		if err := os.Chtimes(path(i), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// Another process runs module 0: it loads it from the disk, which makes
	// it the most recently used.
	if res, err := b.Run(context.Background(), &wasmwiz.RunRequest{Wasm: modules[0], Limits: testmodule.Limits()}); err != nil || !res.CompileCached {
		t.Fatalf("module 0 in the other process: %v, cached %v", err, res != nil && res.CompileCached)
	}
	compile(a, 5) // one file too many: the two least recently used go
	settle(t, a)
	for i, want := range []bool{true, false, false, true, true, true} {
		if got := a.disk.has(path(i)); got != want {
			t.Errorf("module %d on disk: %v, want %v", i, got, want)
		}
	}
	for i := 6; i < len(modules); i++ {
		compile(a, i)
	}
	settle(t, a)
	total, files := dirBytes(t, dir)
	if total > max {
		t.Errorf("the cache holds %d bytes in %d files, over its bound of %d", total, files, max)
	}
	if !a.disk.has(path(len(modules) - 1)) {
		t.Errorf("the newest module was evicted")
	}
	if st := a.CacheStats(); st.DiskEvictions == 0 {
		t.Errorf("cache stats %+v: no eviction counted", st)
	}
	// An evicted module compiles again, in a fresh process as well.
	c := newEngine(t, Options{CacheDir: dir, CacheMaxBytes: max})
	res, err := c.Run(context.Background(), &wasmwiz.RunRequest{Wasm: modules[1], Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK || res.CompileCached {
		t.Fatalf("an evicted module: %v %+v; want it compiled again", err, res)
	}
}

// TestDiskCacheEvictionAcrossProcesses: evictions of several processes at
// once delete each file once and leave the bound held; a temporary file of
// a writer that died goes, one being written stays; and a process whose
// module's file was deleted under it keeps running it.
func TestDiskCacheEvictionAcrossProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	engines := make([]*Engine, 3)
	for i := range engines {
		engines[i] = newEngine(t, Options{CacheDir: dir, CacheMaxBytes: 1})
	}
	for i := range 9 {
		wasm := hostiletest.ManyFunctions(300 + i)
		if _, err := engines[i%3].Inspect(context.Background(), wasm, wasmwiz.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range engines {
		testenv.WaitFor(t, "background evictions", func() bool { return !e.disk.evicting.Load() })
	}
	sub := engines[0].disk.sub
	stale := filepath.Join(sub, "0123.456.tmp")
	fresh := filepath.Join(sub, "89ab.789.tmp")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * tmpMaxAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	// Refill, then let every process evict at once.
	for i := range 6 {
		if _, err := engines[0].Inspect(context.Background(), hostiletest.ManyFunctions(500+i), wasmwiz.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "the background eviction", func() bool { return !engines[0].disk.evicting.Load() })
	var wg sync.WaitGroup
	for _, e := range engines {
		wg.Go(e.disk.evict)
	}
	wg.Wait()
	total, files := dirBytes(t, dir)
	if files != 1 || total != diskBlocks(int64(len("partial"))) {
		t.Errorf("%d files, %d bytes left; want only the temporary file being written", files, total)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("the dead writer's temporary file is still there")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("the temporary file being written was deleted: %v", err)
	}
	// Every compiled module is gone from the disk, and still runs where it
	// is held.
	res, err := engines[0].Run(context.Background(), &wasmwiz.RunRequest{Wasm: hostiletest.ManyFunctions(505), Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK || !res.CompileCached {
		t.Fatalf("a held module after its file went: %v %+v", err, res)
	}
	var sum uint64
	for _, e := range engines {
		sum += e.CacheStats().DiskEvictions
	}
	if sum != 15+1 { // 9 + 6 compiled files, and the dead writer's
		t.Errorf("%d deletions counted over the processes, want each file deleted once (16)", sum)
	}
	if !strings.HasPrefix(filepath.Base(sub), "wazero-") {
		t.Errorf("wazero's directory %s", sub)
	}
}

// TestDiskCacheSharesBoundAmongOwners: eviction deletes the files of other
// wazero versions first, then the oldest files of the owner holding the
// most bytes: a tenant that filled the cache with its own recent compiles
// loses its oldest files, and another tenant's older files stay. An
// owner's claim goes with its file, and a claim whose file is long gone is
// deleted.
func TestDiskCacheSharesBoundAmongOwners(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A file of 100 bytes and its claim take two blocks; the 12 claimed
	// and the older wazero's take 100 KiB, over a bound of 84 KiB: down to
	// 90 % of it, 75.6 KiB.
	d := newDiskCache(dir, 84*1024, true, slog.New(slog.DiscardHandler))
	other := filepath.Join(dir, "wazero-v0.0.1-"+runtime.GOARCH+"-"+runtime.GOOS)
	for _, sub := range []string{d.sub, other} {
		if err := os.MkdirAll(sub, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	file := func(path, owner string, age time.Duration) {
		t.Helper()
		if err := os.WriteFile(path, make([]byte, 100), 0o600); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			d.claim(path, owner)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// The victim's two files are the oldest; the attacker's ten came since;
	// one file of an older wazero is newer than all.
	victim := []string{filepath.Join(d.sub, "v0"), filepath.Join(d.sub, "v1")}
	file(victim[0], "user:2", 60*time.Minute)
	file(victim[1], "user:2", 50*time.Minute)
	var attacker []string
	for i := range 10 {
		p := filepath.Join(d.sub, fmt.Sprintf("a%d", i))
		file(p, "user:1", time.Duration(20-i)*time.Minute)
		attacker = append(attacker, p)
	}
	file(filepath.Join(other, "old"), "", time.Minute)
	// A claim left by a process that died between an eviction's two
	// deletes.
	orphan := filepath.Join(d.sub, "gone")
	if err := os.WriteFile(orphan+ownerSuffix, []byte("user:3"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * tmpMaxAge)
	if err := os.Chtimes(orphan+ownerSuffix, old, old); err != nil {
		t.Fatal(err)
	}

	d.evict()
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if exists(filepath.Join(other, "old")) {
		t.Error("the older wazero's file stayed")
	}
	for _, p := range victim {
		if !exists(p) || !exists(p+ownerSuffix) {
			t.Errorf("the victim's %s (or its claim) was evicted", filepath.Base(p))
		}
	}
	for i, p := range attacker {
		if want := i >= 3; exists(p) != want || exists(p+ownerSuffix) != want {
			t.Errorf("the attacker's file %d: present %v, claim %v; want %v", i, exists(p), exists(p+ownerSuffix), want)
		}
	}
	if exists(orphan + ownerSuffix) {
		t.Error("the claim of a file long gone stayed")
	}
	if got := d.evicted.Load(); got != 4 {
		t.Errorf("%d files counted evicted, want 4", got)
	}
}

// TestDiskCacheClaimOfAnEvictedFile: an eviction may delete a file that a
// compile has just written before its claim is written: the claim is then
// not left behind (evict keeps a young claim whose file it did not see, as
// one its listing may have missed, so it would stay uncounted until
// tmpMaxAge; under load the eviction test found two such).
func TestDiskCacheClaimOfAnEvictedFile(t *testing.T) {
	t.Parallel()
	d := newDiskCache(t.TempDir(), 1, true, slog.New(slog.DiscardHandler))
	if err := os.MkdirAll(d.sub, 0o700); err != nil {
		t.Fatal(err)
	}
	kept, evicted := filepath.Join(d.sub, "kept"), filepath.Join(d.sub, "evicted")
	for _, p := range []string{kept, evicted} {
		if err := os.WriteFile(p, []byte("code"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(evicted); err != nil { // an eviction, before the claim
		t.Fatal(err)
	}
	d.claim(kept, "user:1")
	d.claim(evicted, "user:1")
	if _, err := os.Stat(kept + ownerSuffix); err != nil {
		t.Errorf("the claim of a file in place: %v", err)
	}
	if _, err := os.Stat(evicted + ownerSuffix); err == nil {
		t.Error("the claim of a file evicted before it stayed")
	}
}

// TestDiskCacheCountsBlocks: a stream of tiny compiled files, each with its
// owner's claim, is bounded by the blocks and inodes it takes, not by its
// bytes: 300 files of 10 bytes (6 KB of bytes, 2.4 MB of blocks) under a
// bound of 64 KiB leave at most 8 files and their claims.
func TestDiskCacheCountsBlocks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const bound = 64 * 1024
	d := newDiskCache(dir, bound, true, slog.New(slog.DiscardHandler))
	if err := os.MkdirAll(d.sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		p := filepath.Join(d.sub, fmt.Sprintf("m%03d", i))
		if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
			t.Fatal(err)
		}
		d.claim(p, "user:1")
	}
	d.evict()
	total, files := dirBytes(t, dir)
	if total > bound || files > 16 {
		t.Fatalf("%d files taking %d bytes of blocks left, over the bound of %d", files, total, bound)
	}
}
