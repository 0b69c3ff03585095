package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
)

// TestQM9TorchImportEvalSample runs import-torch on the published en_flows checkpoint, then eval
// (deterministic, against the PyTorch reference) and sample on the result.
func TestQM9TorchImportEvalSample(t *testing.T) {
	flow := shared.Require(t, "data", "pretrained", "en_flows_qm9", "flow.npy")
	deq := shared.Require(t, "data", "pretrained", "en_flows_qm9", "dequantizer.npy")
	args := shared.Require(t, "data", "pretrained", "en_flows_qm9", "args.pickle")
	npz := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	dir := t.TempDir()
	ck := filepath.Join(dir, "enf_qm9")

	code, out, errOut := runCLIForMetrics(t, "import-torch", "--flow", flow, "--dequantizer", deq, "--args", args, "--out", ck, "--json")
	if code != 0 {
		t.Fatalf("import-torch: exit %d: %s", code, errOut)
	}
	var imp map[string]any
	if err := json.Unmarshal([]byte(out), &imp); err != nil {
		t.Fatal(err)
	}
	if imp["flow_tensors"] != 88.0 || imp["dequantizer_tensors"] != 48.0 || imp["parameters"] != 294182.0 {
		t.Errorf("import summary %v", imp)
	}

	// Failures: nothing written, clear messages.
	bad := filepath.Join(dir, "bad")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--flow", deq, "--dequantizer", flow, "--args", args, "--out", bad}, 1, "unknown state-dict keys"},
		{[]string{"--flow", flow, "--dequantizer", deq, "--args", flow, "--out", bad}, 1, "a zip archive (a torch.save file?), not a pickled argparse.Namespace"},
		{[]string{"--flow", flow, "--dequantizer", deq, "--args", npz, "--out", bad}, 1, "not a pickled argparse.Namespace"},
		{[]string{"--flow", flow, "--dequantizer", deq, "--args", args, "--out", ck}, 1, "already holds a model"},
		{[]string{"--flow", flow, "--dequantizer", deq, "--out", bad}, 2, "--args are required"},
	} {
		code, _, errOut := runCLIForMetrics(t, append([]string{"import-torch"}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("import-torch %v: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(bad, "model.json")); err == nil {
		t.Error("a failed import wrote model.json")
	}

	// Eval of gdb 11 through a molecule table: deterministic, exact trace, 4 RK4 steps, float64;
	// PyTorch gives 54.761845005544 (see gomlx_models/qm9/nll_test.go).
	mols, err := qm9.ReadNPZ(npz, "test")
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "gdb11.parquet")
	writeMoleculeTableForMetrics(t, data, []molecule.Molecule{mols[0]})
	perMol := filepath.Join(dir, "per_molecule.csv")
	code, out, errOut = runCLIForMetrics(t, "eval", "--checkpoint", ck, "--data", data, "--deterministic", "--solver", "rk4",
		"--steps", "4", "--trace", "exact", "--dtype", "float64", "--per-molecule", perMol, "--quiet", "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errOut)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatal(err)
	}
	if nll, _ := ev["nll"].(float64); math.Abs(nll-54.761845005544) > 1e-5 || ev["n"] != 1.0 || ev["dtype"] != "float64" {
		t.Errorf("eval summary %v", ev)
	}
	if csv, err := os.ReadFile(perMol); err != nil || !strings.HasPrefix(strings.Split(string(csv), "\n")[1], "11,7,54.761845") {
		t.Errorf("per-molecule CSV %q (%v)", csv, err)
	}

	// Sample: 3 molecules with a cheap fixed-step solver; the table must read back and be
	// accepted by `metrics stability`.
	samples := filepath.Join(dir, "samples.parquet")
	code, out, errOut = runCLIForMetrics(t, "sample", "--checkpoint", ck, "--n", "3", "--seed", "5", "--solver", "rk4", "--steps", "3",
		"--out", samples, "--quiet", "--json")
	if code != 0 {
		t.Fatalf("sample: exit %d: %s", code, errOut)
	}
	var sm map[string]any
	if err := json.Unmarshal([]byte(out), &sm); err != nil {
		t.Fatal(err)
	}
	if sm["n"] != 3.0 || sm["failed"] != 0.0 {
		t.Errorf("sample summary %v", sm)
	}
	back, err := table.ReadMolecules(samples)
	if err != nil || len(back) != 3 {
		t.Fatalf("read back %d molecules: %v", len(back), err)
	}
	ids := map[int64]bool{}
	for _, m := range back {
		ids[m.ID] = true
	}
	if !ids[0] || !ids[1] || !ids[2] { // written batch by batch; the id is the draw index
		t.Errorf("sample ids %v, want 0, 1, 2", ids)
	}
	if code, _, errOut := runCLIForMetrics(t, "metrics", "stability", "--in", samples); code != 0 {
		t.Errorf("metrics stability on samples: exit %d: %s", code, errOut)
	}
	// A bad override is a usage error.
	if code, _, errOut := runCLIForMetrics(t, "sample", "--checkpoint", ck, "--n", "1", "--solver", "rk4", "--out", samples); code != 2 || !strings.Contains(errOut, "needs --steps") {
		t.Errorf("rk4 without --steps: exit %d, %q", code, errOut)
	}
}
