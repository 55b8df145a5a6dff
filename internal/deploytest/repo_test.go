package deploytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// root is the repository's top directory (where go.mod is).
var root = sync.OnceValues(testenv.ModuleRoot)

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	r, err := root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(r, filepath.FromSlash(rel))
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// configVar is one entry of cmd/wasmwiz/config.go's configVars(): its name
// and, when written as a string literal, its default.
type configVar struct {
	Name       string
	Default    string
	DefaultLit bool // Default is a literal (not computed at run time)
}

// configVars parses cmd/wasmwiz/config.go (package main cannot be imported)
// and returns the variables configVars() returns, in order.
func configVars(t *testing.T) []configVar {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, repoPath(t, "cmd/wasmwiz/config.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var vars []configVar
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "configVars" && fd.Recv == nil {
			fn = fd
		}
	}
	if fn == nil {
		t.Fatal("cmd/wasmwiz/config.go has no func configVars")
	}
	// A row is a configVar literal {name, default, …} or a call of one of
	// its constructors, xxxVar(name, default, …); prefixesVar has no
	// default argument (its default is none).
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		var args []ast.Expr
		noDefault := false
		switch n := n.(type) {
		case *ast.CompositeLit:
			args = n.Elts
		case *ast.CallExpr:
			args = n.Args
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "prefixesVar" {
				noDefault = true
			}
		}
		if len(args) < 2 {
			return true
		}
		name, ok := stringLit(args[0])
		if !ok || !strings.HasPrefix(name, "WASMWIZ_") {
			return true
		}
		v := configVar{Name: name, DefaultLit: noDefault}
		if !noDefault {
			v.Default, v.DefaultLit = stringLit(args[1])
		}
		vars = append(vars, v)
		return false
	})
	if len(vars) < 5 {
		t.Fatalf("found only %d WASMWIZ_* variables in configVars(); has its shape changed?", len(vars))
	}
	return vars
}

func configVarSet(t *testing.T) map[string]configVar {
	t.Helper()
	m := map[string]configVar{}
	for _, v := range configVars(t) {
		m[v.Name] = v
	}
	return m
}

func stringLit(e ast.Expr) (string, bool) {
	if kv, ok := e.(*ast.KeyValueExpr); ok {
		e = kv.Value
	}
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

// routes returns the router's "METHOD /pattern" entries, from the real
// internal/http server.
func routes(t *testing.T) map[string]bool {
	t.Helper()
	srv, err := wwhttp.NewServer(wwhttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, r := range srv.Routes() {
		m[r.Method+" "+r.Pattern] = true
	}
	if len(m) == 0 {
		t.Fatal("internal/http registered no routes")
	}
	return m
}

// commandNames returns the subcommands registered in cmd/wasmwiz/main.go's
// commands() map.
func commandNames(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, repoPath(t, "cmd/wasmwiz/main.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != "commands" {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			if kv, ok := n.(*ast.KeyValueExpr); ok {
				if s, ok := stringLit(kv.Key); ok {
					names[s] = true
				}
			}
			return true
		})
	}
	if len(names) == 0 {
		t.Fatal("cmd/wasmwiz/main.go: no commands() map found")
	}
	return names
}

// packageStrings returns every string literal in the non-test Go files of a
// package directory.
func packageStrings(t *testing.T, dir string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	ents, err := os.ReadDir(repoPath(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(repoPath(t, dir), e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if bl, ok := n.(*ast.BasicLit); ok {
				if s, ok := stringLit(bl); ok {
					out[s] = true
				}
			}
			return true
		})
	}
	return out
}

// deployDoc is one parsed YAML document or JSON file.
type deployDoc struct {
	File string // path relative to the repository
	Doc  any
}

// deployFiles lists every YAML and JSON file under deploy/ plus
// docker-compose.yml, relative to the repository.
func deployFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(repoPath(t, "deploy"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch filepath.Ext(p) {
		case ".yml", ".yaml", ".json":
			rel, _ := filepath.Rel(repoPath(t, "."), p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "docker-compose.yml")
	sort.Strings(files)
	return files
}

// deployDocs decodes every document of one YAML file, or one JSON file,
// failing t when it does not decode.
func deployDocs(t *testing.T, rel string) []deployDoc {
	t.Helper()
	docs, err := decodeDeployFile(repoPath(t, rel), rel)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return docs
}

// decodeDeployFile decodes the file at path, rel in the repository.
func decodeDeployFile(path, rel string) ([]deployDoc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(rel, ".json") {
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if dec.More() {
			return nil, errors.New("more than one JSON value")
		}
		return []deployDoc{{rel, v}}, nil
	}
	var docs []deployDoc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if v != nil {
			docs = append(docs, deployDoc{rel, v})
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("no document")
	}
	return docs, nil
}

func allDeployDocs(t *testing.T) []deployDoc {
	t.Helper()
	var all []deployDoc
	for _, f := range deployFiles(t) {
		docs := deployDocs(t, f)
		all = append(all, docs...)
	}
	return all
}

// walk calls fn for every node of a decoded document with the path of keys
// that leads to it.
func walk(v any, path []string, fn func(path []string, v any)) {
	fn(path, v)
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walk(x[k], append(path[:len(path):len(path)], k), fn)
		}
	case []any:
		for i, e := range x {
			walk(e, append(path[:len(path):len(path)], strconv.Itoa(i)), fn)
		}
	}
}
