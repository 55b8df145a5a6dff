package deploytest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Line int
	Cmd  string // upper case: FROM, RUN, …
	Args string
}

// stage is one FROM and the instructions under it.
type stage struct {
	From  string // image, as written
	Name  string // AS name, if any
	Instr []instruction
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	var stages []stage
	var cur []string
	start := 0
	flush := func() {
		if len(cur) == 0 {
			return
		}
		text := strings.TrimSpace(strings.Join(cur, " "))
		cur = nil
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := stage{}
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.Name = f[i+1]
					i++
				case st.From == "":
					st.From = f[i]
				}
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				t.Errorf("Dockerfile:%d: %s before the first FROM", in.Line, in.Cmd)
			}
			return
		}
		stages[len(stages)-1].Instr = append(stages[len(stages)-1].Instr, in)
	}
	for i, line := range strings.Split(readFile(t, "Dockerfile"), "\n") {
		trimmed := strings.TrimSpace(line)
		if len(cur) == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if len(cur) == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur = append(cur, strings.TrimSuffix(trimmed, `\`))
			continue
		}
		cur = append(cur, trimmed)
		flush()
	}
	flush()
	return stages
}

// dockerfileEnv returns the WASMWIZ_* variables the image sets with ENV.
func dockerfileEnv(t *testing.T) []envSetting {
	t.Helper()
	var out []envSetting
	for _, st := range parseDockerfile(t) {
		for _, in := range st.Instr {
			if in.Cmd != "ENV" {
				continue
			}
			for _, f := range strings.Fields(in.Args) {
				if m := envAssign.FindStringSubmatch(f); m != nil {
					out = append(out, envSetting{"Dockerfile", m[1], m[2]})
				}
			}
		}
	}
	return out
}

// execForm decodes an exec-form argument (["a", "b"]) or returns nil.
func execForm(s string) []string {
	var v []string
	if json.Unmarshal([]byte(strings.TrimSpace(s)), &v) != nil {
		return nil
	}
	return v
}

// The rules of issue 5 point 4: multi-stage, a static build, a distroless
// or scratch final stage running as a non-root user, a HEALTHCHECK against
// /healthz (through `wasmwiz healthcheck`), version and commit stamped with
// -ldflags into variables that exist.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a multi-stage build", len(stages))
	}
	final := stages[len(stages)-1]
	find := func(st stage, cmd string) []instruction {
		var out []instruction
		for _, in := range st.Instr {
			if in.Cmd == cmd {
				out = append(out, in)
			}
		}
		return out
	}

	t.Run("static build", func(t *testing.T) {
		var build *instruction
		for _, st := range stages[:len(stages)-1] {
			for _, in := range find(st, "RUN") {
				if strings.Contains(in.Args, "go build") {
					build = &in
				}
			}
		}
		if build == nil {
			t.Fatal("no RUN … go build in a build stage")
		}
		if !strings.Contains(build.Args, "CGO_ENABLED=0") {
			t.Errorf("Dockerfile:%d: go build without CGO_ENABLED=0", build.Line)
		}
		if !strings.Contains(build.Args, "./cmd/wasmwiz") {
			t.Errorf("Dockerfile:%d: does not build ./cmd/wasmwiz", build.Line)
		}
		for _, v := range ldflagsVars(build.Args) {
			checkMainVar(t, "Dockerfile", v)
		}
		if len(ldflagsVars(build.Args)) < 2 {
			t.Errorf("Dockerfile:%d: want -X main.version=… and -X main.commit=…", build.Line)
		}
	})

	t.Run("final stage distroless or scratch", func(t *testing.T) {
		if final.From != "scratch" && !strings.HasPrefix(final.From, "gcr.io/distroless/static") {
			t.Errorf("final stage FROM %s, want gcr.io/distroless/static… or scratch", final.From)
		}
		copied := false
		for _, in := range find(final, "COPY") {
			if strings.Contains(in.Args, "--from=") && strings.Contains(in.Args, "/wasmwiz") {
				copied = true
			}
		}
		if !copied {
			t.Error("final stage does not COPY --from=<build stage> the wasmwiz binary")
		}
	})

	t.Run("non-root user", func(t *testing.T) {
		users := find(final, "USER")
		if len(users) == 0 {
			t.Fatal("final stage has no USER")
		}
		u := strings.Fields(users[len(users)-1].Args)[0]
		uid, _, _ := strings.Cut(u, ":")
		if uid == "root" || uid == "0" {
			t.Errorf("USER %s is root", u)
		}
		if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
			t.Errorf("USER %s: want a numeric uid so that Kubernetes runAsNonRoot can verify it", u)
		}
	})

	t.Run("healthcheck runs wasmwiz healthcheck", func(t *testing.T) {
		hcs := find(final, "HEALTHCHECK")
		if len(hcs) != 1 {
			t.Fatalf("final stage has %d HEALTHCHECK, want 1", len(hcs))
		}
		_, cmd, ok := strings.Cut(hcs[0].Args, "CMD ")
		if !ok {
			t.Fatalf("HEALTHCHECK %q has no CMD", hcs[0].Args)
		}
		argv := execForm(cmd)
		if len(argv) < 2 || argv[0] != "/wasmwiz" {
			t.Fatalf("HEALTHCHECK CMD %s: want [\"/wasmwiz\", \"healthcheck\"] (no shell in the image)", cmd)
		}
		if !commandNames(t)[argv[1]] {
			t.Errorf("HEALTHCHECK runs `wasmwiz %s`, which cmd/wasmwiz/main.go does not register", argv[1])
		}
		if argv[1] == "healthcheck" && !packageStrings(t, "cmd/wasmwiz")["/healthz"] {
			t.Error(`wasmwiz healthcheck no longer asks "/healthz"`)
		}
		if !routes(t)["GET /healthz"] {
			t.Error("internal/http does not route GET /healthz")
		}
	})

	t.Run("entrypoint and command", func(t *testing.T) {
		eps := find(final, "ENTRYPOINT")
		if len(eps) == 0 || !slicesEqual(execForm(eps[len(eps)-1].Args), []string{"/wasmwiz"}) {
			t.Errorf(`want ENTRYPOINT ["/wasmwiz"]`)
		}
		cmds := find(final, "CMD")
		if len(cmds) == 0 {
			t.Fatal("no CMD")
		}
		argv := execForm(cmds[len(cmds)-1].Args)
		if len(argv) == 0 || !commandNames(t)[argv[0]] {
			t.Errorf("CMD %v is not a wasmwiz subcommand", argv)
		}
	})
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

var ldflagX = regexp.MustCompile(`-X\s+main\.([A-Za-z_][A-Za-z0-9_]*)=`)

// ldflagsVars returns the main.<name> variables a build command sets with -X.
func ldflagsVars(s string) []string {
	var out []string
	for _, m := range ldflagX.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// checkMainVar fails unless package main of cmd/wasmwiz declares a
// package-level string variable name (what -X main.name=… sets; the linker
// ignores a name that does not exist, silently).
func checkMainVar(t *testing.T, where, name string) {
	t.Helper()
	fset := token.NewFileSet()
	dir := repoPath(t, "cmd/wasmwiz")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, s := range gd.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					if n.Name == name {
						return
					}
				}
			}
		}
	}
	t.Errorf("%s sets -X main.%s, but cmd/wasmwiz declares no package-level var %s", where, name, name)
}
