package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/metrics"
)

// runCLIForMetrics runs the command line and returns exit code, stdout and stderr.
func runCLIForMetrics(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeMoleculeTableForMetrics(t *testing.T, path string, mols []molecule.Molecule) {
	t.Helper()
	w, err := table.NewMoleculeWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mols {
		if err := w.Write(&mols[i]); err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsAndStatsCLI runs "metrics stability", "metrics js" and "stats" on tables of the
// real QM9 test split (written once) and on a small particle table.
func TestMetricsAndStatsCLI(t *testing.T) {
	npzPath := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	mols, err := qm9.ReadNPZ(npzPath, "test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	all := filepath.Join(dir, "qm9_test.parquet")
	writeMoleculeTableForMetrics(t, all, mols)
	var pos19 []molecule.Molecule
	for _, m := range mols {
		if m.NAtoms() == 19 {
			pos19 = append(pos19, m)
		}
	}
	pos19Path := filepath.Join(dir, "qm9_test_19.arrow")
	writeMoleculeTableForMetrics(t, pos19Path, pos19)

	parts := filepath.Join(dir, "dw4.parquet")
	cw, err := table.NewConfigWriter(parts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		split := "train"
		if i == 4 {
			split = "test"
		}
		c := particles.Config{ID: int64(i), Split: split, System: "dw4",
			Positions: []float64{1, 0, -1, 0, 0, float64(i), 0, -float64(i)}, Energy: float64(i)}
		if err := cw.Write(&c); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Commit(); err != nil {
		t.Fatal(err)
	}

	refJSON := filepath.Join(dir, "ref.json")
	refText := filepath.Join(dir, "ref.txt")
	refShort := filepath.Join(dir, "short.txt")
	var txt strings.Builder
	for _, c := range metrics.Analyzed19Distances {
		fmt.Fprintf(&txt, "%d\n", c)
	}
	b, _ := json.Marshal(map[string]any{"distances": metrics.Analyzed19Distances})
	for p, data := range map[string]string{refJSON: string(b), refText: txt.String(), refShort: "1 2 3"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	garbage := filepath.Join(dir, "garbage.parquet")
	if err := os.WriteFile(garbage, []byte("not a table"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("stability", func(t *testing.T) {
		code, out, stderr := runCLIForMetrics(t, "metrics", "stability", "--in", all, "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got struct {
			NMolecules int64                             `json:"n_molecules"`
			NAtoms     int64                             `json:"n_atoms"`
			AtomStable float64                           `json:"atom_stable"`
			MolStable  float64                           `json:"mol_stable"`
			Elements   map[string]metrics.ElementSummary `json:"elements"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got.NMolecules != 13083 || got.NAtoms != 235883 {
			t.Errorf("counted %d molecules, %d atoms", got.NMolecules, got.NAtoms)
		}
		if math.Round(got.MolStable*1e4) != 9522 || math.Round(got.AtomStable*1e4) != 9934 {
			t.Errorf("mol_stable %v, atom_stable %v; want 0.9522, 0.9934", got.MolStable, got.AtomStable)
		}
		if c := got.Elements["C"]; c.Atoms != 83118 || c.Valence[4] != c.Stable {
			t.Errorf("carbon %+v", c)
		}
		code, out, _ = runCLIForMetrics(t, "metrics", "stability", "--in", all)
		if code != 0 || !strings.Contains(out, "mol_stable:   0.9522") || !strings.Contains(out, "4*:") {
			t.Errorf("text output (exit %d):\n%s", code, out)
		}
	})

	t.Run("js", func(t *testing.T) {
		type jsOut struct {
			JS         float64 `json:"js"`
			SymKL      float64 `json:"sym_kl"`
			NMolecules int     `json:"n_molecules"`
			NPairs     int64   `json:"n_pairs"`
		}
		tests := []struct {
			name   string
			args   []string
			wantJS float64 // rounded to 2 significant figures of 1e-6 units; -1 = exactly 0
		}{
			{"default reference on whole split", []string{"--in", all}, 36},
			{"arrow input", []string{"--in", pos19Path, "--n-atoms", "19", "--reference", "analyzed19"}, 36},
			{"JSON reference", []string{"--in", pos19Path, "--reference", refJSON}, 36},
			{"text reference", []string{"--in", pos19Path, "--reference", refText}, 36},
			{"table reference is itself", []string{"--in", all, "--reference", pos19Path}, -1},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				code, out, stderr := runCLIForMetrics(t, append([]string{"metrics", "js", "--json"}, tc.args...)...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				var got jsOut
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				if got.NMolecules != 1813 || got.NPairs != 1813*19*18 {
					t.Errorf("n_molecules %d, n_pairs %d", got.NMolecules, got.NPairs)
				}
				if tc.wantJS < 0 {
					if got.JS != 0 || got.SymKL != 0 {
						t.Errorf("js %v, sym_kl %v; want 0", got.JS, got.SymKL)
					}
				} else if math.Round(got.JS*1e6) != tc.wantJS || !(got.SymKL > got.JS) {
					t.Errorf("js %v (want %ge-6), sym_kl %v", got.JS, tc.wantJS, got.SymKL)
				}
			})
		}
	})

	t.Run("stats molecules", func(t *testing.T) {
		code, out, stderr := runCLIForMetrics(t, "stats", "--in", all, "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got moleculeStats
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		wantElems := map[string]int64{"H": 120847, "C": 83118, "N": 13297, "O": 18289, "F": 332}
		if got.Kind != "molecules" || got.NMolecules != 13083 || got.NAtoms != 235883 ||
			fmt.Sprint(got.Elements) != fmt.Sprint(wantElems) || got.Splits["test"] != 13083 ||
			got.NAtomsHist[19] != 1813 || got.NAtomsHist[29] != 3 || got.MinAtoms != 7 || got.MaxAtoms != 29 {
			t.Errorf("stats %+v", got)
		}
		code, out, _ = runCLIForMetrics(t, "stats", "--in", all)
		if code != 0 || !strings.Contains(out, "molecules:   13083") || !strings.Contains(out, " 19     1813 #") {
			t.Errorf("text output (exit %d):\n%s", code, out)
		}
	})

	t.Run("stats particles", func(t *testing.T) {
		code, out, stderr := runCLIForMetrics(t, "stats", "--in", parts, "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got particleStats
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got.Kind != "particles" || got.NConfigs != 5 || got.Systems["dw4"] != 5 ||
			got.Splits["train"] != 4 || got.Splits["test"] != 1 || got.Dims[8] != 5 ||
			got.Energy == nil || got.Energy.Min != 0 || got.Energy.Max != 4 || got.Energy.Mean != 2 {
			t.Errorf("stats %+v (energy %+v)", got, got.Energy)
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name     string
			args     []string
			wantCode int
			wantErr  string
		}{
			{"stability without --in", []string{"metrics", "stability"}, 2, "--in is required"},
			{"stability missing file", []string{"metrics", "stability", "--in", filepath.Join(dir, "nope.parquet")}, 1, "nope.parquet"},
			{"stability no molecule of size", []string{"metrics", "stability", "--in", pos19Path, "--n-atoms", "5"}, 1, "no molecules"},
			{"stability on particle table", []string{"metrics", "stability", "--in", parts}, 1, "dw4.parquet"},
			{"js analyzed19 needs 19 atoms", []string{"metrics", "js", "--in", all, "--n-atoms", "0"}, 2, "analyzed19"},
			{"js short reference", []string{"metrics", "js", "--in", all, "--reference", refShort}, 1, "3 bins, want 100"},
			{"js missing reference", []string{"metrics", "js", "--in", all, "--reference", filepath.Join(dir, "nope.json")}, 1, "nope.json"},
			{"js stray argument", []string{"metrics", "js", "--in", all, "extra"}, 2, "unexpected arguments"},
			{"stats garbage", []string{"stats", "--in", garbage}, 1, "neither a molecule table"},
			{"stats without --in", []string{"stats"}, 2, "--in is required"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				code, _, stderr := runCLIForMetrics(t, tc.args...)
				if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
					t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.wantCode, stderr, tc.wantErr)
				}
			})
		}
	})
}
