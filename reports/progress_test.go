package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/enflow/enflow/pipeline/jobs"
	"github.com/enflow/enflow/pipeline/train"
)

// epochRow is one line of a test run's metrics.csv.
type epochRow struct {
	epoch                    int
	val, test, bestVal, best float64 // NaN: not evaluated at this epoch
}

// writeRunUnit writes the unit directory of a training unit without results, as an
// interrupted `enflow jobs run` leaves it: unit.json, attempts.jsonl, run/run.json with the
// planned schedule, run/model.json and run/metrics.csv.
func writeRunUnit(t *testing.T, state, id, dataset, model string, nData, seed int64, planned int, epochs []epochRow) {
	t.Helper()
	dir := filepath.Join(state, "units", id)
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"schema": "enflow.jobs.unit/v1", "id": id, "hash": strings.Repeat(id[:1], 64), "spec": "spec",
		"unit": map[string]any{"kind": "train", "dataset": dataset, "model": model, "n_data": nData, "seed": seed,
			"backend": "", "extra_args": []string{}, "train": map[string]any{"eval-n": 1000}},
		"code": map[string]any{"version": "git:0123456789abcdef", "git_rev": "0123456789abcdef"}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	attempts := `{"attempt":1,"host":"vm","pid":1,"started":"2026-11-23T11:00:00Z","outcome":"started"}` + "\n" +
		`{"attempt":1,"host":"vm","pid":1,"started":"2026-11-23T11:00:00Z","ended":"2026-11-23T11:30:00Z","outcome":"interrupted"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "unit.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "attempts.jsonl"), []byte(attempts), 0o644); err != nil {
		t.Fatal(err)
	}
	info := &train.RunInfo{Dataset: dataset, NData: int(nData), Seed: uint64(seed),
		Schedule: train.Schedule{Epochs: planned, TestEvery: 1, Batch: 100}}
	if err := train.SaveRunInfo(run, info); err != nil {
		t.Fatal(err)
	}
	spec := train.DefaultSpec(dataset, 4, 2) // DW4: 4 particles in 2-D
	spec.Kind = model
	if err := train.SaveSpec(run, &spec); err != nil {
		t.Fatal(err)
	}
	cols := train.MetricsColumns()
	var csv strings.Builder
	csv.WriteString(strings.Join(cols, ",") + "\n")
	f := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	for _, e := range epochs {
		// epoch, step, train_nll, train_loss, val_nll, test_nll, best_val_nll, best_test_nll,
		// wall_s, nfe_forward, nfe_backward, nfe_eval, lr, grad_norm; the rest empty.
		rec := []string{strconv.Itoa(e.epoch), strconv.Itoa(e.epoch + 1), "9", "9", f(e.val), f(e.test), f(e.bestVal), f(e.best),
			"1", "14", "20", "0", "0.0005", "1"}
		for len(rec) < len(cols) {
			rec = append(rec, "")
		}
		csv.WriteString(strings.Join(rec, ",") + "\n")
	}
	if err := os.WriteFile(filepath.Join(run, "metrics.csv"), []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mdCell returns the text of column col (0: the model) of the row of model in the Markdown
// table under the heading that starts with caption.
func mdCell(t *testing.T, md []byte, caption, model string, col int) string {
	t.Helper()
	i := bytes.Index(md, []byte("\n## "+caption))
	if i < 0 {
		t.Fatalf("Markdown has no table %q", caption)
	}
	section := md[i+1:]
	if j := bytes.Index(section[3:], []byte("\n## ")); j >= 0 {
		section = section[:j+3]
	}
	for _, line := range strings.Split(string(section), "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) > col && strings.TrimSpace(cells[0]) == model {
			return strings.TrimSpace(cells[col])
		}
	}
	t.Fatalf("table %q has no row %q", caption, model)
	return ""
}

// TestReportProgressAndConventions: a state directory with finished units (one seed; two
// seeds; an older row with nll_dims but no value without the normaliser; a run stopped
// before the paper's epochs), a unit interrupted mid-run (no results part, its run/metrics.csv
// only), an interrupted extra seed beside finished ones and a stale interrupted unit. Every
// Table 1 cell shows both conventions, the seeds and the epochs of the paper's schedule;
// partial cells are marked.
func TestReportProgressAndConventions(t *testing.T) {
	dw4Off := 3 * math.Log(2*math.Pi) // ½·(N−1)·D·ln 2π with (N−1)·D = 6
	var rows []jobs.Row
	add := func(unit, ds, model string, nData, seed int64, m map[string]float64) {
		rows = append(rows, rowsFor(unit, "train", ds, model, "", nData, seed, t0, m, nil)...)
	}
	add("a000000000000001", "dw4", "enf", 100, 1, map[string]float64{"test_nll": 8.40, "test_nll_without_normaliser": 8.40 - dw4Off,
		"nll_dims": 6, "epochs": 1000, "best_epoch": 980})
	add("a000000000000002", "dw4", "enf", 1000, 1, map[string]float64{"test_nll": 8.00, "test_nll_without_normaliser": 8.00 - dw4Off,
		"nll_dims": 6, "epochs": 300})
	add("a000000000000003", "dw4", "enf", 1000, 2, map[string]float64{"test_nll": 8.20, "test_nll_without_normaliser": 8.20 - dw4Off,
		"nll_dims": 6, "epochs": 300})
	add("a000000000000004", "lj13", "kernel", 10, 1, map[string]float64{"test_nll": 30.00, "nll_dims": 36, "epochs": 250})
	state := writeResults(t, rows)

	nan := math.NaN()
	writeRunUnit(t, state, "b000000000000001", "dw4", "enf", 10000, 1, 50, []epochRow{
		{0, 10.0, 10.1, 10.0, 10.1}, {1, 9.5, 9.13, 9.5, 9.13}, {2, 9.8, 9.9, 9.5, 9.13}})
	writeRunUnit(t, state, "b000000000000002", "dw4", "enf", 1000, 3, 300, []epochRow{
		{0, 9.0, 8.7, 9.0, 8.7}, {1, nan, nan, 9.0, 8.7}})
	writeRunUnit(t, state, "b000000000000003", "dw4", "enf", 100000, 1, 6, []epochRow{{0, 9.9, 9.9, 9.9, 9.9}})
	// The manifest lists every unit but the last interrupted one (stale: its spec changed).
	m := &jobs.Manifest{Schema: jobs.ManifestSchema, Spec: "spec"}
	for _, id := range []string{"a000000000000001", "a000000000000002", "a000000000000003", "a000000000000004",
		"b000000000000001", "b000000000000002"} {
		m.Units = append(m.Units, jobs.UnitRef{ID: id, Kind: "train"})
	}
	if err := jobs.WriteManifest(state, m); err != nil {
		t.Fatal(err)
	}

	r, md, page := renderState(t, state)
	const with, without = "Table 1 — test NLL", "Table 1 without the Gaussian normaliser"
	tests := []struct {
		name, table, model string
		col                int
		want               string
	}{
		{"finished, one seed", with, "E-NF", 1, "8.31 / **8.40** (1 seed, 1000/1000 ep.)"},
		{"finished, one seed, without the normaliser", without, "E-NF", 1, "2.80 / **2.89** (1 seed, 1000/1000 ep.)"},
		{"two seeds; an interrupted third left out of the mean", with, "E-NF", 2, "8.15 / **8.10 ± 0.14** (2 seeds + 1 partial, 300/300 ep.)"},
		{"two seeds without the normaliser", without, "E-NF", 2, "2.64 / **2.59 ± 0.14** (2 seeds + 1 partial, 300/300 ep.)"},
		{"interrupted mid-run: best validation so far, partial", with, "E-NF", 3, `7.69 / **9.13**\* (1 seed, 3/50 ep.)`},
		{"interrupted mid-run, without the normaliser", without, "E-NF", 3, `2.18 / **3.62**\* (1 seed, 3/50 ep.)`},
		{"stale interrupted unit left out", with, "E-NF", 4, "7.48 / –"},
		{"stopped before the paper's epochs", with, "Kernel dynamics", 5, "35.03 / **30.00** (1 seed, 250/500 ep.)"},
		{"without the normaliser derived from nll_dims", without, "Kernel dynamics", 5, "1.95 / **-3.08** (1 seed, 250/500 ep.)"},
		{"empty cell", without, "GNF", 1, "6.42 / –"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mdCell(t, md, tc.table, tc.model, tc.col); got != tc.want {
				t.Errorf("cell %q, want %q", got, tc.want)
			}
		})
	}

	for _, want := range []string{
		"2 unfinished training unit(s) shown as partial", // the stale one is not counted
		"* partial: no unit of the cell has finished",
		"- DW4 data: our cells were trained and evaluated on the shipped DEM files of Klein, Krämer & Noé (2023",
		"- LJ13 data: our cells were trained and evaluated on the shipped DEM files",
		"No published NLL for these DEM files is known to us",
		"(DW4 5.51, LJ13 33.08 nats)",
		"| `b000000000000001` (partial) | spec | train | DW4 | E-NF | 10000 | 1 | no result yet; best-validation test_nll 9.13 after 3/50 ep. |",
	} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	if bytes.Contains(md, []byte("b000000000000003")) {
		t.Errorf("Markdown shows the stale interrupted unit")
	}
	if r.PartialUnits != 2 {
		t.Errorf("%d partial units, want 2", r.PartialUnits)
	}
	cellOf := func(model string, col int) Cell { return findRow(t, r.Tables[0], model).Cells[col] }
	if got := cellOf("enf", 1).Title; !strings.Contains(got, "not in the mean, without results yet: unit b000000000000002: 2 epochs") {
		t.Errorf("two-seed cell title %q", got)
	}
	if got := cellOf("enf", 1).Title; !strings.Contains(got, "partial: no results yet, best validation epoch 0 so far") {
		t.Errorf("two-seed cell title %q", got)
	}
	if got := cellOf("enf", 1); got.Class != "better" || got.Mark != "" {
		t.Errorf("two-seed cell %+v", got)
	}

	// HTML: the partial cell shows its mark and, on a second line, seeds and fraction.
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	_, cells, classes := tableCells(t, doc, "table1-table")
	if got, want := cells["enf"][6], "9.13*1 seed, 3/50 ep."; got != want {
		t.Errorf("HTML partial cell %q, want %q", got, want)
	}
	if !strings.Contains(classes["enf"][6], "worse") {
		t.Errorf("HTML partial cell classes %q", classes["enf"][6])
	}
	if _, cells, _ := tableCells(t, doc, "table1-without-normaliser-table"); cells["enf"][1] != fmt.Sprintf("%.2f", 8.31-dw4Off) {
		t.Errorf("HTML Table 1 without the normaliser, paper cell %q", cells["enf"][1])
	}
}
