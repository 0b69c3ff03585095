package train

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	etlqm9 "github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
)

// smallQM9 returns the first n real QM9 test molecules with at most maxAtoms atoms.
func smallQM9(t *testing.T, n, maxAtoms int) []molecule.Molecule {
	t.Helper()
	mols, err := etlqm9.ReadNPZ(shared.Require(t, "data/qm9/cormorant_qm9_test.npz"), "test")
	if err != nil {
		t.Fatal(err)
	}
	var out []molecule.Molecule
	for _, m := range mols {
		if m.NAtoms() <= maxAtoms {
			out = append(out, m)
			if len(out) == n {
				break
			}
		}
	}
	if len(out) < n {
		t.Fatalf("only %d molecules of ≤ %d atoms", len(out), maxAtoms)
	}
	return out
}

func writeMoleculeTable(t *testing.T, path string, mols []molecule.Molecule) {
	t.Helper()
	w, err := table.NewMoleculeWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mols {
		if err := w.Write(&mols[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// tinyQM9Spec is a small molecule E-NF (float64, fixed-step solver) with p(M) fitted on train.
func tinyQM9Spec(t *testing.T, train *MoleculeDataset) ModelSpec {
	t.Helper()
	sizes, err := FitSizes(train)
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultQM9Spec(SystemQM9, nil, sizes)
	s.DType, s.Seed = "float64", 3
	s.EGNN.Hidden, s.EGNN.Layers = 8, 2
	s.Dequantizer.Hidden, s.Dequantizer.Layers = 8, 2
	s.CNF.Solver, s.CNF.Steps = "rk4", 3
	return s
}

func qm9Options(b Options, spec ModelSpec, tr, va, te *MoleculeDataset, dir string) Options {
	b.Spec, b.Train, b.Val, b.Test, b.OutDir = spec, tr, va, te, dir
	b.Schedule = Schedule{Epochs: 3, TestEvery: 1, Batch: 8}
	b.EvalBatch, b.LearningRate, b.Seed, b.Keep = 8, 3e-3, 5, 2
	b.ClipAdaptive, b.ClipQueueInit = true, 3000
	return b
}

// TestQM9TrainingLowersBoundAndResumes: a few QM9 training steps (dequantizer, ActNorm with its
// data-dependent initialisation, dynamics; adaptive clipping of the flow's gradients) lower the
// training bound, and a run interrupted mid-epoch and resumed ends exactly like an
// uninterrupted one.
func TestQM9TrainingLowersBoundAndResumes(t *testing.T) {
	be := testBackend(t)
	mols := smallQM9(t, 32, 10)
	tr, err := NewMoleculeDataset("train", mols[:16], nil)
	if err != nil {
		t.Fatal(err)
	}
	va, _ := NewMoleculeDataset("val", mols[16:24], nil)
	te, _ := NewMoleculeDataset("test", mols[24:], nil)
	spec := tinyQM9Spec(t, tr)
	refDir := t.TempDir()
	ref, err := Run(context.Background(), qm9Options(Options{Backend: be}, spec, tr, va, te, refDir))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ReadMetricsCSV(refDir)
	if err != nil || len(rows) != 3 {
		t.Fatalf("metrics %v %v", rows, err)
	}
	if !(rows[2].TrainNLL < rows[0].TrainNLL) || !(rows[2].ValNLL < rows[0].ValNLL) {
		t.Errorf("bound did not fall: train %.4f → %.4f, val %.4f → %.4f", rows[0].TrainNLL, rows[2].TrainNLL, rows[0].ValNLL, rows[2].ValNLL)
	}
	saved, err := LoadSpec(refDir)
	if err != nil || saved.Sizes == nil || saved.Sizes.Total() != 16 {
		t.Errorf("p(M) not stored with the model: %+v, %v", saved, err)
	}

	dir := t.TempDir()
	for i, after := range []int{3, 0} {
		o := qm9Options(Options{Backend: be}, spec, tr, va, te, dir)
		o.Resume = i > 0
		ctx, cancel := context.WithCancel(context.Background())
		if after > 0 {
			o.Train = &cancellingDataset{Dataset: tr, after: after, cancel: cancel}
		}
		res, err := Run(ctx, o)
		cancel()
		if after > 0 {
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("want ErrInterrupted, got %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.Steps != ref.Steps || math.Abs(res.BestTestNLL-ref.BestTestNLL) > 1e-9 {
			t.Errorf("resumed %+v, uninterrupted %+v", res, ref)
		}
	}
	got, _ := ReadMetricsCSV(dir)
	for i := range rows {
		if i >= len(got) || math.Abs(got[i].TrainNLL-rows[i].TrainNLL) > 1e-9 || math.Abs(got[i].ValNLL-rows[i].ValNLL) > 1e-9 {
			t.Fatalf("epoch %d: resumed %+v, uninterrupted %+v", i, got, rows)
		}
	}
}

// TestInitFromPublishedMatchesEval: `train --init-from` the imported published checkpoint
// evaluates, before its first step, the same bound as `enflow eval` on the same molecules with
// the same noise; a short fine-tune then stays finite.
func TestInitFromPublishedMatchesEval(t *testing.T) {
	be := testBackend(t)
	dir := shared.Require(t, "data/pretrained/en_flows_qm9")
	imp := filepath.Join(t.TempDir(), "enf_qm9")
	if _, err := ImportTorchQM9(filepath.Join(dir, "flow.npy"), filepath.Join(dir, "dequantizer.npy"),
		filepath.Join(dir, "args.pickle"), imp, "float32"); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	mols := smallQM9(t, 12, 9)
	for split, ms := range map[string][]molecule.Molecule{"train": mols[:4], "valid": mols[4:9], "test": mols[9:]} {
		writeMoleculeTable(t, MoleculeSplitPath(data, SystemQM9, split), ms)
	}
	var ds [3]*MoleculeDataset
	for i, split := range []string{"train", "val", "test"} {
		var err error
		if ds[i], err = LoadMoleculeSplit(data, SystemQM9, split, nil); err != nil {
			t.Fatal(err)
		}
	}
	spec, err := LoadModelSpec(imp)
	if err != nil {
		t.Fatal(err)
	}
	spec.CNF.Solver, spec.CNF.Steps = "rk4", 2 // cheap and deterministic given the noise
	out := t.TempDir()
	o := Options{Backend: be, Spec: *spec, Train: ds[0], Val: ds[1], Test: ds[2], OutDir: out, InitFrom: imp,
		Schedule: Schedule{Epochs: 1, TestEvery: 1, Batch: 4}, EvalBatch: 3, LearningRate: 2e-5, Seed: 9,
		ClipAdaptive: true, ClipQueueInit: 3000}
	var logBuf bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := EvaluateRun(context.Background(), EvalOptions{Backend: be, Dir: imp, Data: MoleculeSplitPath(data, SystemQM9, "valid"),
		Order: "data", Batch: 3, Seed: evalSeed(9, -1, "val"), Override: CNFOverrides{Solver: "rk4", Steps: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if math.IsNaN(res.InitValNLL) || math.Abs(res.InitValNLL-rep.NLL) > 1e-4*math.Abs(rep.NLL) {
		t.Errorf("initial validation bound %.6f, enflow eval %.6f", res.InitValNLL, rep.NLL)
	}
	if math.IsNaN(rep.NLL) || rep.N != 5 {
		t.Errorf("eval: %+v", rep)
	}
	if math.IsNaN(res.BestValNLL) || math.IsInf(res.BestValNLL, 0) || res.Recoveries != 0 {
		t.Errorf("fine-tune: %+v", res)
	}
	if math.Abs(res.BestValNLL-res.InitValNLL) > 5 {
		t.Errorf("one small fine-tune step moved the bound from %.3f to %.3f", res.InitValNLL, res.BestValNLL)
	}
	// The run warns exactly when no trained epoch beat the source's validation bound.
	warned := strings.Contains(logBuf.String(), "fine-tuning did not improve")
	if worse := res.BestValNLL > res.InitValNLL; warned != worse {
		t.Errorf("warning logged %v, but best val %.6f vs initial %.6f", warned, res.BestValNLL, res.InitValNLL)
	}
}

// TestModelPackagesDoNotImportPipeline: dependencies flow etl → gomlx_models → pipeline.
func TestModelPackagesDoNotImportPipeline(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", "github.com/enflow/enflow/gomlx_models/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	n := 0
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/enflow/enflow/pipeline") || strings.HasPrefix(p, "github.com/enflow/enflow/reports") {
			t.Errorf("a gomlx_models package depends on %s", p)
		}
		if strings.HasPrefix(p, "github.com/enflow/enflow/gomlx_models/") {
			n++
		}
	}
	if n < 10 {
		t.Errorf("go list saw only %d gomlx_models packages", n)
	}
}
