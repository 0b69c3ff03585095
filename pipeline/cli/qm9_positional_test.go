package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/train"
)

func TestParseResplit(t *testing.T) {
	cases := []struct {
		in      string
		want    []float64
		wantErr string
	}{
		{in: "80,10,10", want: []float64{0.8, 0.1, 0.1}},
		{in: "0.5, 0.25, 0.25", want: []float64{0.5, 0.25, 0.25}},
		{in: "1,0,1", want: []float64{0.5, 0, 0.5}},
		{in: "80,20", wantErr: "three numbers"},
		{in: "80,x,10", wantErr: "not a non-negative number"},
		{in: "80,-10,30", wantErr: "not a non-negative number"},
		{in: "0,0,0", wantErr: "sum to 0"},
	}
	for _, tc := range cases {
		got, err := parseResplit(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseResplit(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseResplit(%q): %v", tc.in, err)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-12 {
				t.Errorf("parseResplit(%q) = %v, want %v", tc.in, got, tc.want)
				break
			}
		}
	}
}

// TestResplitOf checks that the hash split is deterministic, depends on the seed and follows the
// fractions.
func TestResplitOf(t *testing.T) {
	fr := []float64{0.8, 0.1, 0.1}
	const n = 20000
	count := map[string]int{}
	differ := 0
	for id := int64(1); id <= n; id++ {
		s := resplitOf(id, 0, fr)
		if s != resplitOf(id, 0, fr) {
			t.Fatalf("id %d: not deterministic", id)
		}
		if s != resplitOf(id, 7, fr) {
			differ++
		}
		count[s]++
	}
	for split, want := range map[string]float64{"train": 0.8, "valid": 0.1, "test": 0.1} {
		if got := float64(count[split]) / n; math.Abs(got-want) > 0.015 {
			t.Errorf("%s fraction = %.4f, want %.2f ± 0.015", split, got, want)
		}
	}
	if differ < n/10 {
		t.Errorf("seed 7 changes the split of only %d of %d ids", differ, n)
	}
}

// TestQM9PositionalCLI runs the QM9 Positional path end to end on the shipped test split: ETL
// with --positional-resplit, a tiny `train --dataset qm9-positional` (JS divergence at each
// evaluation), eval, sample, and `metrics js` on the sampled configurations. It also checks that
// `metrics js` gives the same number on a configuration table as on the molecule table it came
// from.
func TestQM9PositionalCLI(t *testing.T) {
	npz := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")

	code, out, stderr := runCLIForMetrics(t, "etl", "qm9", "--npz", npz, "--positional", "--positional-resplit", "80,10,10",
		"--format", "parquet", "--out", data, "--json")
	if code != 0 {
		t.Fatalf("etl qm9: exit %d: %s", code, stderr)
	}
	var etl map[string]any
	if err := json.Unmarshal([]byte(out), &etl); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	total := 0
	for _, s := range []string{"train", "valid", "test"} {
		n, _ := etl["positional_"+s].(float64)
		if n <= 0 {
			t.Fatalf("positional_%s = %v", s, etl["positional_"+s])
		}
		total += int(n)
	}
	if total != 1813 {
		t.Fatalf("positional molecules = %d, want the 1813 19-atom molecules of the test split", total)
	}
	for _, s := range []string{"train", "valid", "test"} { // the split column says the file
		ms, err := table.ReadMolecules(filepath.Join(data, "qm9_positional_"+s+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Split != s {
				t.Fatalf("qm9_positional_%s.parquet: molecule %d has split %q", s, m.ID, m.Split)
			}
		}
	}

	t.Run("etl particles refuses qm9-positional", func(t *testing.T) {
		code, _, stderr := runCLIForMetrics(t, "etl", "particles", "--system", "qm9-positional", "--out", filepath.Join(dir, "x"))
		if code == 0 || !strings.Contains(stderr, "etl qm9 --positional") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("js of configurations equals js of molecules", func(t *testing.T) {
		mols, err := qm9.ReadNPZ(npz, "test")
		if err != nil {
			t.Fatal(err)
		}
		molPath := filepath.Join(dir, "mol19.parquet")
		cfgPath := filepath.Join(dir, "cfg19.parquet")
		mw, err := table.NewMoleculeWriter(molPath)
		if err != nil {
			t.Fatal(err)
		}
		cw, err := table.NewConfigWriter(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		for i := range mols {
			if !qm9.IsPositional(&mols[i]) {
				continue
			}
			if err := mw.Write(&mols[i]); err != nil {
				t.Fatal(err)
			}
			var pos []float64
			for _, p := range mols[i].Positions {
				pos = append(pos, p[0], p[1], p[2])
			}
			c := particles.Config{ID: mols[i].ID, Split: "test", System: particles.QM9Positional.Name, Positions: pos, Energy: math.NaN()}
			if err := cw.Write(&c); err != nil {
				t.Fatal(err)
			}
		}
		if err := mw.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := cw.Commit(); err != nil {
			t.Fatal(err)
		}
		js := func(path string) float64 {
			code, out, stderr := runCLIForMetrics(t, "metrics", "js", "--in", path, "--json")
			if code != 0 {
				t.Fatalf("metrics js %s: exit %d: %s", path, code, stderr)
			}
			var r struct {
				JS         float64 `json:"js"`
				NMolecules int     `json:"n_molecules"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatal(err)
			}
			if r.NMolecules != 1813 {
				t.Fatalf("%s: %d molecules, want 1813", path, r.NMolecules)
			}
			return r.JS
		}
		jm, jc := js(molPath), js(cfgPath)
		if jm != jc || math.Abs(jm-3.58e-5) > 0.05e-5 {
			t.Fatalf("JS molecules %g, configurations %g; want both ≈ 3.58e-5", jm, jc)
		}
	})

	run := filepath.Join(dir, "run")
	code, out, stderr = runCLIForMetrics(t, "train", "--dataset", "qm9-positional", "--data", data, "--out", run,
		"--hidden", "8", "--layers", "1", "--epochs", "2", "--max-steps-per-epoch", "1", "--batch", "8",
		"--eval-n", "8", "--eval-batch", "8", "--js-samples", "8", "--no-progress", "--json")
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	var res struct {
		Dataset string   `json:"dataset"`
		NData   int      `json:"n_data"`
		TestNLL *float64 `json:"test_nll"`
		JS      *float64 `json:"js_div"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Dataset != "qm9_positional" || res.NData != int(etl["positional_train"].(float64)) || res.TestNLL == nil || res.JS == nil {
		t.Fatalf("train summary %s", out)
	}
	if !(*res.JS > 0 && *res.JS <= math.Ln2) {
		t.Fatalf("js_div = %g, want in (0, ln 2]", *res.JS)
	}
	spec, err := train.LoadSpec(run)
	if err != nil {
		t.Fatal(err)
	}
	// main_qm9_pos.py's settings where not overridden: Gaussian noise, regulariser 1e-3.
	if spec.Nodes != 19 || spec.Dim != 3 || spec.CNF.Noise != "gaussian" || spec.CNF.RegWeight != 1e-3 {
		t.Fatalf("model spec %+v", spec)
	}
	info, err := train.LoadRunInfo(run)
	if err != nil {
		t.Fatal(err)
	}
	if !info.ClipAdaptive || info.ClipQueueInit != 1e30 || info.LR != 2e-4 || info.Schedule.TestEvery != 1 {
		t.Fatalf("run info %+v", info)
	}
	rows, err := train.ReadMetricsCSV(run)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || math.IsNaN(rows[0].JS) || math.IsNaN(rows[1].BestJS) || math.IsNaN(rows[1].TrainNLL) {
		t.Fatalf("metrics rows %+v", rows)
	}

	code, out, stderr = runCLIForMetrics(t, "eval", "--checkpoint", run, "--split", "val", "--limit", "8", "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	var ev struct {
		NLL float64 `json:"nll"`
		N   int     `json:"n"`
	}
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.N != 8 || math.IsNaN(ev.NLL) {
		t.Fatalf("eval: %v %s", err, out)
	}

	samples := filepath.Join(dir, "samples.parquet")
	if code, _, stderr := runCLIForMetrics(t, "sample", "--checkpoint", run, "--n", "8", "--out", samples); code != 0 {
		t.Fatalf("sample: exit %d: %s", code, stderr)
	}
	code, out, stderr = runCLIForMetrics(t, "metrics", "js", "--in", samples, "--json")
	if code != 0 {
		t.Fatalf("metrics js: exit %d: %s", code, stderr)
	}
	var js struct {
		JS         float64 `json:"js"`
		NMolecules int     `json:"n_molecules"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.NMolecules != 8 || !(js.JS > 0) {
		t.Fatalf("metrics js: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(run, "best")); err != nil {
		t.Fatalf("no best checkpoint: %v", err)
	}
}
