package deploytest

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var readmeConfigRow = regexp.MustCompile("(?m)^\\| `(WASMWIZ_[A-Z0-9_]+)` \\| ([^|]*) \\|")

// The README's configuration table lists exactly the variables of
// configVars(), with their defaults.
func TestReadmeConfigTable(t *testing.T) {
	t.Parallel()
	vars := configVarSet(t)
	rows := map[string]string{}
	for _, m := range readmeConfigRow.FindAllStringSubmatch(readFile(t, "README.md"), -1) {
		if _, dup := rows[m[1]]; dup {
			t.Errorf("README lists %s twice", m[1])
		}
		rows[m[1]] = strings.TrimSpace(m[2])
	}
	for name, v := range vars {
		cell, ok := rows[name]
		if !ok {
			t.Errorf("README's configuration table lacks %s", name)
			continue
		}
		if !v.DefaultLit {
			continue // computed at run time; the README says how
		}
		want := "`" + v.Default + "`"
		if v.Default == "" {
			want = "(empty)"
		}
		if cell != want {
			t.Errorf("README gives %s the default %s; config.go has %s", name, cell, want)
		}
	}
	for name := range rows {
		if _, ok := vars[name]; !ok {
			t.Errorf("README lists %s, which cmd/wasmwiz/config.go does not read", name)
		}
	}
}

var (
	readmeGoRun   = regexp.MustCompile(`go run \./cmd/wasmwiz ([a-z-]+)`)
	readmeFile    = regexp.MustCompile(`internal/testmodule/testdata/[A-Za-z0-9_]+\.wasm`)
	readmeURLPath = regexp.MustCompile(`https?://127\.0\.0\.1:8080(/[^\s'"?\\]*)`)
	readmeMake    = regexp.MustCompile("`make ([a-z0-9-]+)`")
	readmeDocLink = regexp.MustCompile(`\]\((docs/[^)]+)\)`)
)

// What the README tells a reader to type exists: the two commands, the
// subcommands, the test modules, the routes of the curl examples, the make
// targets and the linked documents.
func TestReadmeNamesExist(t *testing.T) {
	t.Parallel()
	readme := readFile(t, "README.md")
	for _, cmd := range []string{"go run ./cmd/wasmwiz serve", "go test ./..."} {
		if !strings.Contains(readme, "\n"+cmd+" ") && !strings.Contains(readme, "\n"+cmd+"\n") {
			t.Errorf("README does not start a line with %q", cmd)
		}
	}
	cmds := commandNames(t)
	for _, m := range readmeGoRun.FindAllStringSubmatch(readme, -1) {
		if m[1] != "help" && !cmds[m[1]] {
			t.Errorf("README runs `wasmwiz %s`, which is not a subcommand", m[1])
		}
	}
	files := readmeFile.FindAllString(readme, -1)
	if len(files) == 0 {
		t.Error("README has no example with a test module")
	}
	for _, f := range files {
		if _, err := os.Stat(repoPath(t, f)); err != nil {
			t.Errorf("README uses %s: %v", f, err)
		}
	}
	rs := routes(t)
	paths := readmeURLPath.FindAllStringSubmatch(readme, -1)
	if len(paths) < 3 {
		t.Errorf("README has %d curl URLs; want the API examples", len(paths))
	}
	for _, m := range paths {
		if m[1] == "/" {
			continue
		}
		if !matchesRoute(rs, m[1]) {
			t.Errorf("README uses %s, which matches no route of internal/http", m[1])
		}
	}
	targets := makeTargets(t)
	for _, m := range readmeMake.FindAllStringSubmatch(readme, -1) {
		if !targets[m[1]] {
			t.Errorf("README mentions `make %s`, which the Makefile does not have", m[1])
		}
	}
	for _, m := range readmeDocLink.FindAllStringSubmatch(readme, -1) {
		if _, err := os.Stat(repoPath(t, m[1])); err != nil {
			t.Errorf("README links %s: %v", m[1], err)
		}
	}
}

// matchesRoute reports whether a concrete path matches a route pattern of
// any method ({name} matches one segment).
func matchesRoute(rs map[string]bool, path string) bool {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for r := range rs {
		_, pattern, _ := strings.Cut(r, " ")
		ps := strings.Split(strings.Trim(pattern, "/"), "/")
		if len(ps) != len(segs) {
			continue
		}
		ok := true
		for i := range ps {
			if !(strings.HasPrefix(ps[i], "{") && strings.HasSuffix(ps[i], "}")) && ps[i] != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

var makeTarget = regexp.MustCompile(`(?m)^([a-z0-9-]+):.*## (.+)$`)

// makeTargets returns the Makefile's documented targets (those `make help`
// lists).
func makeTargets(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range makeTarget.FindAllStringSubmatch(readFile(t, "Makefile"), -1) {
		out[m[1]] = true
	}
	return out
}

// The Makefile has the targets issue 5 asks for; `make build` is static
// and stamps variables that exist; `make testdata` calls a Makefile that
// exists; the tool versions it reads are defined in .ci/run.
func TestMakefile(t *testing.T) {
	t.Parallel()
	mk := readFile(t, "Makefile")
	targets := makeTargets(t)
	var have []string
	for k := range targets {
		have = append(have, k)
	}
	sort.Strings(have)
	for _, want := range []string{"help", "build", "test", "test-integration", "lint", "testdata", "bench"} {
		if !targets[want] {
			t.Errorf("Makefile has no documented target %q (has %v)", want, have)
		}
	}
	if !strings.Contains(mk, "CGO_ENABLED=0") {
		t.Error("make build is not static: no CGO_ENABLED=0")
	}
	vars := ldflagsVars(mk)
	if len(vars) < 2 {
		t.Errorf("Makefile sets %v with -X; want main.version and main.commit", vars)
	}
	for _, v := range vars {
		checkMainVar(t, "Makefile", v)
	}
	if !strings.Contains(mk, "-C internal/testmodule/testdata") {
		t.Error("make testdata does not call make -C internal/testmodule/testdata")
	}
	if _, err := os.Stat(repoPath(t, "internal/testmodule/testdata/Makefile")); err != nil {
		t.Errorf("make testdata: %v", err)
	}
	ci := readFile(t, ".ci/run")
	for _, m := range regexp.MustCompile(`sed -n 's/\^([A-Z_]+)=//p' \.ci/run`).FindAllStringSubmatch(mk, -1) {
		if !regexp.MustCompile(`(?m)^` + m[1] + `=v\S+$`).MatchString(ci) {
			t.Errorf("Makefile reads %s from .ci/run, which does not pin it", m[1])
		}
	}
}
