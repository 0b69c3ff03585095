package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/particles"
)

// bgMiniSpec is a miniature Boltzmann-generator spec: a RealNVP trained by ML for two short
// epochs, fine-tuned with ML+KL for two more, then its train-split NLL, the ESS of 64 samples
// and the states of 16 minimised samples.
const bgMiniSpec = `
name = "bg-mini"
max_attempts = 1
[train]
epochs = 2
test-every = 1
batch = 20
max-steps-per-epoch = 2
eval-n = 20
eval-batch = 20
hidden = 8
layers = 2
dtype = "float32"

[[experiment]]
dataset = "dw4"
data_dir = "bg"
models = ["realnvp"]
n_data = [60]
finetune = { objective = "ml+kl", lambda = "1.0:0.5", epochs = 2, kl-samples = 16 }

[[evaluation]]
kind = "nll"
split = "train"

[[evaluation]]
kind = "ess"
n = 64
bins = 10

[[evaluation]]
kind = "states"
n = 16
`

// TestBGMiniSpecEndToEnd runs bgMiniSpec with the real enflow binary on a tiny synthetic DW4
// set (enflow jobs run, then enflow report): both training stages, the ess and states
// evaluations, and the report's Boltzmann-generator section.
func TestBGMiniSpecEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds enflow and trains a tiny RealNVP in two stages; skipped in -short mode")
	}
	bin := buildEnflow(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyParticles(t, filepath.Join(data, "bg"), particles.DW4, map[string]int{"train": 60, "val": 20, "test": 20}, 7)
	specPath := filepath.Join(dir, "bg-mini.toml")
	if err := os.WriteFile(specPath, []byte(bgMiniSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), CodeVersionEnv+"=bg-e2e")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("enflow %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return out
	}
	start := time.Now()
	out := run("jobs", "run", specPath, "--data", data, "--state", state, "--json")
	var sum Summary
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("jobs run --json: %v\n%s", err, out)
	}
	t.Logf("jobs run: %v in %.1f s", sum.Counts, time.Since(start).Seconds())
	if sum.Count(OutcomeRan) != 4 {
		for _, r := range sum.Reports {
			t.Logf("%s %s: %s %s", r.ID, r.Kind, r.Outcome, r.Error)
		}
		t.Fatalf("counts %v, want 4 ran", sum.Counts)
	}
	rows, err := ReadResults(state)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]Row{}
	for _, r := range rows {
		if got[r.UnitKind] == nil {
			got[r.UnitKind] = map[string]Row{}
		}
		got[r.UnitKind][r.Metric] = r
	}
	tr := got[KindTrain]
	for _, m := range []string{"test_nll", "stage1_test_nll", "curve", "stage1_curve", "stages", "nll_dims"} {
		if _, ok := tr[m]; !ok {
			t.Errorf("train unit: no metric %s", m)
		}
	}
	if v := tr["nll_dims"].Value; v != 8 {
		t.Errorf("RealNVP NLL over %v dimensions, want N·D = 8", v)
	}
	// Both conventions: the Gaussian normaliser of 8 dimensions is 4·log(2π).
	if d := tr["test_nll"].Value - tr["test_nll_without_normaliser"].Value; math.Abs(d-4*math.Log(2*math.Pi)) > 1e-9 {
		t.Errorf("test NLL with − without normaliser = %v, want 4·log(2π) = %v", d, 4*math.Log(2*math.Pi))
	}
	if v := tr["epochs"].Value; v != 2 {
		t.Errorf("stage 2 recorded %v epochs, want 2", v)
	}
	ess := got[KindESS]
	if f := ess["ess_fraction"].Value; !(f > 0 && f <= 1) || ess["n_samples"].Value != 64 {
		t.Errorf("ess_fraction %v of %v samples", f, ess["n_samples"].Value)
	}
	for _, m := range []string{"mean_u_samples", "mean_u_reweighted", "mean_u_reweighted_stderr", "ess_detail"} {
		if _, ok := ess[m]; !ok {
			t.Errorf("ess unit: no metric %s", m)
		}
	}
	st := got[KindStates]
	if st["n_samples"].Value != 16 || !(st["converged"].Value >= 0) || st["states_detail"].Detail == "" {
		t.Errorf("states: %v samples, %v converged, detail %q", st["n_samples"].Value, st["converged"].Value, st["states_detail"].Detail)
	}
	if !strings.Contains(got[KindNLL]["nll"].Detail, `"split":"train"`) {
		t.Errorf("nll detail %q", got[KindNLL]["nll"].Detail)
	}

	// The small figure files next to the results: the marginal of particle 1 of the 64 samples
	// and the two splits, and 4 samples before and after minimisation plus a training row.
	var m MarginalHistograms
	readJSONTest(t, filepath.Join(state, unitsDirName, ess["ess"].Unit, MarginalFileName), &m)
	checkMarginalShape(t, &m, map[string]int64{"samples": 64, "train": 60, "test": 20})
	var sc StateConfigurations
	readJSONTest(t, filepath.Join(state, unitsDirName, st["n_states"].Unit, ConfigurationsFileName), &sc)
	pictures := 0 // drawn configurations (a failed minimisation has no picture)
	for _, p := range append(sc.Samples, *sc.Training) {
		if len(p.Before) != 8 || p.After != nil && len(p.After) != 8 {
			t.Errorf("configuration pair %+v", p)
		}
		pictures++
		if len(p.After) > 0 {
			pictures++
		}
	}
	if len(sc.Samples) != 4 || sc.Training == nil || sc.Energy != "dw4" {
		t.Errorf("configurations: %d samples, training %v, energy %q", len(sc.Samples), sc.Training != nil, sc.Energy)
	}

	htmlPath, mdPath := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.md")
	run("report", "--results", state, "--out", htmlPath, "--md", mdPath)
	md, err := os.ReadFile(mdPath)
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="bg-marginals"`, `id="bg-configurations"`, "x₁ − x̄", "training data", "minimised"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report HTML lacks %q", want)
		}
	}
	if n := bytes.Count(page, []byte("<title>particle ")); n != 4*pictures {
		t.Errorf("report HTML has %d particle circles, want 4 per pictured configuration (%d)", n, 4*pictures)
	}
	for _, want := range []string{"## Boltzmann generators", "| RealNVP (nBG) | DW4 bg · n=60 · seed 1 | 1: ML |", "2: ML+KL (λ 1.0:0.5)", "metastable states"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report Markdown lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}
}
