package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/jobs"
	"github.com/enflow/enflow/pipeline/train"
)

// TestJobsMoleculesCLI: a job spec trains the molecule E-NF on a user's own molecules (the
// same path as --dataset qm9) and evaluates the stability of its samples; a rerun finds
// everything done, and a GNF-att unit on the same data is reported as unsupported.
func TestJobsMoleculesCLI(t *testing.T) {
	dir := t.TempDir()
	var ms []fixtureMol
	for k := range 6 { // as TestTrainMoleculesCLI: every size lands in the training split
		for _, m := range moleculeFixtures {
			c := fixtureMol{name: fmt.Sprintf("%s %d", m.name, k), sym: m.sym}
			for i, p := range m.pos {
				d := 0.01 * float64((k*5+i*3)%5-2)
				c.pos = append(c.pos, [3]float64{p[0] + d, p[1] + 0.5*d, p[2] - d})
			}
			ms = append(ms, c)
		}
	}
	in := writeFixtureInputs(t, dir, ms)["sdf"]
	data := filepath.Join(dir, "data")
	if code, _, stderr := runMoleculesCLI(t, in[0], in[1], "--out", data, "--split-by-hash", "50,25,25", "--seed", "3"); code != 0 {
		t.Fatalf("etl molecules: exit %d: %s", code, stderr)
	}
	trainMols, err := table.ReadMolecules(train.MoleculeSplitPath(data, train.SystemMolecules, "train"))
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "mols.toml")
	text := fmt.Sprintf(`
name = "mols"
[train]
hidden = 8
layers = 1
solver = "rk4"
steps = 2
epochs = 1
batch = 4
eval-batch = 8
stability-samples = 2
max-steps-per-epoch = 2
[[experiment]]
dataset = "molecules"
models = ["enf"]
n_data = [%d]
[[evaluation]]
kind = "stability"
n = 3
`, len(trainMols))
	if err := os.WriteFile(spec, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	t.Setenv(jobs.CodeVersionEnv, "cli-test")
	run := func(args ...string) (string, int) { return runMainLogged(t, args...) }
	common := []string{"--data", data, "--state", state, "--in-process", "--json"}
	out, code := run(append([]string{"jobs", "run", spec}, common...)...)
	if code != 0 {
		logs, _ := filepath.Glob(filepath.Join(state, "units", "*", "log.txt"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
		t.Fatalf("jobs run: exit %d\n%s", code, out)
	}
	var sum jobs.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("jobs run --json: %v\n%s", err, out)
	}
	if sum.Count(jobs.OutcomeRan) != 2 {
		t.Fatalf("counts %v, want the training unit and its stability evaluation ran", sum.Counts)
	}
	rs, err := jobs.ReadResults(filepath.Join(state, "results"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, r := range rs {
		if r.Dataset != jobs.DatasetMolecules || r.Model != "enf" {
			t.Errorf("result row of %s/%s, want molecules/enf", r.Dataset, r.Model)
		}
		got[r.Metric] = r.Value
	}
	for _, m := range []string{"test_nll", "best_val_nll", "atom_stable", "mol_stable"} {
		v, ok := got[m]
		if !ok || v != v {
			t.Errorf("metric %s = %v (present %v), want a number", m, v, ok)
		}
	}
	if s := got["atom_stable"]; s < 0 || s > 1 {
		t.Errorf("atom_stable %v outside [0, 1]", s)
	}
	// Everything is done: a rerun runs nothing.
	out, code = run(append([]string{"jobs", "run", spec}, common...)...)
	sum = jobs.Summary{}
	if err := json.Unmarshal([]byte(out), &sum); code != 0 || err != nil || sum.Count(jobs.OutcomeRan) != 0 {
		t.Errorf("rerun: exit %d, %v, counts %v: want nothing run", code, err, sum.Counts)
	}
	// Only the E-NF trains on molecules with atom types.
	if err := os.WriteFile(spec, []byte(strings.Replace(text, `models = ["enf"]`, `models = ["gnf-att"]`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = run(append([]string{"jobs", "run", spec}, common...)...)
	sum = jobs.Summary{}
	if err := json.Unmarshal([]byte(out), &sum); code != 1 || err != nil || sum.Count(jobs.OutcomeUnsupported) != 1 {
		t.Errorf("GNF-att on molecules: exit %d, %v, counts %v: want exit 1 and 1 unsupported", code, err, sum.Counts)
	}
}
