package deploytest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// buildLine is one build command of the README's "Your own module".
type buildLine struct {
	comment string // the line above it
	command string
}

// readmeBuildLines returns the commands of the first sh block of the
// README's "Your own module" section, each with its comment.
func readmeBuildLines(t *testing.T) []buildLine {
	t.Helper()
	readme := readFile(t, "README.md")
	_, section, ok := strings.Cut(readme, "\n## Your own module\n")
	if !ok {
		t.Fatal(`README has no "## Your own module" section`)
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal(`"Your own module" has no sh block`)
	}
	block, _, _ = strings.Cut(block, "```")
	var lines []buildLine
	comment := ""
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if strings.HasPrefix(l, "#") {
			comment = l
			continue
		}
		lines = append(lines, buildLine{comment: comment, command: l})
	}
	return lines
}

// moduleSources are hello programs, by what their build line names; each
// prints "hello from LANG".
var moduleSources = map[string]map[string]string{
	"go": {
		"go.mod":  "module hello\n\ngo 1.21\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from Go\") }\n",
	},
	"c": {"hello.c": "#include <stdio.h>\n\nint main(void) { puts(\"hello from C\"); return 0; }\n"},
	"rust": {
		"Cargo.toml":  "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
		"src/main.rs": "fn main() { println!(\"hello from Rust\"); }\n",
	},
	"assemblyscript": {"add.ts": "export function add(a: i32, b: i32): i32 { return a + b }\n"},
}

// TestReadmeModuleLines builds a hello program with every build line of the
// README whose toolchain is on this machine and runs it with wasmwiz run.
// Go and clang with wasi-libc are what CI has (there a missing one fails);
// the others are built where they are installed.
func TestReadmeModuleLines(t *testing.T) {
	if testing.Short() {
		t.Skip("builds modules with every installed toolchain; skipped with -short")
	}
	t.Parallel()
	lines := readmeBuildLines(t)
	if len(lines) < 6 {
		t.Fatalf("README's module section has %d build lines, want Go, C (two), Rust, TinyGo and AssemblyScript", len(lines))
	}
	for _, l := range lines {
		t.Run(l.command, func(t *testing.T) {
			t.Parallel()
			var lang, module, tool string
			required := false
			switch {
			case strings.HasPrefix(l.command, "GOOS=wasip1 GOARCH=wasm go build"):
				lang, module, tool, required = "go", "hello.wasm", "go", true
			case strings.HasPrefix(l.command, "tinygo "):
				lang, module, tool = "go", "hello.wasm", "tinygo"
			case strings.HasPrefix(l.command, "clang "):
				lang, module, tool, required = "c", "hello.wasm", "clang", true
			case strings.HasPrefix(l.command, `"$WASI_SDK_PATH/bin/clang"`):
				lang, module = "c", "hello.wasm"
				if os.Getenv("WASI_SDK_PATH") == "" {
					t.Skip("WASI_SDK_PATH is not set (no wasi-sdk on this machine)")
				}
			case strings.HasPrefix(l.command, "cargo "):
				lang, module, tool = "rust", "target/wasm32-wasip1/release/hello.wasm", "cargo"
				if out, err := exec.Command("rustc", "--print", "sysroot").Output(); err != nil ||
					!exists(filepath.Join(strings.TrimSpace(string(out)), "lib", "rustlib", "wasm32-wasip1")) {
					t.Skip("Rust's wasm32-wasip1 target is not installed on this machine")
				}
			case strings.HasPrefix(l.command, "npx asc "):
				lang, module = "assemblyscript", "add.wasm"
				if _, err := exec.LookPath("asc"); err != nil {
					t.Skip("AssemblyScript (asc) is not installed on this machine")
				}
			default:
				t.Fatalf("a build line this test does not know: %q (comment %q)", l.command, l.comment)
			}
			if tool != "" {
				if _, err := exec.LookPath(tool); err != nil {
					if required {
						testenv.Skip(t, tool+" is not installed", "install it (CI has it)")
					}
					t.Skipf("%s is not installed on this machine", tool)
				}
			}
			dir := t.TempDir()
			for name, text := range moduleSources[lang] {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", "-c", l.command)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "npm_config_yes=false") // npx must not install anything
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", l.command, err, out)
			}
			path := filepath.Join(dir, module)
			args, want := []string{"run", path}, "hello from "+map[string]string{"go": "Go", "c": "C", "rust": "Rust"}[lang]+"\n"
			if lang == "assemblyscript" {
				args, want = []string{"run", "--call", "add", "--params", "2,3", path}, "5\n"
			}
			code, stdout, stderr := runWasmwiz(t, nil, args...)
			if code != 0 || stdout != want {
				t.Fatalf("wasmwiz %s: exit %d, stdout %q, stderr %q; want %q", strings.Join(args, " "), code, stdout, stderr, want)
			}
		})
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
