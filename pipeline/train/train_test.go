package train

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func testBackend(t *testing.T) backends.Backend {
	t.Helper()
	b, err := backend.New("go")
	if err != nil {
		t.Fatalf("backend: %v", err)
	}
	t.Cleanup(b.Finalize)
	return b
}

// writeTinyDW4 writes DIR/dw4_{train,val,test}.parquet with mean-free Gaussian configurations
// of standard deviation 2 (the stand-in model starts at 1, so the NLL has room to fall).
func writeTinyDW4(t *testing.T, dir string, sizes map[string]int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	id := int64(0)
	for _, split := range []string{"train", "val", "test"} {
		w, err := table.NewConfigWriter(SplitPath(dir, "dw4", split))
		if err != nil {
			t.Fatal(err)
		}
		for range sizes[split] {
			pos := make([]float64, particles.DW4.Flat())
			for i := range pos {
				pos[i] = 2 * rng.NormFloat64()
			}
			particles.RemoveMean(pos, particles.DW4.Dim)
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

type splits struct{ train, val, test *ParticleDataset }

func loadTiny(t *testing.T, dir string, nData int) splits {
	t.Helper()
	var s splits
	var err error
	if s.train, err = LoadParticleSplit(dir, particles.DW4, "train", dtypes.Float64); err != nil {
		t.Fatal(err)
	}
	if s.train, err = s.train.Head(nData); err != nil {
		t.Fatal(err)
	}
	if s.val, err = LoadParticleSplit(dir, particles.DW4, "val", dtypes.Float64); err != nil {
		t.Fatal(err)
	}
	if s.test, err = LoadParticleSplit(dir, particles.DW4, "test", dtypes.Float64); err != nil {
		t.Fatal(err)
	}
	return s
}

func gaussianSpec() ModelSpec {
	s := DefaultSpec("dw4", 4, 2)
	s.Kind, s.DType, s.Seed = GaussianKind, "float64", 3
	return s
}

func baseOptions(b backends.Backend, s splits, out string) Options {
	return Options{
		Backend: b, Spec: gaussianSpec(), Train: s.train, Val: s.val, Test: s.test, OutDir: out,
		Schedule: Schedule{Epochs: 6, TestEvery: 2, Batch: 10}, EvalBatch: 10,
		LearningRate: 0.05, Seed: 42, TestTrace: "exact", Keep: 2,
	}
}

// logScale rebuilds the model of a run directory's last checkpoint and returns its parameter.
func logScale(t *testing.T, b backends.Backend, dir string) []float64 {
	t.Helper()
	lm, err := LoadCheckpoint(dir, "last")
	if err != nil {
		t.Fatal(err)
	}
	m, err := BuildModel(b, lm.Ctx, lm.Spec)
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.Variables()[0].Value()
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float64](v)
}

func TestRunTrainsEvaluatesAndSamples(t *testing.T) {
	b := testBackend(t)
	dataDir, out := t.TempDir(), t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 50, "val": 20, "test": 20})
	s := loadTiny(t, dataDir, 40)
	res, err := Run(context.Background(), baseOptions(b, s, out))
	if err != nil {
		t.Fatal(err)
	}
	if res.Epochs != 6 || res.Steps != 6*4 || res.Interrupted {
		t.Errorf("result %+v: want 6 epochs, 24 steps", res)
	}

	// Metrics: one row per epoch, the documented columns, NLL decreasing, val/test every 2 epochs.
	rows, err := ReadMetricsCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 {
		t.Fatalf("metrics.csv has %d rows, want 6", len(rows))
	}
	if !(rows[5].TrainNLL < rows[0].TrainNLL-0.5) {
		t.Errorf("train NLL did not decrease: %g → %g", rows[0].TrainNLL, rows[5].TrainNLL)
	}
	for _, r := range rows {
		evaluated := r.Epoch%2 == 0
		if evaluated == math.IsNaN(r.ValNLL) || evaluated == math.IsNaN(r.TestNLL) {
			t.Errorf("epoch %d: val %g test %g, evaluated=%v", r.Epoch, r.ValNLL, r.TestNLL, evaluated)
		}
		if r.NFEForward != 4 || r.NFEBackward != 4 || r.LR != 0.05 || r.Step != int64(4*(r.Epoch+1)) {
			t.Errorf("epoch %d row %+v", r.Epoch, r)
		}
	}
	if !(rows[4].ValNLL < rows[0].ValNLL) {
		t.Errorf("val NLL did not decrease: %g → %g", rows[0].ValNLL, rows[4].ValNLL)
	}
	schema, err := table.Schema(filepath.Join(out, MetricsParquet))
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, f := range schema.Fields() {
		cols = append(cols, f.Name)
	}
	if !slices.Equal(cols, MetricsColumns()) {
		t.Errorf("metrics.parquet columns %v, want %v", cols, MetricsColumns())
	}
	nRows := 0
	if err := table.ScanRecords(filepath.Join(out, MetricsParquet), 100, func(rec arrow.RecordBatch) error {
		nRows += int(rec.NumRows())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if nRows != 6 {
		t.Errorf("metrics.parquet has %d rows, want 6", nRows)
	}

	// Best model = best validation epoch; its test NLL is the reported one.
	best := 0
	for _, r := range rows {
		if !math.IsNaN(r.ValNLL) && r.ValNLL < rows[best].ValNLL {
			best = r.Epoch
		}
	}
	if res.BestEpoch != best || res.BestTestNLL != rows[best].TestNLL {
		t.Errorf("best epoch %d test %g, want %d test %g", res.BestEpoch, res.BestTestNLL, best, rows[best].TestNLL)
	}

	// Checkpoints: the last Keep=2 in OUT, one in OUT/best, plus model.json, run result.
	if l, _ := listCheckpoints(out); len(l) != 2 {
		t.Errorf("%d checkpoints kept, want 2", len(l))
	}
	if l, _ := listCheckpoints(filepath.Join(out, BestDir)); len(l) != 1 {
		t.Errorf("%d best checkpoints, want 1", len(l))
	}
	for _, f := range []string{ModelFileName, filepath.Join(BestDir, ModelFileName), ResultFileName} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}

	// Eval rebuilds the best model from the directory alone and reproduces the reported test NLL.
	if err := SaveRunInfo(out, &RunInfo{Dataset: "dw4", DataDir: dataDir, NData: 40}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		split string
		n     int
	}{{"test", 20}, {"val", 20}, {"train", 40}} {
		rep, err := EvaluateRun(context.Background(), EvalOptions{Backend: b, Dir: out, Split: tc.split, Batch: 10})
		if err != nil {
			t.Fatalf("eval %s: %v", tc.split, err)
		}
		if rep.N != tc.n || rep.Dir != filepath.Join(out, BestDir) {
			t.Errorf("eval %s: n=%d dir=%s", tc.split, rep.N, rep.Dir)
		}
		if tc.split == "test" && math.Abs(rep.NLL-res.BestTestNLL) > 1e-9 {
			t.Errorf("eval test NLL %g, reported %g", rep.NLL, res.BestTestNLL)
		}
	}

	// Samples are written as particle configurations readable by the table readers.
	sampleOut := filepath.Join(t.TempDir(), "samples.parquet")
	srep, err := SampleRun(context.Background(), SampleOptions{Backend: b, Dir: out, N: 25, Seed: 5, Batch: 10, Out: sampleOut})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := table.ReadConfigs(sampleOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) != 25 || srep.N != 25 || math.IsNaN(srep.MeanEnergy) {
		t.Fatalf("samples: %d rows, report %+v", len(cfgs), srep)
	}
	for _, c := range cfgs {
		if c.System != "dw4" || len(c.Positions) != 8 || math.IsNaN(c.Energy) {
			t.Fatalf("sample %+v", c)
		}
	}

	// A second run into the same directory without --resume is refused.
	if _, err := Run(context.Background(), baseOptions(b, s, out)); err == nil {
		t.Error("Run into a directory with checkpoints should fail without Resume")
	}
}

// cancellingDataset cancels a context after a number of Batch calls.
type cancellingDataset struct {
	Dataset
	after  int
	calls  int
	cancel context.CancelFunc
}

func (c *cancellingDataset) Batch(idx []int) (*Batch, error) {
	c.calls++
	if c.calls == c.after {
		c.cancel()
	}
	return c.Dataset.Batch(idx)
}

func TestResumeContinuesLikeUninterrupted(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 10, "test": 10})
	s := loadTiny(t, dataDir, 40)

	// Reference: uninterrupted.
	refDir := t.TempDir()
	opts := baseOptions(b, s, refDir)
	opts.Schedule = Schedule{Epochs: 4, TestEvery: 1, Batch: 10}
	ref, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}

	// Interrupted twice: mid-epoch (during epoch 1) and at another point, then finished.
	dir := t.TempDir()
	for i, after := range []int{6, 5, 0} {
		o := baseOptions(b, s, dir)
		o.Schedule = opts.Schedule
		o.Resume = i > 0
		ctx, cancel := context.WithCancel(context.Background())
		if after > 0 {
			o.Train = &cancellingDataset{Dataset: s.train, after: after, cancel: cancel}
		}
		res, err := Run(ctx, o)
		cancel()
		if after > 0 {
			if !errors.Is(err, ErrInterrupted) || res == nil || !res.Interrupted {
				t.Fatalf("segment %d: want ErrInterrupted, got %v (%+v)", i, err, res)
			}
			continue
		}
		if err != nil {
			t.Fatalf("final segment: %v", err)
		}
		if res.Steps != ref.Steps || res.BestEpoch != ref.BestEpoch || math.Abs(res.BestTestNLL-ref.BestTestNLL) > 1e-12 {
			t.Errorf("resumed result %+v, uninterrupted %+v", res, ref)
		}
	}
	got, want := logScale(t, b, dir), logScale(t, b, refDir)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Errorf("log_scale[%d] = %.15g after resume, %.15g uninterrupted", i, got[i], want[i])
		}
	}
	gotRows, _ := ReadMetricsCSV(dir)
	wantRows, _ := ReadMetricsCSV(refDir)
	if len(gotRows) != len(wantRows) {
		t.Fatalf("%d metric rows after resume, %d uninterrupted", len(gotRows), len(wantRows))
	}
	for i := range wantRows {
		g, w := gotRows[i], wantRows[i]
		if g.Epoch != w.Epoch || g.Step != w.Step || math.Abs(g.TrainNLL-w.TrainNLL) > 1e-12 ||
			math.Abs(g.ValNLL-w.ValNLL) > 1e-12 || g.NFEForward != w.NFEForward {
			t.Errorf("epoch %d: resumed %+v, uninterrupted %+v", i, g, w)
		}
	}
}

func TestEpochBatches(t *testing.T) {
	for _, tc := range []struct{ n, batch, want int }{{40, 10, 4}, {45, 10, 4}, {9, 10, 0}, {10, 10, 1}} {
		got := EpochBatches(tc.n, tc.batch, rand.New(rand.NewPCG(1, 2)))
		if len(got) != tc.want {
			t.Errorf("EpochBatches(%d, %d): %d batches, want %d", tc.n, tc.batch, len(got), tc.want)
		}
		seen := map[int]bool{}
		for _, b := range got {
			if len(b) != tc.batch {
				t.Errorf("batch of %d", len(b))
			}
			for _, i := range b {
				if seen[i] || i < 0 || i >= tc.n {
					t.Errorf("index %d repeated or out of range", i)
				}
				seen[i] = true
			}
		}
	}
	a := EpochBatches(30, 10, rand.New(rand.NewPCG(1, 2)))
	c := EpochBatches(30, 10, rand.New(rand.NewPCG(1, 2)))
	d := EpochBatches(30, 10, rand.New(rand.NewPCG(1, 3)))
	if !slices.Equal(a[0], c[0]) || slices.Equal(a[0], d[0]) {
		t.Error("EpochBatches should be a deterministic function of the RNG")
	}
	for _, tc := range []struct{ n, batch, want, size int }{{25, 10, 2, 10}, {5, 10, 1, 5}, {0, 10, 0, 0}} {
		got := EvalBatches(tc.n, tc.batch)
		if len(got) != tc.want || (tc.want > 0 && len(got[0]) != tc.size) {
			t.Errorf("EvalBatches(%d, %d) = %v", tc.n, tc.batch, got)
		}
	}
}

func TestDefaultSchedule(t *testing.T) {
	for _, tc := range []struct {
		sys   string
		n     int
		want  Schedule
		exact bool
	}{
		{"dw4", 100, Schedule{1000, 20, 100}, true},
		{"dw4", 1000, Schedule{300, 5, 100}, true},
		{"dw4", 10000, Schedule{50, 1, 100}, true},
		{"dw4", 100000, Schedule{6, 1, 100}, true},
		{"lj13", 10, Schedule{500, 10, 10}, true},
		{"lj13", 100, Schedule{1000, 25, 100}, true},
		{"lj13", 1000, Schedule{300, 5, 100}, true},
		{"lj13", 10000, Schedule{50, 1, 100}, true},
		{"dw4", 2000, Schedule{300, 5, 100}, false},
		{"qm9_positional", 13832, Schedule{1000, 1, 128}, true},
		{"qm9_positional", 0, Schedule{1000, 1, 128}, true},
	} {
		got, exact, err := DefaultSchedule(tc.sys, tc.n)
		if err != nil || got != tc.want || exact != tc.exact {
			t.Errorf("DefaultSchedule(%s, %d) = %+v, %v, %v; want %+v, %v", tc.sys, tc.n, got, exact, err, tc.want, tc.exact)
		}
	}
	if _, _, err := DefaultSchedule("qm9", 10); err == nil {
		t.Error("unknown system should fail")
	}
}
