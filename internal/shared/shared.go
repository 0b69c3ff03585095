// Package shared locates the project's shared data folder (../shared beside the checkout):
// real QM9 molecules, DW4/LJ13 samples and the published checkpoint used by tests,
// benchmarks and the demo.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the shared folder: $ENFLOW_SHARED if set, else the first "shared" folder
// with data/README.md found beside the working directory or one of its parents.
// It returns "" if none is found.
func Dir() string {
	if d := os.Getenv("ENFLOW_SHARED"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "shared")
		if _, err := os.Stat(filepath.Join(cand, "data", "README.md")); err == nil {
			return cand
		}
		if parent := filepath.Dir(dir); parent == dir {
			return ""
		}
	}
}

// Path joins elem onto the shared folder.
func Path(elem ...string) string {
	return filepath.Join(append([]string{Dir()}, elem...)...)
}

// Require returns the path of a shared file for a test. It fails the test when CI=true and
// the file is missing (CI always has the shared folder), and skips it otherwise.
func Require(t testing.TB, elem ...string) string {
	t.Helper()
	p := Path(elem...)
	if Dir() == "" {
		p = ""
	}
	if p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("shared data file %v not found (set ENFLOW_SHARED)", elem)
	}
	t.Skipf("shared data file %v not found (set ENFLOW_SHARED)", elem)
	return ""
}
