package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/train"
)

// TestTrainMoleculesCLI: your own molecules end to end — `etl molecules` (H, C, O, F, S, Cl and a
// 41-atom alkane, more than QM9's 29), `train --dataset molecules` (one-hot width, p(M) and
// the largest size follow the data), `eval` and `sample` through the same driver and format.
func TestTrainMoleculesCLI(t *testing.T) {
	dir := t.TempDir()
	var ms []fixtureMol
	for k := range 6 { // six slightly displaced copies of each fixture
		for _, m := range moleculeFixtures {
			c := fixtureMol{name: fmt.Sprintf("%s %d", m.name, k), sym: m.sym}
			for i, p := range m.pos {
				d := 0.01 * float64((k*7+i*3)%5-2)
				c.pos = append(c.pos, [3]float64{p[0] + d, p[1] - d, p[2] + 0.5*d})
			}
			ms = append(ms, c)
		}
	}
	in := writeFixtureInputs(t, dir, ms)["extxyz"]
	data := filepath.Join(dir, "data")
	if code, _, stderr := runMoleculesCLI(t, in[0], in[1], "--out", data, "--split-by-hash", "50,25,25", "--seed", "3"); code != 0 {
		t.Fatalf("etl molecules: exit %d: %s", code, stderr)
	}
	for _, s := range []string{"train", "valid", "test"} {
		if _, err := os.Stat(train.MoleculeSplitPath(data, train.SystemMolecules, s)); err != nil {
			t.Fatalf("split %s: %v", s, err)
		}
	}
	out := filepath.Join(dir, "run")
	code, stdout, stderr := runCLIForMetrics(t, "train", "--dataset", "molecules", "--data", data, "--out", out,
		"--hidden", "8", "--layers", "1", "--solver", "rk4", "--steps", "2", "--epochs", "1", "--batch", "4",
		"--eval-batch", "8", "--stability-samples", "2", "--max-steps-per-epoch", "2", "--json", "--no-progress")
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("train summary %q: %v", stdout, err)
	}
	if sum["test_nll"] == nil || sum["steps"].(float64) != 2 {
		t.Errorf("train summary %v", sum)
	}
	spec, err := train.LoadSpec(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 6, 8, 9, 16, 17}; !slices.Equal(spec.Elements, want) {
		t.Errorf("elements %v, want %v", spec.Elements, want)
	}
	if spec.Sizes == nil || spec.Sizes.MaxAtoms() != 41 || spec.Nodes != 41 {
		t.Errorf("p(M) %+v, nodes %d: want the data's sizes up to 41 atoms", spec.Sizes, spec.Nodes)
	}
	code, stdout, stderr = runCLIForMetrics(t, "eval", "--checkpoint", out, "--split", "test", "--json", "--quiet")
	if code != 0 || !strings.Contains(stdout, `"kind":"qm9"`) {
		t.Fatalf("eval: exit %d: %s %s", code, stdout, stderr)
	}
	samples := filepath.Join(dir, "samples.parquet")
	code, stdout, stderr = runCLIForMetrics(t, "sample", "--checkpoint", out, "--n", "3", "--seed", "2", "--out", samples, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("sample: exit %d: %s %s", code, stdout, stderr)
	}
	mols, err := table.ReadMolecules(samples)
	if err != nil || len(mols) != 3 {
		t.Fatalf("samples: %d, %v", len(mols), err)
	}
	for _, m := range mols {
		if m.NAtoms() < 2 || m.NAtoms() > 41 {
			t.Errorf("sampled molecule of %d atoms (p(M) has 2..41)", m.NAtoms())
		}
		for _, z := range m.Z {
			if !slices.Contains(spec.Elements, z) {
				t.Errorf("sampled element %d outside the data's elements", z)
			}
		}
	}
	// A missing data file is an error, not an empty result.
	code, _, stderr = runCLIForMetrics(t, "eval", "--checkpoint", out, "--data", filepath.Join("..", "..", "nonexistent.parquet"))
	if code == 0 {
		t.Errorf("eval of a missing file succeeded: %s", stderr)
	}
}
