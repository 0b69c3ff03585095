package jobs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
)

// bgSpec is a two-stage (finetune) DW4 experiment with ess and states evaluations and nll on
// the train split.
const bgSpec = `
name = "bg-test"
max_attempts = 3
[train]
epochs = 3
objective = "ml"

[[experiment]]
dataset = "dw4"
data_dir = "bg"
models = ["realnvp"]
n_data = [50]
finetune = { objective = "ml+kl", lambda = "1.0:0.5", epochs = 2, kl_samples = 8, temperature = 1 }

[[evaluation]]
kind = "nll"
split = "train"

[[evaluation]]
kind = "ess"
n = 16
temperature = 2

[[evaluation]]
kind = "states"
n = 16
`

func TestParseSpecBG(t *testing.T) {
	exp := "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [10]\n"
	tests := []struct {
		name, text, wantErr string
	}{
		{"valid", bgSpec, ""},
		{"energy cut", "[train]\nobjective = \"ml+kl\"\nenergy-cut = 100\n" + exp, ""},
		{"init-which in finetune", exp + "finetune = { objective = \"ml+kl\", init-which = \"last\" }\n", ""},
		{"init-which outside finetune", "[train]\ninit-which = \"last\"\n" + exp, "belongs in the finetune"},
		{"bad init-which", exp + "finetune = { init-which = \"first\" }\n", "want best or last"},
		{"lambda as a number", "[train]\nobjective = \"ml+kl\"\nlambda = 0.5\n" + exp, ""},
		{"bad objective", "[train]\nobjective = \"mle\"\n" + exp, "objective"},
		{"bad lambda", "[train]\nobjective = \"ml+kl\"\nlambda = \"1:x\"\n" + exp, "lambda"},
		{"zero temperature", "[train]\nobjective = \"kl\"\ntemperature = 0\n" + exp, "temperature"},
		{"energy of another system", "[train]\nobjective = \"kl\"\nenergy = \"lj13\"\n" + exp, "energy"},
		{"init-from is the runner's", "[train]\ninit-from = \"x\"\n" + exp, "set by the runner"},
		{"empty finetune", exp + "finetune = {}\n", "finetune: empty"},
		{"bad finetune key", exp + "finetune = { objectiv = \"kl\" }\n", "objectiv"},
		{"bad finetune objective", exp + "finetune = { objective = \"x\" }\n", "finetune"},
		{"ess on a samples file", exp + "[[evaluation]]\nkind = \"ess\"\ndataset = \"dw4\"\nsamples = \"s.parquet\"\n", "needs a trained model"},
		{"ess on qm9", exp + "[[evaluation]]\nkind = \"ess\"\ndatasets = [\"qm9\"]\n", "does not apply"},
		{"temperature on energy", exp + "[[evaluation]]\nkind = \"energy\"\ntemperature = 2\n", "ess option"},
		{"negative ess temperature", exp + "[[evaluation]]\nkind = \"ess\"\ntemperature = -1\n", "temperature"},
		{"ess with hutchinson", exp + "[[evaluation]]\nkind = \"ess\"\ntrace = \"hutchinson\"\n", "exact or analytic"},
		{"unknown ess energy", exp + "[[evaluation]]\nkind = \"ess\"\ndatasets = [\"dw4\"]\nenergy = \"nope\"\n", "energy"},
		{"states with energy", exp + "[[evaluation]]\nkind = \"states\"\nenergy = \"dw4\"\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec("/x/spec.toml", []byte(tc.text))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
	s, err := ParseSpec("/x/spec.toml", []byte(bgSpec))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Evaluations[1].Temperature; got != 2 {
		t.Errorf("ess temperature %v, want 2", got)
	}
	s2, err := ParseSpec("/x/spec.toml", []byte(strings.Replace(bgSpec, "temperature = 2\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.Evaluations[1].Temperature; got != 1 {
		t.Errorf("default ess temperature %v, want 1", got)
	}
}

// TestBGIdentity: finetune and data_dir are part of a training unit's identity; specs without
// them keep their identities (no new keys in the normalized spec).
func TestBGIdentity(t *testing.T) {
	dir := t.TempDir()
	writeTinyParticles(t, dir, particles.DW4, map[string]int{"train": 60, "val": 10, "test": 10}, 1)
	writeTinyParticles(t, filepath.Join(dir, "bg"), particles.DW4, map[string]int{"train": 60, "val": 10, "test": 10}, 1)
	writeTinyParticles(t, filepath.Join(dir, "other"), particles.DW4, map[string]int{"train": 60, "val": 10, "test": 10}, 2)
	plan := func(text string) *Plan {
		t.Helper()
		s, err := ParseSpec(filepath.Join(dir, "spec.toml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		p, err := Expand(s, PlanOptions{DataDir: dir, Code: CodeInfo{Version: "v"}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	exp := "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"realnvp\"]\nn_data = [50]\n"
	base := plan(exp)
	if _, ok := base.Units[0].Norm["finetune"]; ok {
		t.Errorf("a one-stage unit has a finetune key")
	}
	if _, ok := base.Units[0].Norm["data_dir"]; ok {
		t.Errorf("a unit without an experiment data_dir has a data_dir key")
	}
	ft := plan(exp + "finetune = { objective = \"ml+kl\" }\n")
	ft2 := plan(exp + "finetune = { objective = \"ml+kl\", lambda = \"1.0:0.5\" }\n")
	sameData := plan(exp + "data_dir = \"bg\"\n")
	otherData := plan(exp + "data_dir = \"other\"\n")
	ids := map[string]string{"base": base.Units[0].ID, "finetune": ft.Units[0].ID, "finetune-lambda": ft2.Units[0].ID,
		"data_dir bg": sameData.Units[0].ID, "data_dir other": otherData.Units[0].ID}
	seen := map[string]string{}
	for name, id := range ids {
		if prev, dup := seen[id]; dup {
			t.Errorf("%s and %s have the same identity", prev, name)
		}
		seen[id] = name
	}
	if got := sameData.Units[0].DataDir; got != filepath.Join(dir, "bg") {
		t.Errorf("relative data_dir resolved to %s, want below the spec's data directory", got)
	}
	abs := plan(exp + "data_dir = \"" + filepath.Join(dir, "other") + "\"\n")
	if got := abs.Units[0].DataDir; got != filepath.Join(dir, "other") {
		t.Errorf("absolute data_dir resolved to %s", got)
	}
	if ft.Units[0].Finetune["objective"] != "ml+kl" || ft.Units[0].Finetune["epochs"] != nil {
		t.Errorf("finetune overrides %v", ft.Units[0].Finetune)
	}
}

// TestFinetuneUnitResumesPerStage: a two-stage unit trains stage 1, is killed in stage 2, and
// the rerun records stage 1 without retraining it, resumes stage 2, and evaluates stage 2.
func TestFinetuneUnitResumesPerStage(t *testing.T) {
	o, fx := newTestOptions(t, bgSpec)
	writeTinyParticles(t, filepath.Join(o.DataDir, "bg"), particles.DW4, map[string]int{"train": 60, "val": 10, "test": 10}, 3)
	killStage2 := true
	fx.checkpointOnly = func(args []string) bool {
		return killStage2 && flagValue(args, "--init-from") != ""
	}
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count(OutcomeFailed) != 1 || sum.Count(OutcomeBlocked) != 3 {
		t.Fatalf("first run counts %v, want 1 failed, 3 blocked", sum.Counts)
	}
	if n := fx.count("train"); n != 2 {
		t.Fatalf("%d train calls in the first run, want 2 (stage 1, stage 2 killed)", n)
	}
	st, err := StatusOf(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if u := st.Units[0]; u.State != StatePartial || !strings.Contains(u.Detail, "stage 2: ") {
		t.Errorf("status of the killed two-stage unit: %s %q, want partial in stage 2", u.State, u.Detail)
	}
	killStage2 = false
	fx.calls = nil
	sum, err = Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count(OutcomeRan) != 4 {
		t.Fatalf("rerun counts %v, want 4 ran", sum.Counts)
	}
	var trainCalls [][]string
	for _, c := range fx.calls {
		if c[0] == "train" {
			trainCalls = append(trainCalls, c)
		}
	}
	if len(trainCalls) != 1 || !hasFlag(trainCalls[0], "--resume") || !strings.HasSuffix(flagValue(trainCalls[0], "--out"), finetuneDirName) {
		t.Fatalf("rerun train calls %v, want one --resume of the finetune stage", trainCalls)
	}
	tc := trainCalls[0]
	if flagValue(tc, "--objective") != "ml+kl" || flagValue(tc, "--lambda") != "1.0:0.5" || flagValue(tc, "--epochs") != "2" ||
		flagValue(tc, "--kl-samples") != "8" || !strings.HasSuffix(flagValue(tc, "--init-from"), string(filepath.Separator)+runDirName) ||
		!strings.HasSuffix(flagValue(tc, "--data"), string(filepath.Separator)+"bg") {
		t.Errorf("stage-2 command %v", tc)
	}
	p, err := Expand(o.Spec, PlanOptions{DataDir: o.DataDir, Code: o.Code})
	if err != nil {
		t.Fatal(err)
	}
	tu := p.Units[0]
	for _, c := range fx.calls {
		switch c[0] {
		case "sample", "eval":
			if got := flagValue(c, "--checkpoint"); got != filepath.Join(o.StateDir, unitsDirName, tu.ID, finetuneDirName) {
				t.Errorf("%s evaluates %s, want the finetune stage", c[0], got)
			}
		case "metrics":
			if flagValue(c, "--temperature") != "2" || flagValue(c, "--system") != "dw4" {
				t.Errorf("metrics ess call %v", c)
			}
		}
	}
	logWeights := 0
	for _, c := range fx.calls {
		if c[0] == "sample" && hasFlag(c, "--log-weights") {
			logWeights++
		}
	}
	if logWeights != 1 || fx.count("sample") != 2 || fx.count("minimize") != 1 {
		t.Errorf("%d samples with --log-weights of %d, %d minimize calls; want 1 of 2, 1", logWeights, fx.count("sample"), fx.count("minimize"))
	}

	rows, err := ReadResults(o.StateDir)
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
	if tr["test_nll"].Value >= tr["stage1_test_nll"].Value {
		t.Errorf("final test_nll %v should be the fine-tuned (lower, fake) value, stage 1 %v", tr["test_nll"].Value, tr["stage1_test_nll"].Value)
	}
	if tr["stage1_curve"].Detail == "" || tr["curve"].Detail == "" {
		t.Errorf("missing curves of the stages")
	}
	var stages []StageInfo
	if err := json.Unmarshal([]byte(tr["stages"].Detail), &stages); err != nil || len(stages) != 2 {
		t.Fatalf("stages detail %q: %v", tr["stages"].Detail, err)
	}
	if stages[0].Objective != "ml" || stages[1].Objective != "ml+kl" || stages[1].Lambda != "1.0:0.5" || stages[1].Run != finetuneDirName {
		t.Errorf("stages %+v", stages)
	}
	if !strings.HasSuffix(tr["test_nll"].Artifact, finetuneDirName) {
		t.Errorf("train artifact %q, want the finetune run", tr["test_nll"].Artifact)
	}
	for kind, metric := range map[string][]string{
		KindESS:    {"ess", "ess_fraction", "mean_u_samples", "mean_u_reweighted", "mean_u_reweighted_stderr", "ess_detail"},
		KindStates: {"metastable_states", "n_states", "converged", "converged_fraction", "states_detail"},
		KindNLL:    {"nll"},
	} {
		for _, m := range metric {
			if _, ok := got[kind][m]; !ok {
				t.Errorf("%s: no metric %s", kind, m)
			}
		}
	}
	if v := got[KindESS]["ess_fraction"].Value; v != 0.28125 {
		t.Errorf("ess_fraction %v", v)
	}
	if v := got[KindStates]["metastable_states"].Value; v != 2 {
		t.Errorf("metastable_states %v", v)
	}
	var sd StatesDetail
	if err := json.Unmarshal([]byte(got[KindStates]["states_detail"].Detail), &sd); err != nil || len(sd.States) != 3 || sd.Converged != 15 {
		t.Errorf("states detail %+v (%v)", sd, err)
	}
	if !strings.Contains(got[KindNLL]["nll"].Detail, `"split":"train"`) {
		t.Errorf("nll detail %s", got[KindNLL]["nll"].Detail)
	}

	// The figure files: the marginal of particle 1 (16 samples, 60 train and 10 test rows) and
	// four sampled configurations with their minima plus the first training configuration.
	var ed ESSDetail
	if err := json.Unmarshal([]byte(got[KindESS]["ess_detail"].Detail), &ed); err != nil || ed.Marginal != MarginalFileName {
		t.Fatalf("ess detail names marginal %q (%v), want %s", ed.Marginal, err, MarginalFileName)
	}
	var m MarginalHistograms
	readJSONTest(t, filepath.Join(o.StateDir, unitsDirName, got[KindESS]["ess"].Unit, ed.Marginal), &m)
	checkMarginalShape(t, &m, map[string]int64{"samples": 16, "train": 60, "test": 10})
	if sd.Configurations != ConfigurationsFileName {
		t.Fatalf("states detail names configurations %q, want %s", sd.Configurations, ConfigurationsFileName)
	}
	var sc StateConfigurations
	readJSONTest(t, filepath.Join(o.StateDir, unitsDirName, got[KindStates]["n_states"].Unit, sd.Configurations), &sc)
	// The fake minimize puts rows 0, 1, 2 in states 0, 1, 2 (two minima, one saddle).
	if len(sc.Samples) != 4 || sc.Samples[0].Row != 0 || sc.Samples[1].Row != 1 || sc.Samples[2].Row != 2 || sc.Samples[3].Row != 3 {
		t.Errorf("pictured samples %+v", sc.Samples)
	}
	for _, p := range sc.Samples {
		if len(p.Before) != 8 || len(p.After) != 8 || p.EnergyAfter == nil {
			t.Errorf("pictured sample %+v", p)
		}
	}
	if sc.Training == nil || sc.Training.Source != "dw4_train.parquet" || len(sc.Training.After) != 8 {
		t.Errorf("training configuration %+v", sc.Training)
	}
}

func readJSONTest(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
