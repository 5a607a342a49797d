// Package doccheck fails when an exported identifier of the module has no
// doc comment, as `go doc` would show it.
package doccheck

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlockgo/dlock/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestEveryExportedIdentifierIsDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	dirs := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bench" || name == "torture") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range dirs {
		fset := token.NewFileSet()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var files []*ast.File
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		if len(files) == 0 || files[0].Name.Name == "main" {
			continue
		}
		d, err := doc.NewFromFiles(fset, files, "github.com/dlockgo/dlock/"+filepath.ToSlash(dir))
		if err != nil {
			t.Fatal(err)
		}
		checkPackage(t, dir, d)
	}
}

func checkPackage(t *testing.T, dir string, d *doc.Package) {
	missing := func(kind, name string) { t.Errorf("%s: exported %s %s has no doc comment", dir, kind, name) }
	if strings.TrimSpace(d.Doc) == "" {
		t.Errorf("%s: package %s has no package doc comment", dir, d.Name)
	}
	values := func(vs []*doc.Value) {
		for _, v := range vs {
			if v.Doc != "" {
				continue
			}
			for _, spec := range v.Decl.Specs {
				vspec := spec.(*ast.ValueSpec)
				if vspec.Doc != nil || vspec.Comment != nil {
					continue
				}
				for _, n := range vspec.Names {
					if n.IsExported() {
						missing("value", n.Name)
					}
				}
			}
		}
	}
	values(d.Consts)
	values(d.Vars)
	for _, f := range d.Funcs {
		if f.Doc == "" {
			missing("func", f.Name)
		}
	}
	for _, ty := range d.Types {
		if ty.Doc == "" {
			missing("type", ty.Name)
		}
		values(ty.Consts)
		values(ty.Vars)
		for _, f := range ty.Funcs {
			if f.Doc == "" {
				missing("func", f.Name)
			}
		}
		for _, m := range ty.Methods {
			if m.Doc == "" {
				missing("method", ty.Name+"."+m.Name)
			}
		}
		// Exported fields of exported structs.
		if st, ok := ty.Decl.Specs[0].(*ast.TypeSpec).Type.(*ast.StructType); ok {
			for _, f := range st.Fields.List {
				for _, n := range f.Names {
					if n.IsExported() && f.Doc == nil && f.Comment == nil {
						missing("field", ty.Name+"."+n.Name)
					}
				}
			}
		}
		if it, ok := ty.Decl.Specs[0].(*ast.TypeSpec).Type.(*ast.InterfaceType); ok {
			for _, m := range it.Methods.List {
				for _, n := range m.Names {
					if n.IsExported() && m.Doc == nil && m.Comment == nil {
						missing("interface method", ty.Name+"."+n.Name)
					}
				}
			}
		}
	}
}
