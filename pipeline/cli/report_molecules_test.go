package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// TestReportMoleculesCLI: enflow report molecules writes the picture page and its summary;
// --help works; usage and input errors name the flag or the file.
func TestReportMoleculesCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "samples.parquet")
	ch4 := bipyramid(3, 6, 1.09)
	ch4.Z, ch4.Positions = ch4.Z[:5], ch4.Positions[:5]
	water := synthetic(7, []int{8, 1, 1}, [][3]float64{{0, 0, 0}, {0.96, 0, 0}, {-0.24, 0.93, 0}})
	broken := synthetic(8, []int{8, 1, 1}, [][3]float64{{0, 0, 0}, {0.96, 0, 0}, {-3, 0.2, 0}})
	writeMoleculeTableForMetrics(t, in, []molecule.Molecule{ch4, water, broken})

	out := filepath.Join(dir, "page.html")
	code, stdout, errs := runCLIForMetrics(t, "report", "molecules", "--in", in, "--data", in, "--max", "2", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("summary %q: %v", stdout, err)
	}
	if sum["molecules"] != 3.0 || sum["drawn"] != 2.0 || sum["stable_molecules"] != 2.0 || sum["data_molecules"] != 3.0 {
		t.Errorf("summary %v", sum)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), `class="atom"`); n != 8 {
		t.Errorf("%d atoms drawn, want 8 (CH4 and water)", n)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "Usage: enflow report molecules --in"},
		{"no --in", []string{"--out", out}, 2, "--in is required"},
		{"no --out", []string{"--in", in}, 2, "--out is required"},
		{"bad --max", []string{"--in", in, "--out", out, "--max", "0"}, 2, "--max must be at least 1"},
		{"bad --ids", []string{"--in", in, "--out", out, "--ids", "7,x"}, 2, `--ids: "x" is not an integer id`},
		{"--ids", []string{"--in", in, "--out", out, "--ids", "8,7"}, 0, ""},
		{"unknown id", []string{"--in", in, "--out", out, "--ids", "99"}, 1, "no molecule with id [99]"},
		{"missing file", []string{"--in", filepath.Join(dir, "missing.parquet"), "--out", out}, 1, "missing.parquet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLIForMetrics(t, append([]string{"report", "molecules"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, errs)
			}
		})
	}
}
