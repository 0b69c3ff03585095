package train

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// TestENFTrainsAndResumes runs the real E-NF (EGNN dynamics in a dopri5/adjoint CNF) on a handful
// of DW4 configurations with a tiny network: the training NLL must fall, the best checkpoint
// must reproduce the reported test NLL, and an interrupted-then-resumed run must end with the same
// parameters as an uninterrupted one.
func TestENFTrainsAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("E-NF training test skipped in -short mode")
	}
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 20, "val": 10, "test": 10})
	s := loadTiny(t, dataDir, 20)
	spec := DefaultSpec("dw4", 4, 2)
	spec.DType, spec.Seed = "float64", 5
	spec.EGNN.Hidden, spec.EGNN.Layers = 8, 2
	opts := func(out string) Options {
		return Options{
			Backend: b, Spec: spec, Train: s.train, Val: s.val, Test: s.test, OutDir: out,
			Schedule: Schedule{Epochs: 3, TestEvery: 2, Batch: 5}, EvalBatch: 10,
			LearningRate: 5e-3, Seed: 9, ValTrace: "hutchinson", TestTrace: "exact",
		}
	}
	refDir := t.TempDir()
	ref, err := Run(context.Background(), opts(refDir))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ReadMetricsCSV(refDir)
	if err != nil || len(rows) != 3 {
		t.Fatalf("metrics: %d rows, %v", len(rows), err)
	}
	if !(rows[2].TrainNLL < rows[0].TrainNLL) {
		t.Errorf("E-NF train NLL did not decrease: %g, %g, %g", rows[0].TrainNLL, rows[1].TrainNLL, rows[2].TrainNLL)
	}
	if rows[0].NFEForward <= 0 || rows[0].NFEBackward <= 0 || rows[0].NFEEval <= 0 {
		t.Errorf("NFE counts not recorded: %+v", rows[0])
	}
	if err := SaveRunInfo(refDir, &RunInfo{Dataset: "dw4", DataDir: dataDir, NData: 20}); err != nil {
		t.Fatal(err)
	}
	rep, err := EvaluateRun(context.Background(), EvalOptions{Backend: b, Dir: refDir, Split: "test", Batch: 10,
		Override: CNFOverrides{Trace: "exact"}})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(rep.NLL-ref.BestTestNLL) > 1e-9 {
		t.Errorf("eval of best checkpoint: test NLL %g, reported %g", rep.NLL, ref.BestTestNLL)
	}

	// Interrupt during epoch 1 (after 6 batches), resume, compare the final parameters.
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	o := opts(dir)
	o.Train = &cancellingDataset{Dataset: s.train, after: 6, cancel: cancel}
	if _, err := Run(ctx, o); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("want ErrInterrupted, got %v", err)
	}
	cancel()
	o = opts(dir)
	o.Resume = true
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != ref.Steps || math.Abs(res.BestTestNLL-ref.BestTestNLL) > 1e-9 {
		t.Errorf("resumed %+v, uninterrupted %+v", res, ref)
	}
	got, want := enfParams(t, dir), enfParams(t, refDir)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("%d vs %d parameters", len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("parameter %d: %.12g resumed, %.12g uninterrupted", i, got[i], want[i])
		}
	}
}

// enfParams returns all trainable parameters of a run's last checkpoint, flattened.
func enfParams(t *testing.T, dir string) []float64 {
	t.Helper()
	lm, err := LoadCheckpoint(dir, "last")
	if err != nil {
		t.Fatal(err)
	}
	m, err := BuildModel(testBackend(t), lm.Ctx, lm.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, v := range m.Variables() {
		val, err := v.Value()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tensors.MustCopyFlatData[float64](val)...)
	}
	return out
}
