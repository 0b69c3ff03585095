package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/pipeline/jobs"
)

// withSpec sets the unit spec and parent of rows (rowsFor leaves them empty).
func withSpec(rows []jobs.Row, spec, parent string) []jobs.Row {
	for i := range rows {
		rows[i].UnitSpec, rows[i].ParentUnit = spec, parent
	}
	return rows
}

// bgRows are the results of a bg_generalisation-like run: a two-stage RealNVP and a two-stage
// E-NF on DW4 MCMC data with nll (train, test), ess, states and energy evaluations, the data's
// states, and an ordinary Table 1 E-NF unit with the same dataset, model, n_data and seed.
func bgRows() []jobs.Row {
	ft := `{"backend":"","data_dir":"dw4_mcmc","dataset":"dw4","finetune":{"epochs":2,"lambda":"1.0:0.5","objective":"ml+kl"},"kind":"train","model":"%s","n_data":1000,"seed":1,"train":{"epochs":3}}`
	curve := jobs.Curve{Epoch: []int64{0, 1}, TrainNLL: []*float64{f64(9), f64(8)}, ValNLL: []*float64{f64(9.5), f64(8.5)}}
	stages := []jobs.StageInfo{{Stage: 1, Run: "run", Objective: "ml", Epochs: 3}, {Stage: 2, Run: "finetune", Objective: "ml+kl", Lambda: "1.0:0.5", Epochs: 2}}
	var rows []jobs.Row
	add := func(unit, model string, dims, stage1Train, stage1Test, trainNLL, testNLL, ess float64) {
		rows = append(rows, withSpec(rowsFor(unit, "train", "dw4", model, "", 1000, 1, t0,
			map[string]float64{"test_nll": testNLL + 0.5, "last_train_nll": trainNLL + 1, "stage1_test_nll": stage1Test,
				"stage1_last_train_nll": stage1Train, "nll_dims": dims, "stages": 2},
			map[string]any{"curve": curve, "stage1_curve": curve, "stages": stages}), strings.ReplaceAll(ft, "%s", model), "")...)
		rows = append(rows, withSpec(rowsFor(unit[:15]+"a", "nll", "dw4", model, "", 1000, 1, t0,
			map[string]float64{"nll": trainNLL}, nil), `{"kind":"nll","split":"train","seed":1,"batch":100}`, unit)...)
		rows = append(rows, withSpec(rowsFor(unit[:15]+"b", "nll", "dw4", model, "", 1000, 1, t0,
			map[string]float64{"nll": testNLL}, nil), `{"kind":"nll","split":"test","seed":1,"batch":100}`, unit)...)
		rows = append(rows, withSpec(rowsFor(unit[:15]+"c", "ess", "dw4", model, "", 1000, 1, t0,
			map[string]float64{"ess": ess * 1000, "ess_fraction": ess, "n_samples": 1000, "mean_u_samples": -10, "mean_u_reweighted": -12},
			map[string]any{"ess_detail": map[string]any{"temperature": 1, "u_histogram": map[string]any{"lo": -14, "hi": -6,
				"mass_samples": []float64{0.1, 0.4, 0.3, 0.2}, "mass_reweighted": []float64{0.3, 0.4, 0.2, 0.1}}}}), `{"kind":"ess","n":1000}`, unit)...)
		rows = append(rows, withSpec(rowsFor(unit[:15]+"d", "states", "dw4", model, "", 1000, 1, t0,
			map[string]float64{"metastable_states": 2, "n_states": 3, "converged": 499, "n_samples": 500},
			map[string]any{"states_detail": jobs.StatesDetail{N: 500, Converged: 499, States: []jobs.State{
				{ID: 0, Energy: -12.9, Count: 200, IsMinimum: true}, {ID: 1, Energy: -13.1, Count: 290, IsMinimum: true},
				{ID: 2, Energy: -8, Count: 9}}}}), `{"kind":"states","n":500}`, unit)...)
		hist := jobs.EnergyHistogram{Lo: -14, Hi: -6, Bins: 4, Samples: []int64{1, 5, 3, 1}, Data: []int64{2, 6, 2, 0}}
		rows = append(rows, withSpec(rowsFor(unit[:15]+"e", "energy", "dw4", model, "", 1000, 1, t0,
			map[string]float64{"mean_energy": -11}, map[string]any{"energy_hist": hist}), `{"kind":"energy","n":1000}`, unit)...)
	}
	add("1000000000000000", "realnvp", 8, -10.5, 300.25, -11.5, 350.5, 0.01)
	add("2000000000000000", "enf", 6, 6.25, 7.5, 5.5, 6.75, 0.4)
	rows = append(rows, withSpec(rowsFor("3000000000000000", "states", "dw4", "", "data", 0, 1, t0,
		map[string]float64{"metastable_states": 1, "n_states": 1, "converged": 200, "n_samples": 200},
		map[string]any{"states_detail": jobs.StatesDetail{N: 200, States: []jobs.State{{Energy: -13.1, Count: 200, IsMinimum: true}}}}),
		`{"kind":"states","n":200,"dataset":"dw4","label":"data"}`, "")...)
	// Table 1's E-NF at n = 1000 (recorded before the BG units: it must still fill Table 1).
	rows = append(rows, withSpec(rowsFor("4000000000000000", "train", "dw4", "enf", "", 1000, 1, t0.Add(-1e9),
		map[string]float64{"test_nll": 8.25}, map[string]any{"curve": curve}), `{"kind":"train","train":{}}`, "")...)
	return rows
}

func TestBoltzmannSection(t *testing.T) {
	if r := Build(sampleRows(), Options{Now: t0}); r.BG != nil {
		t.Errorf("a report without Boltzmann-generator results has the section")
	}
	r := Build(bgRows(), Options{Now: t0})
	if r.BG == nil {
		t.Fatal("no Boltzmann-generator section")
	}
	if got := findRow(t, r.Tables[0], "enf").Cells[1]; got.Ours != "8.25" {
		t.Errorf("Table 1 E-NF DW4 10³ = %q, want the ordinary unit's 8.25 (not a BG unit's)", got.Ours)
	}
	if len(r.Curves) != 1 {
		t.Errorf("%d general training-curve figures, want 1 (BG curves go to their section)", len(r.Curves))
	}
	g := r.BG.Generalisation
	cells := map[string][]string{}
	for _, row := range g.Rows {
		cells[row.Cells[0]+"/"+row.Cells[2]] = row.Cells
	}
	tests := []struct {
		key  string
		col  int
		want string
	}{
		{"RealNVP (nBG)/1: ML", 4, "-10.50 †"},
		{"RealNVP (nBG)/1: ML", 5, "300.25"},
		{"RealNVP (nBG)/2: ML+KL (λ 1.0:0.5)", 3, "8"},
		{"RealNVP (nBG)/2: ML+KL (λ 1.0:0.5)", 4, "-11.50"},
		{"RealNVP (nBG)/2: ML+KL (λ 1.0:0.5)", 5, "350.50"},
		{"RealNVP (nBG)/2: ML+KL (λ 1.0:0.5)", 6, "362.00"},
		{"RealNVP (nBG)/2: ML+KL (λ 1.0:0.5)", 9, "1.0% (10.0 of 1000)"},
		{"E-NF/2: ML+KL (λ 1.0:0.5)", 3, "6"},
		{"E-NF/2: ML+KL (λ 1.0:0.5)", 6, "1.25"},
		{"E-NF/2: ML+KL (λ 1.0:0.5)", 7, "-0.01"}, // 5.5 − 3·ln 2π
		{"E-NF/2: ML+KL (λ 1.0:0.5)", 1, "DW4 dw4_mcmc · n=1000 · seed 1"},
		{"nBG (Köhler et al.)/source", 4, "-12.64"},
		{"nBG (Köhler et al.)/source", 5, "372.69"},
		{"eqBG (Köhler et al.)/source", 6, "0.81"},
	}
	for _, tc := range tests {
		row, ok := cells[tc.key]
		if !ok {
			t.Errorf("generalisation table: no row %q (rows %v)", tc.key, cells)
			continue
		}
		if row[tc.col] != tc.want {
			t.Errorf("%s column %s = %q, want %q", tc.key, g.Columns[tc.col], row[tc.col], tc.want)
		}
	}
	if !strings.Contains(g.Note, "N·D") || !strings.Contains(g.Note, "(N−1)·D") {
		t.Errorf("the note does not explain the NLL dimensions: %s", g.Note)
	}
	if r.BG.States == nil || len(r.BG.States.Rows) != 3 {
		t.Fatalf("states table %+v", r.BG.States)
	}
	st := r.BG.States.Rows[0].Cells
	if st[5] != "2" || st[6] != "3" || st[4] != "499" || st[7] != "-13.10 (290), -12.90 (200)" {
		t.Errorf("states row %q", st)
	}
	if d := r.BG.States.Rows[2].Cells; d[0] != "data" || d[5] != "1" {
		t.Errorf("data states row %q", d)
	}
	if len(r.BG.Curves) != 2 || len(r.BG.Energy) != 2 || len(r.BG.ESS) != 2 || len(r.Energy) != 0 {
		t.Errorf("figures: %d BG curves, %d BG energy, %d ESS, %d general energy; want 2, 2, 2, 0",
			len(r.BG.Curves), len(r.BG.Energy), len(r.BG.ESS), len(r.Energy))
	}
	for _, u := range r.UnitRows {
		if u.Kind == "ess" && u.Main == "" || u.Kind == "states" && u.Main == "" {
			t.Errorf("units table: no result for %s unit %s", u.Kind, u.Unit)
		}
	}

	md, page := renderReport(t, bgRows())
	for _, want := range []string{
		"## Boltzmann generators",
		"### Boltzmann generators — generalisation",
		"| Model | Data | Stage | NLL dims | Train NLL | Test NLL | Gap |",
		"| RealNVP (nBG) | DW4 dw4_mcmc · n=1000 · seed 1 | 2: ML+KL (λ 1.0:0.5) | 8 | -11.50 | 350.50 | 362.00 |",
		"| nBG (Köhler et al.) | DW4 (MCMC, cut in time) | source | – | -12.64 | 372.69 |",
		"### Boltzmann generators — metastable states",
	} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	for _, want := range []string{`id="boltzmann-generators"`, `id="bg-generalisation-table"`, `id="bg-states-table"`, "reweighted"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

// TestBoltzmannSectionWithoutTrainSplit: without an nll evaluation on the train split (e.g. the
// discovery experiment) the NLL table is not the generalisation table: no "generalisation" in
// its caption and no reference rows from Köhler et al. Table 1.
func TestBoltzmannSectionWithoutTrainSplit(t *testing.T) {
	var rows []jobs.Row
	for _, r := range bgRows() {
		if !strings.Contains(r.UnitSpec, `"split":"train"`) {
			rows = append(rows, r)
		}
	}
	md, _ := renderReport(t, rows)
	for _, bad := range []string{"Köhler et al.)", "— generalisation", "Table 1 (DW4)"} {
		if bytes.Contains(md, []byte(bad)) {
			t.Errorf("Markdown holds %q without a train-split nll evaluation", bad)
		}
	}
	if !bytes.Contains(md, []byte("### Boltzmann generators — train and test NLL")) {
		t.Errorf("Markdown lacks the NLL table's caption")
	}
}

// nameFiles adds the figure-file names of the jobs' current format to the ess and states
// details of rows (bgRows has the older format without them).
func nameFiles(t *testing.T, rows []jobs.Row) []jobs.Row {
	t.Helper()
	for i := range rows {
		key := map[string]string{"ess_detail": "marginal", "states_detail": "configurations"}[rows[i].Metric]
		if key == "" {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(rows[i].Detail), &d); err != nil {
			t.Fatal(err)
		}
		d[key] = map[string]string{"marginal": jobs.MarginalFileName, "configurations": jobs.ConfigurationsFileName}[key]
		b, _ := json.Marshal(d)
		rows[i].Detail = string(b)
	}
	return rows
}

func writeUnitJSON(t *testing.T, state, unit, name string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(state, "units", unit)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bgMarginal is a marginal file of 100 samples (3 outside the range) and two data splits.
func bgMarginal() jobs.MarginalHistograms {
	m := jobs.MarginalHistograms{System: "dw4", Particles: 4, Dim: 2, Centring: jobs.MarginalCentring}
	for _, name := range []string{"x", "y", "r"} {
		lo := -4.0
		if name == "r" {
			lo = 0
		}
		m.Coords = append(m.Coords, jobs.MarginalCoordinate{Name: name, Lo: lo, Hi: 4, Bins: 4, Series: []jobs.MarginalSeries{
			{Name: "samples", Source: "samples.parquet", N: 100, Counts: []int64{10, 40, 30, 17}, Over: 3},
			{Name: "train", Source: "dw4_train.parquet", N: 50, Counts: []int64{0, 25, 25, 0}},
			{Name: "test", Source: "dw4_test.parquet", N: 20, Counts: []int64{5, 5, 5, 5}},
		}})
	}
	return m
}

func f64s(xs ...float64) []float64 { return xs }

// TestBoltzmannFigures: the marginal of particle 1 and the configuration pictures are drawn
// from the files the evaluations write in their unit directories; units without the files
// (or whose detail names none) have no such figure, a corrupt file is an error naming it.
func TestBoltzmannFigures(t *testing.T) {
	state := writeResults(t, nameFiles(t, bgRows()))
	// The RealNVP's ess and states units have their files; the E-NF's do not (an older run).
	writeUnitJSON(t, state, "100000000000000c", jobs.MarginalFileName, bgMarginal())
	square := f64s(2, 2, -2, 2, -2, -2, 2, -2)
	cfg := jobs.StateConfigurations{System: "dw4", Energy: "dw4", Particles: 4, Dim: 2, Selection: "the first",
		Training: &jobs.ConfigPair{Source: "dw4_train.parquet", Before: f64s(1, 2, 3, 4, 5, 6, 7, 8), EnergyBefore: f64(-3.5),
			After: square, EnergyAfter: f64(-25.792), StateID: -1, IsMinimum: true},
		Samples: []jobs.ConfigPair{
			{Row: 0, Before: square, EnergyBefore: f64(-20.5), After: square, EnergyAfter: f64(-25.312), StateID: 1, IsMinimum: true},
			{Row: 1, Before: f64s(0, 0, 1, 0, 0, 1, 9, 9), EnergyBefore: f64(123456), After: square, EnergyAfter: f64(-24.352), StateID: 2},
			{Row: 2, Before: square, EnergyBefore: nil, StateID: -1}, // not minimised
		}}
	writeUnitJSON(t, state, "100000000000000d", jobs.ConfigurationsFileName, cfg)
	data := jobs.StateConfigurations{System: "dw4", Energy: "dw4", Particles: 4, Dim: 2, Samples: cfg.Samples[:1]}
	writeUnitJSON(t, state, "3000000000000000", jobs.ConfigurationsFileName, data)

	r, _, page := renderState(t, state)
	if len(r.BG.Marginals) != 3 {
		t.Fatalf("%d marginal figures, want 3 (x, y, r of the RealNVP unit)", len(r.BG.Marginals))
	}
	for i, name := range []string{"x", "y", "r"} {
		f := r.BG.Marginals[i]
		svg := string(f.SVG)
		if !strings.Contains(f.Caption, "RealNVP (nBG) · DW4 dw4_mcmc · n=1000 · seed 1 · 2: ML+KL (λ 1.0:0.5) — "+name) ||
			!strings.Contains(f.Caption, "100 flow samples") || !strings.Contains(f.Caption, "centre of mass removed") {
			t.Errorf("marginal %s caption %q", name, f.Caption)
		}
		// Three step lines of 4 bins (8 points each) and their legend.
		if n := strings.Count(svg, "<polyline"); n != 3 {
			t.Errorf("marginal %s: %d lines, want 3", name, n)
		}
		for _, want := range []string{"flow samples", "training data", "test data", "outside the range: flow samples 3 of 100"} {
			if !strings.Contains(svg, want) {
				t.Errorf("marginal %s lacks %q", name, want)
			}
		}
	}
	if !strings.Contains(string(r.BG.Marginals[2].SVG), "‖x₁ − x̄‖") {
		t.Errorf("the radial marginal's axis is not ‖x₁ − x̄‖")
	}
	if len(r.BG.Configurations) != 2 {
		t.Fatalf("%d configuration figures, want 2 (RealNVP states, data states)", len(r.BG.Configurations))
	}
	svg := string(r.BG.Configurations[0].SVG)
	// Training + 3 samples before (4 pictures) and 3 minima (one sample was not minimised): 7 × 4 particles.
	if n := strings.Count(svg, "<circle"); n != 28 {
		t.Errorf("%d particle circles, want 28 (one per particle of 7 pictures)", n)
	}
	for _, want := range []string{"training data", "sample 3", "sampled", "minimised", "u = -3.50", "u = -25.79 · minimum",
		"u = -25.31 · state 1", "u = -24.35 · state 2 (saddle)", "u = 1.23e+05", "not minimised", "u = –"} {
		if !strings.Contains(svg, want) {
			t.Errorf("configurations figure lacks %q", want)
		}
	}
	if d := string(r.BG.Configurations[1].SVG); strings.Count(d, "<circle") != 8 || strings.Contains(d, "training data") {
		t.Errorf("data configurations: %d circles, want 8, and no training column", strings.Count(d, "<circle"))
	}
	for _, want := range []string{`id="bg-marginals"`, `id="bg-configurations"`, "Figure 1 f–h"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}

	// Older results (details without file names): no such figures, even with files present.
	old := writeResults(t, bgRows())
	writeUnitJSON(t, old, "100000000000000c", jobs.MarginalFileName, bgMarginal())
	r, _, page = renderState(t, old)
	if len(r.BG.Marginals) != 0 || len(r.BG.Configurations) != 0 || strings.Contains(string(page), `id="bg-marginals"`) {
		t.Errorf("old results: %d marginal and %d configuration figures, want none", len(r.BG.Marginals), len(r.BG.Configurations))
	}

	// A corrupt file is an error that names it.
	if err := os.WriteFile(filepath.Join(state, "units", "100000000000000c", jobs.MarginalFileName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Generate([]string{state}, filepath.Join(t.TempDir(), "r.html"), "", Options{Now: t0})
	if err == nil || !strings.Contains(err.Error(), jobs.MarginalFileName) {
		t.Errorf("corrupt marginal file: error %v, want one naming %s", err, jobs.MarginalFileName)
	}
}

func TestBGParticleGrid3D(t *testing.T) {
	c := jobs.StateConfigurations{System: "lj13", Energy: "lj13-twice", Particles: 3, Dim: 3,
		Samples: []jobs.ConfigPair{{Before: f64s(0, 0, 5, 1, 0, 5, 0, 1, 5), EnergyBefore: f64(-1), StateID: -1}}}
	f, err := configurationFigure(&c, bgFile{title: "LJ13"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(f.SVG), "<circle") != 3 || !strings.Contains(f.Caption, "projected on the first two of the 3 coordinates") {
		t.Errorf("3-D configuration: caption %q, %d circles", f.Caption, strings.Count(string(f.SVG), "<circle"))
	}
	if _, err := configurationFigure(&jobs.StateConfigurations{Dim: 3, Samples: []jobs.ConfigPair{{Before: f64s(1, 2)}}}, bgFile{}); err == nil {
		t.Error("no error for positions that are not 3-D configurations")
	}
}

// TestBoltzmannSeedsSummary: with a second seed of the RealNVP unit the generalisation table
// lists both seeds and a mean ± std row over them; a single-seed model gets no summary row.
func TestBoltzmannSeedsSummary(t *testing.T) {
	rows := bgRows()
	for _, r := range bgRows() {
		if !strings.HasPrefix(r.Unit, "100000000000000") {
			continue
		}
		r.Unit = "5" + r.Unit[1:]
		if r.ParentUnit != "" {
			r.ParentUnit = "5" + r.ParentUnit[1:]
		}
		r.UnitHash = strings.Repeat("5", 64)
		r.Seed = 2
		if r.Metric == "nll" || r.Metric == "test_nll" {
			r.Value += 2 // seed 2: train −9.5, test 352.5
		}
		if r.Metric == "ess_fraction" {
			r.Value = 0.03
		}
		rows = append(rows, r)
	}
	g := Build(rows, Options{Now: t0}).BG.Generalisation
	var summary []SimpleRow
	seeds := map[string]bool{}
	for _, row := range g.Rows {
		if row.Kind != "realnvp" || !strings.HasPrefix(row.Cells[2], "2:") {
			continue
		}
		if strings.Contains(row.Cells[1], "mean ± std") {
			summary = append(summary, row)
		} else {
			seeds[row.Cells[1][strings.LastIndex(row.Cells[1], "seed"):]] = true
		}
	}
	if !seeds["seed 1"] || !seeds["seed 2"] {
		t.Errorf("per-seed rows %v, want seed 1 and seed 2", seeds)
	}
	if len(summary) != 1 {
		t.Fatalf("%d RealNVP summary rows, want 1", len(summary))
	}
	c := summary[0].Cells
	// Train −11.5 and −9.5: mean −10.5, std √2; test 350.5 and 352.5; gap 362 both; ESS 1 % and 3 %.
	want := map[int]string{1: "DW4 dw4_mcmc · n=1000 · mean ± std over 2 seeds", 4: "-10.50 ± 1.41", 5: "351.50 ± 1.41",
		6: "362.00 ± 0.00", 9: "2.0% ± 1.4"}
	for col, w := range want {
		if c[col] != w {
			t.Errorf("summary column %s = %q, want %q", g.Columns[col], c[col], w)
		}
	}
	for _, row := range g.Rows {
		if row.Kind == "enf" && strings.Contains(row.Cells[1], "mean ± std") {
			t.Errorf("single-seed E-NF has a summary row %q", row.Cells)
		}
	}
}
