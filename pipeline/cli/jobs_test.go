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
		ds, model string
		dsOK, mOK bool
	}{
		{"dw4", "enf", true, true},
		{"lj13", "gaussian", true, true},
		{"qm9-positional", "enf", true, true},
		{"qm9", "no-such-model", false, false},
	} {
		if err := c.Dataset(tc.ds); (err == nil) != tc.dsOK {
			t.Errorf("dataset %s: %v", tc.ds, err)
		} else if err != nil && !strings.Contains(err.Error(), "dw4, lj13 and qm9-positional") {
			t.Errorf("dataset %s: unclear error %v", tc.ds, err)
		}
		if err := c.Model(tc.model); (err == nil) != tc.mOK {
			t.Errorf("model %s: %v", tc.model, err)
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
models = ["enf"]
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
	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, &out, &errb)
		if code != 0 {
			t.Logf("enflow %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
		}
		return out.String(), code
	}
	common := []string{"--data", data, "--state", state}
	// The QM9 training unit is unsupported: exit 1 with a clear reason, the rest runs.
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
