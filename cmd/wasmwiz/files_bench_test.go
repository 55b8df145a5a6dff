package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// filesBenchBytes is what the files benchmark reads and writes: 10 MiB.
const filesBenchBytes = 10 * wasmwiz.MiB

// BenchmarkFiles10MiB: one run of fsprobe that reads a 10 MiB file and
// writes a 10 MiB file (copy in.bin out.bin), against the same module
// copying 10 MiB from stdin to stdout (copy - -), through the CLI (the
// built program, `wasmwiz run --dir` against `wasmwiz run` with a pipe)
// and through the API (a file part and outputs against stdin and stdout;
// one caller, a worker process, SQLite). The bytes are random, so the
// API's JSON carries them as base64 both ways; files-zip asks for the
// answer as a zip instead (Accept: application/zip, the file as it is).
// docs/PERFORMANCE.md has the figures.
func BenchmarkFiles10MiB(b *testing.B) {
	data := make([]byte, filesBenchBytes)
	_, _ = rand.Read(data)
	probe := testmodule.Path(b, "fsprobe.wasm")

	b.Run("cli", func(b *testing.B) {
		bin := testenv.WasmwizBinary(b)
		cache := b.TempDir()
		dir := b.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "in.bin"), data, 0o644); err != nil {
			b.Fatal(err)
		}
		run := func(b *testing.B, stdin []byte, args ...string) []byte {
			cmd := exec.Command(bin, append([]string{"run", "--cache-dir", cache}, args...)...)
			cmd.Stdin = bytes.NewReader(stdin)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				b.Fatalf("wasmwiz run: %v\n%s", err, errb.Bytes())
			}
			return out.Bytes()
		}
		run(b, nil, probe, "cwd") // compiled once, into the cache
		b.Run("files", func(b *testing.B) {
			b.SetBytes(filesBenchBytes)
			for b.Loop() {
				if out := run(b, nil, "--dir", dir+":/", probe, "copy", "in.bin", "out.bin"); string(out) != "copy in.bin out.bin: ok 10485760\n" {
					b.Fatalf("stdout %q", out)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "out.bin")); !bytes.Equal(got, data) {
				b.Fatal("out.bin is not in.bin")
			}
		})
		b.Run("stdio", func(b *testing.B) {
			b.SetBytes(filesBenchBytes)
			for b.Loop() {
				if out := run(b, data, probe, "copy", "-", "-"); !bytes.Equal(out, data) {
					b.Fatalf("stdout: %d bytes", len(out))
				}
			}
		})
	})

	b.Run("api", func(b *testing.B) {
		s := startServe(b, serveEnv(b, map[string]string{
			"WASMWIZ_DATABASE_URL": filepath.Join(b.TempDir(), "wasmwiz.db"),
			"WASMWIZ_FILES_DIR":    b.TempDir(),
			"WASMWIZ_WORKERS":      "2",
			"WASMWIZ_LOG_LEVEL":    "error",
		}), ServeOptions{})
		c, _, _ := s.newTierUser("files10", func(t *wasmwiz.Tier) {
			t.RunsPerMinute, t.RunsPerDay = 1<<40, 1<<40
			t.MaxStdinBytes, t.MaxOutputBytes = 16*wasmwiz.MiB, 16*wasmwiz.MiB
			t.MaxFilesInBytes, t.MaxFileWriteBytes, t.MaxFilesOutBytes = 16*wasmwiz.MiB, 64*wasmwiz.MiB, 16*wasmwiz.MiB
		})
		wasm := testmodule.Read(b, "fsprobe.wasm")
		mod, err := c.CreateModule(context.Background(), client.ModuleUpload{Wasm: wasm, Name: "fsprobe.wasm"})
		if err != nil {
			b.Fatal(err)
		}
		run := func(b *testing.B, req *client.ExecuteRequest) *api.Result {
			req.Body = client.BodyMultipart
			ex, err := c.ExecuteModule(context.Background(), mod.ID, req)
			if err != nil {
				b.Fatal(err)
			}
			if ex.Result.Status != api.StatusOK {
				b.Fatalf("%s %s %s", ex.Result.Status, ex.Result.Trap, ex.Result.Stderr)
			}
			return ex.Result
		}
		b.Run("files", func(b *testing.B) {
			b.SetBytes(filesBenchBytes)
			for b.Loop() {
				res := run(b, &client.ExecuteRequest{Files: []client.File{{Path: "in.bin", Data: data}}, Outputs: []string{"out.bin"},
					Args: []string{"copy", "in.bin", "out.bin"}})
				if len(res.Files) != 1 || !bytes.Equal(res.Files[0].Content, data) {
					b.Fatalf("files %d", len(res.Files))
				}
			}
		})
		b.Run("files-zip", func(b *testing.B) {
			b.SetBytes(filesBenchBytes)
			for b.Loop() {
				z, err := c.ExecuteArchive(context.Background(), &client.ExecuteRequest{Wasm: wasm, Body: client.BodyMultipart,
					Files: []client.File{{Path: "in.bin", Data: data}}, Outputs: []string{"out.bin"}, Args: []string{"copy", "in.bin", "out.bin"}}, "application/zip")
				if err != nil {
					b.Fatal(err)
				}
				if int64(len(z)) < filesBenchBytes {
					b.Fatalf("zip of %d bytes", len(z))
				}
			}
		})
		b.Run("stdio", func(b *testing.B) {
			b.SetBytes(filesBenchBytes)
			for b.Loop() {
				if res := run(b, &client.ExecuteRequest{Stdin: data, Args: []string{"copy", "-", "-"}}); !bytes.Equal(res.Stdout, data) {
					b.Fatalf("stdout: %d bytes", len(res.Stdout))
				}
			}
		})
	})
}
