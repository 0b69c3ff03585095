package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/jobs"
)

func TestJobsSpecArg(t *testing.T) {
	tests := []struct {
		args     []string
		spec     string
		rest     []string
		errorful bool
	}{
		{[]string{"a.toml", "--json"}, "a.toml", []string{"--json"}, false},
		{[]string{"--json", "--state", "s", "a.toml"}, "a.toml", []string{"--json", "--state", "s"}, false},
		{[]string{"a.toml"}, "a.toml", []string{}, false},
		{[]string{"--help"}, "", []string{"--help"}, false},
		{[]string{}, "", nil, true},
		{[]string{"--json"}, "", nil, true},
	}
	for _, tc := range tests {
		spec, rest, err := jobsSpecArg(tc.args)
		if (err != nil) != tc.errorful || spec != tc.spec || (!tc.errorful && !reflect.DeepEqual(rest, tc.rest)) {
			t.Errorf("jobsSpecArg(%q) = %q, %q, %v", tc.args, spec, rest, err)
		}
	}
}

func TestJobCapabilities(t *testing.T) {
	c := JobCapabilities()
	for _, tc := range []struct {
		ds, model          string
		dsOK, mOK, trainOK bool
	}{
		{"dw4", "enf", true, true, true},
		{"lj13", "gaussian", true, true, true},
		{"qm9-positional", "enf", true, true, true},
		{"qm9-positional", "gnf-att", true, true, true},
		{"qm9", "enf", true, true, true},
		{"molecules", "enf", true, true, true},
		{"qm9", "gnf-att", true, true, false},
		{"molecules", "kernel", true, true, false},
		{"qm9", "no-such-model", true, false, false},
		{"md17", "enf", false, true, true},
	} {
		if err := c.Dataset(tc.ds); (err == nil) != tc.dsOK {
			t.Errorf("dataset %s: %v", tc.ds, err)
		} else if err != nil && !strings.Contains(err.Error(), "dw4, lj13, qm9-positional, qm9 and molecules") {
			t.Errorf("dataset %s: unclear error %v", tc.ds, err)
		}
		if err := c.Model(tc.model); (err == nil) != tc.mOK {
			t.Errorf("model %s: %v", tc.model, err)
		}
		if !tc.mOK {
			continue
		}
		if err := c.Train(tc.ds, tc.model); (err == nil) != tc.trainOK {
			t.Errorf("train %s on %s: %v", tc.model, tc.ds, err)
		} else if err != nil && !strings.Contains(err.Error(), "molecule E-NF only") {
			t.Errorf("train %s on %s: unclear error %v", tc.model, tc.ds, err)
		}
	}
}

// TestJobsReportExportCLI runs a tiny spec in-process through the command line, then status,
// export and report on its state directory.
func TestJobsReportExportCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	rng := rand.New(rand.NewPCG(1, 2))
	for split, n := range map[string]int{"train": 100, "val": 20, "test": 20} {
		w, err := table.NewConfigWriter(filepath.Join(data, "dw4_"+split+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			pos := make([]float64, 8)
			for k := range pos {
				pos[k] = 2 * rng.NormFloat64()
			}
			particles.RemoveMean(pos, 2)
			e, _ := particles.DW4.Energy(pos)
			if err := w.Write(&particles.Config{ID: int64(i), Split: split, System: "dw4", Positions: pos, Energy: e}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	spec := filepath.Join(dir, "tiny.toml")
	text := `
name = "tiny"
[train]
epochs = 2
batch = 10
test-every = 1
eval-n = 20
eval-batch = 10
[[experiment]]
dataset = "dw4"
models = ["gaussian"]
n_data = [100, 40]
[[experiment]]
dataset = "qm9"
models = ["gnf-att"]
n_data = [13832]
[[evaluation]]
kind = "energy"
n = 32
`
	if err := os.WriteFile(spec, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	t.Setenv(jobs.CodeVersionEnv, "cli-test")
	run := func(args ...string) (string, int) { return runMainLogged(t, args...) }
	common := []string{"--data", data, "--state", state}
	// The QM9 GNF-att unit is unsupported (QM9 with atom types trains the E-NF only): exit 1
	// with a clear reason, the rest runs.
	out, code := run(append([]string{"jobs", "run", spec, "--in-process", "--json"}, common...)...)
	if code != 1 {
		t.Fatalf("jobs run with an unsupported unit: exit %d, want 1", code)
	}
	var sum jobs.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("jobs run --json: %v\n%s", err, out)
	}
	if sum.Count(jobs.OutcomeRan) != 4 || sum.Count(jobs.OutcomeUnsupported) != 1 {
		t.Errorf("counts %v, want 4 ran and 1 unsupported", sum.Counts)
	}
	if _, code := run(append([]string{"jobs", "run", spec, "--in-process", "--skip-unsupported"}, common...)...); code != 0 {
		t.Errorf("rerun with --skip-unsupported: exit %d", code)
	}
	out, code = run(append([]string{"jobs", "status", spec}, common...)...)
	if code != 0 || !strings.Contains(out, "done 4") || !strings.Contains(out, "unsupported 1") {
		t.Errorf("jobs status (exit %d):\n%s", code, out)
	}
	for _, ext := range []string{"parquet", "arrow"} {
		out, code = run("export", "--results", state, "--out", filepath.Join(dir, "r."+ext), "--json")
		if code != 0 || !strings.Contains(out, `"units":4`) {
			t.Errorf("export results %s (exit %d): %s", ext, code, out)
		}
	}
	out, code = run("export", "--samples", state, "--out", filepath.Join(dir, "s.parquet"), "--json")
	if code != 0 || !strings.Contains(out, `"rows":64`) {
		t.Errorf("export samples (exit %d): %s", code, out)
	}
	if _, code := run("export", "--results", state, "--samples", state, "--out", "x.parquet"); code != 2 {
		t.Errorf("export with both --results and --samples: exit %d, want 2", code)
	}
	htmlPath, mdPath := filepath.Join(dir, "r.html"), filepath.Join(dir, "r.md")
	out, code = run("report", "--results", filepath.Join(dir, "r.arrow"), "--out", htmlPath, "--md", mdPath, "--json")
	if code != 0 || !strings.Contains(out, `"filled_cells":1`) {
		t.Errorf("report (exit %d): %s", code, out)
	}
	md, err := os.ReadFile(mdPath)
	if err != nil || !bytes.Contains(md, []byte("*Gaussian (stand-in)* | – / **")) {
		t.Errorf("report Markdown: %v\n%s", err, md)
	}
}

// writeDW4Splits writes dir/dw4_{train,val,test}.parquet with random mean-free
// configurations and their energies.
func writeDW4Splits(t *testing.T, dir string, sizes map[string]int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	id := int64(0)
	for _, split := range []string{"train", "val", "test"} {
		w, err := table.NewConfigWriter(filepath.Join(dir, "dw4_"+split+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		for range sizes[split] {
			pos := make([]float64, 8)
			for k := range pos {
				pos[k] = 1.5 * rng.NormFloat64()
			}
			particles.RemoveMean(pos, 2)
			e, _ := particles.DW4.Energy(pos)
			if err := w.Write(&particles.Config{ID: id, Split: split, System: "dw4", Positions: pos, Energy: e}); err != nil {
				t.Fatal(err)
			}
			id++
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJobsChangedSpecReportCLI edits a two-stage Boltzmann-generator spec between two runs
// (the finetune epochs, as when the nBG experiment was changed): the report of the state
// directory shows only the units of the current spec and says how many it left out,
// --all-units shows the old ones too, jobs status lists them and jobs prune moves them aside.
func TestJobsChangedSpecReportCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeDW4Splits(t, filepath.Join(data, "bg"), map[string]int{"train": 40, "val": 20, "test": 20})
	text := `
name = "bg-changed"
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
n_data = [40]
finetune = { objective = "ml+kl", lambda = "1.0:0.5", epochs = 2, kl-samples = 8 }

[[evaluation]]
kind = "nll"
split = "train"
`
	spec := filepath.Join(dir, "bg-changed.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(spec, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	t.Setenv(jobs.CodeVersionEnv, "cli-test")
	t.Setenv("GOMLX_BACKEND", "go")
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("enflow %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	common := []string{"--data", data, "--state", state}
	runSpec := func() {
		t.Helper()
		var sum jobs.Summary
		if err := json.Unmarshal([]byte(run(append([]string{"jobs", "run", spec, "--in-process", "--json"}, common...)...)), &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Count(jobs.OutcomeRan) != 2 {
			t.Fatalf("jobs run counts %v, want 2 ran", sum.Counts)
		}
	}
	write(text)
	runSpec()
	write(strings.Replace(text, "epochs = 2, kl-samples", "epochs = 3, kl-samples", 1))
	runSpec()

	status := run(append([]string{"jobs", "status", spec}, common...)...)
	for _, want := range []string{"done 2", "2 stale unit(s)", "left out", "enflow jobs prune " + spec + " moves the 2 "} {
		if !strings.Contains(status, want) {
			t.Errorf("jobs status lacks %q:\n%s", want, status)
		}
	}
	report := func(extra ...string) (md string, sum map[string]any) {
		t.Helper()
		mdPath := filepath.Join(dir, "r.md")
		out := run(append([]string{"report", "--results", state, "--out", filepath.Join(dir, "r.html"), "--md", mdPath, "--json"}, extra...)...)
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("report --json: %v\n%s", err, out)
		}
		b, err := os.ReadFile(mdPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b), sum
	}
	const stage1Row = "| RealNVP (nBG) | DW4 bg · n=40 · seed 1 | 1: ML |"
	md, sum := report()
	if n := strings.Count(md, stage1Row); n != 1 {
		t.Errorf("report: %d RealNVP units in the Boltzmann-generator table, want the current one only:\n%s", n, md)
	}
	if !strings.Contains(md, "*Left out: ") || !strings.Contains(md, " of 2 stale units") || sum["stale_units_left_out"] != 2.0 {
		t.Errorf("report does not say it left out 2 stale units (summary %v):\n%s", sum, md)
	}
	md, sum = report("--all-units")
	if n := strings.Count(md, stage1Row); n != 2 || !strings.Contains(md, "*Included with --all-units: ") ||
		!strings.Contains(md, "` (stale) |") || sum["stale_units_included"] != 2.0 {
		t.Errorf("report --all-units: %d RealNVP units (want 2), summary %v:\n%s", n, sum, md)
	}

	// export --results leaves out the same stale rows (and says so); --all-units puts them back.
	exportRows := func(extra ...string) (rows int, sum map[string]any) {
		t.Helper()
		path := filepath.Join(dir, "r.parquet")
		out := run(append([]string{"export", "--results", state, "--out", path, "--json"}, extra...)...)
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("export --json: %v\n%s", err, out)
		}
		got, err := jobs.ReadResultsFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return len(got), sum
	}
	curRows, sum := exportRows()
	allRows, sumAll := exportRows("--all-units")
	if sum["stale_units_left_out"] != 2.0 || sumAll["stale_units_included"] != 2.0 || sum["stale_rows"] == nil ||
		allRows != curRows+int(sum["stale_rows"].(float64)) {
		t.Errorf("export: %d rows (summary %v), --all-units %d rows (summary %v)", curRows, sum, allRows, sumAll)
	}
	if out := run(append([]string{"jobs", "prune", spec, "--dry-run"}, common...)...); !strings.Contains(out, "2 stale units would be moved") {
		t.Errorf("jobs prune --dry-run:\n%s", out)
	}
	if out := run(append([]string{"jobs", "prune", spec}, common...)...); !strings.Contains(out, "2 stale units moved to "+filepath.Join(state, jobs.PrunedDirName)) {
		t.Errorf("jobs prune:\n%s", out)
	}
	md, sum = report()
	if strings.Count(md, stage1Row) != 1 || strings.Contains(md, "stale") || sum["stale_units_left_out"] != nil {
		t.Errorf("report after prune still mentions stale units (summary %v):\n%s", sum, md)
	}
	if status := run(append([]string{"jobs", "status", spec}, common...)...); strings.Contains(status, "stale") {
		t.Errorf("jobs status after prune:\n%s", status)
	}
}

// runMainLogged runs the enflow command line in-process and returns its stdout and exit
// code, logging stderr when the exit code is not 0.
func runMainLogged(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	if code != 0 {
		t.Logf("enflow %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	}
	return out.String(), code
}
