package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/internal/shared"
)

// TestDemoMolecules runs the demo's molecule steps in their smallest configuration: the
// published QM9 checkpoint imported, one molecule sampled on SimpleGo, its stability, its
// validity (or the note that RDKit is missing), the SDF and the HTML page; DW4 training and the
// batch job are skipped (--steps 0, --jobs ""), the ETL and data metrics run as always.
func TestDemoMolecules(t *testing.T) {
	shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	shared.Require(t, "data", "pretrained", "en_flows_qm9", "flow.npy")
	out := t.TempDir()
	code, stdout, stderr := runCLIForMetrics(t, "demo", "--shared", shared.Dir(), "--out", out,
		"--molecules", "1", "--steps", "0", "--jobs", "", "--backend", "go")
	if code != 0 {
		t.Fatalf("demo: exit %d:\n%s", code, stderr)
	}
	blob, err := os.ReadFile(filepath.Join(out, "demo_summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]any
	if err := json.Unmarshal(blob, &all); err != nil {
		t.Fatal(err)
	}
	r := map[string]map[string]any{} // the steps' summaries (and "engines")
	for k, v := range all {
		if m, ok := v.(map[string]any); ok {
			r[k] = m
		}
	}
	for _, step := range []string{"etl_qm9", "import_qm9_published", "sample_qm9", "stability_qm9_samples",
		"validity_qm9_samples", "export_qm9_sdf", "molecules_html", "stability_qm9_test", "js_qm9_19_atoms"} {
		w, ok := r[step]["step_wall_s"].(float64)
		if !ok {
			t.Errorf("demo_summary.json: step %s missing or without step_wall_s: %v", step, r[step])
		}
		t.Logf("%-22s %6.2f s", step, w)
	}
	if _, ok := r["train_dw4"]; ok {
		t.Error("--steps 0 still trained")
	}
	if s := r["sample_qm9"]; s["n"] != 1.0 || s["engine"] != "go (SimpleGo)" || s["failed"] != 0.0 {
		t.Errorf("sample_qm9 %v", s)
	}
	st := r["stability_qm9_samples"]
	if st["n_molecules"] != 1.0 {
		t.Errorf("stability of the samples: %v", st)
	}
	if a, ok := st["atom_stable"].(float64); !ok || a < 0 || a > 1 {
		t.Errorf("stability of the samples: atom_stable %v", st["atom_stable"])
	}
	v := r["validity_qm9_samples"]
	if skipped, _ := v["skipped"].(bool); skipped {
		if reason, _ := v["reason"].(string); !strings.Contains(reason, "setup-py") {
			t.Errorf("validity skipped without a useful reason: %v", v)
		}
		if !strings.Contains(stdout, "validity: skipped") {
			t.Errorf("summary does not say validity was skipped:\n%s", stdout)
		}
	} else {
		if v["n_molecules"] != 1.0 || v["rdkit_version"] == nil {
			t.Errorf("validity of the samples: %v", v)
		}
		if !strings.Contains(stdout, "RDKit validity ") {
			t.Errorf("summary has no validity line:\n%s", stdout)
		}
	}
	sdf := filepath.Join(out, "qm9_samples.sdf")
	if r["export_qm9_sdf"]["out"] != sdf || r["export_qm9_sdf"]["molecules"] != 1.0 {
		t.Errorf("export_qm9_sdf %v", r["export_qm9_sdf"])
	}
	if b, err := os.ReadFile(sdf); err != nil || !strings.Contains(string(b), "M  END") || strings.Count(string(b), "$$$$") != 1 {
		t.Errorf("SDF %s (%v):\n%s", sdf, err, b)
	}
	html := filepath.Join(out, "molecules.html")
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "<svg") {
		t.Errorf("HTML %s has no picture (%v)", html, err)
	}
	if h := r["molecules_html"]; h["drawn"] != 1.0 || h["data_molecules"] == nil {
		t.Errorf("molecules_html %v", h)
	}
	if e := r["engines"]; e["molecules"] != "go" || e["particles"] != "go" {
		t.Errorf("engines %v", e)
	}
	for _, want := range []string{"QM9 molecules sampled from the published E-NF checkpoint: 1 on go (SimpleGo)",
		"atom stability ", "molecule stability ", "SDF: " + sdf, "pictures: file://", "QM9 test split: 13083 molecules"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
}

// TestDemoValidityWithoutRDKit: without the venv the validity step is recorded as skipped
// with the reason, the summary says so, and the demo goes on.
func TestDemoValidityWithoutRDKit(t *testing.T) {
	t.Setenv("ENFLOW_PYTHON", filepath.Join(t.TempDir(), "no-python"))
	var stdout, stderr bytes.Buffer
	env := &Env{Stdout: &stdout, Stderr: &stderr}
	m, err := demoValidity(context.Background(), env, "unused.parquet")
	if err != nil {
		t.Fatal(err)
	}
	if m["skipped"] != true || !strings.Contains(m["reason"].(string), "./just setup-py") {
		t.Errorf("validity step %v", m)
	}
	if !strings.Contains(stderr.String(), "validity skipped") {
		t.Errorf("no note on stderr: %q", stderr.String())
	}
	printDemoHighlights(env, map[string]any{"wall_s": 1.0, "sample_qm9": map[string]any{"n": 2.0},
		"validity_qm9_samples": m}, "demo_summary.json")
	if !strings.Contains(stdout.String(), "validity: skipped, RDKit is not set up (./just setup-py installs it)") {
		t.Errorf("summary:\n%s", stdout.String())
	}
}

// TestDemoUsage: a negative --molecules is a usage error.
func TestDemoUsage(t *testing.T) {
	code, _, stderr := runCLIForMetrics(t, "demo", "--shared", t.TempDir(), "--molecules", "-1")
	if code != 2 || !strings.Contains(stderr, "--molecules must be ≥ 0") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}
