package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// TestExportMoleculesCLI: enflow export --samples TABLE --format xyz|extxyz|sdf, one file or
// --per-molecule, the format inferred from --out, and the usage errors.
func TestExportMoleculesCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "samples.parquet")
	ch4 := bipyramid(3, 6, 1.09)
	ch4.Z, ch4.Positions = ch4.Z[:5], ch4.Positions[:5] // C with 4 H: 4 bonds
	water := synthetic(7, []int{8, 1, 1}, [][3]float64{{0, 0, 0}, {0.96, 0, 0}, {-0.24, 0.93, 0}})
	water.Props[3] = 1.85
	writeMoleculeTableForMetrics(t, in, []molecule.Molecule{ch4, water})

	out := filepath.Join(dir, "m.sdf")
	code, stdout, errs := runCLIForMetrics(t, "export", "--samples", in, "--format", "sdf", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("export sdf: exit %d: %s", code, errs)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st["molecules"] != 2.0 || st["bonds"] != 6.0 || st["files"] != 1.0 || st["format"] != "sdf" {
		t.Errorf("summary %v", st)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), "M  END\n") != 2 || strings.Count(string(data), "$$$$\n") != 2 ||
		!strings.Contains(string(data), "  3  2  0  0  0  0  0  0  0  0999 V2000\n") {
		t.Errorf("sdf:\n%s", data)
	}
	// Format from the extension; extxyz carries the properties.
	out = filepath.Join(dir, "m.extxyz")
	if code, _, errs := runCLIForMetrics(t, "export", "--samples", in, "--out", out); code != 0 {
		t.Fatalf("export .extxyz: exit %d: %s", code, errs)
	}
	data, _ = os.ReadFile(out)
	if !strings.Contains(string(data), "Properties=species:S:1:pos:R:3 id=7 n_atoms=3 mu=1.85") {
		t.Errorf("extxyz:\n%s", data)
	}
	per := filepath.Join(dir, "per")
	if code, _, errs := runCLIForMetrics(t, "export", "--samples", in, "--format", "xyz", "--per-molecule", "--out", per); code != 0 {
		t.Fatalf("per-molecule: exit %d: %s", code, errs)
	}
	for _, name := range []string{"mol_000003.xyz", "mol_000007.xyz"} {
		if b, err := os.ReadFile(filepath.Join(per, name)); err != nil || !strings.HasPrefix(string(b), "5\n") && !strings.HasPrefix(string(b), "3\n") {
			t.Errorf("%s: %v %q", name, err, b)
		}
	}
	for _, args := range [][]string{
		{"export", "--samples", in, "--format", "pdb", "--out", filepath.Join(dir, "x.pdb")},
		{"export", "--samples", in, "--per-molecule", "--out", per},
		{"export", "--results", in, "--format", "sdf", "--out", filepath.Join(dir, "y.sdf")},
	} {
		if code, _, errs := runCLIForMetrics(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errs)
		}
	}
	if code, _, errs := runCLIForMetrics(t, "export", "--samples", filepath.Join(dir, "missing.parquet"), "--format", "sdf", "--out", filepath.Join(dir, "z.sdf")); code != 1 || !strings.Contains(errs, "missing.parquet") {
		t.Errorf("missing input: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "z.sdf")); !os.IsNotExist(err) {
		t.Errorf("failed export left z.sdf: %v", err)
	}
}
