package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/enflow/enflow/gomlx_models/ode"
	"github.com/enflow/enflow/gomlx_models/optim"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
)

func TestSpikeThreshold(t *testing.T) {
	flat := slices.Repeat([]float64{10}, 20)
	noisy := []float64{10, 10.2, 9.8, 10.1, 9.9, 10.3, 9.7, 10, 10.05, 9.95}
	for _, tc := range []struct {
		name string
		xs   []float64
		k    float64
		want float64
	}{
		// MAD 0: σ̂ falls back to 0.01·(1+|median|) = 0.11.
		{"flat window", flat, 20, 10 + 20*0.11},
		// Sorted deviations from 10: 0,0,.05,.05,.1,.1,.2,.2,.3,.3 → MAD 0.1, σ̂ 0.14826 > 0.11.
		{"noisy window", noisy, 10, 10 + 10*0.14826},
		{"negative losses", []float64{-5, -5, -5}, 2, -5 + 2*0.06},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := spikeThreshold(tc.xs, tc.k); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("spikeThreshold = %.10g, want %.10g", got, tc.want)
			}
		})
	}
}

func TestCheckLoss(t *testing.T) {
	history := make([]float64, 30)
	for i := range history {
		history[i] = 5 + 0.1*float64(i%3) // median 5.1, MAD 0.1 → σ̂ 0.148, threshold(k=20) ≈ 8.07
	}
	for _, tc := range []struct {
		name    string
		losses  []float64
		opts    RecoveryOptions
		loss    float64
		wantErr string // reason, "" for none
	}{
		{"finite, no history", nil, RecoveryOptions{}, 1e6, ""},
		{"NaN", nil, RecoveryOptions{}, math.NaN(), "non_finite_loss"},
		{"+Inf", nil, RecoveryOptions{}, math.Inf(1), "non_finite_loss"},
		{"-Inf", history, RecoveryOptions{}, math.Inf(-1), "non_finite_loss"},
		{"normal", history, RecoveryOptions{}, 6, ""},
		{"spike", history, RecoveryOptions{}, 9, "loss_spike"},
		{"big drop is fine", history, RecoveryOptions{}, -100, ""},
		{"spike detection off", history, RecoveryOptions{SpikeK: -1}, 9, ""},
		{"history too short", history[:5], RecoveryOptions{}, 9, ""},
		{"lower k", history, RecoveryOptions{SpikeK: 5}, 6, "loss_spike"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecovery(tc.opts, slog.Default(), t.TempDir())
			r.state.Losses = tc.losses
			d := r.checkLoss(tc.loss)
			switch {
			case tc.wantErr == "" && d != nil:
				t.Errorf("unexpected divergence %v", d)
			case tc.wantErr != "" && (d == nil || d.reason != tc.wantErr):
				t.Errorf("got %v, want reason %s", d, tc.wantErr)
			}
		})
	}
	r := newRecovery(RecoveryOptions{}, slog.Default(), t.TempDir())
	solver := fmt.Errorf("cnf: forward solve: %w", ode.ErrMaxSteps)
	if d := r.lossAndGradFailed(solver); d == nil || d.reason != "solver_failure" || !errors.Is(d, ode.ErrMaxSteps) {
		t.Errorf("solver failure not classified as divergence: %v", d)
	}
	if d := r.lossAndGradFailed(errors.New("shape mismatch")); d != nil {
		t.Errorf("ordinary error classified as divergence: %v", d)
	}
	if d := r.checkGradNorm(1, math.NaN()); d == nil || !d.applied {
		t.Errorf("NaN gradient norm: %v", d)
	}
}

// corruptAt returns a beforeStep hook that sets every element of the model's first variable
// to value before the optimizer step with index step (counted over the whole run, including
// replays), times times in a row.
func corruptAt(step, times int, value float64) func(*trainer) error {
	calls := 0
	return func(t *trainer) error {
		calls++
		if calls <= step || calls > step+times {
			return nil
		}
		v := t.model.Variables()[0]
		n := v.Shape().Size()
		var bad *tensors.Tensor
		if v.DType().Size() == 4 {
			bad = tensors.FromFlatDataAndDimensions(slices.Repeat([]float32{float32(value)}, n), v.Shape().Dimensions...)
		} else {
			bad = tensors.FromFlatDataAndDimensions(slices.Repeat([]float64{value}, n), v.Shape().Dimensions...)
		}
		return v.SetValue(bad)
	}
}

// corruptAllAt is corruptAt for every variable of the context but the learning rate: model
// parameters, Adam moments, AMSGrad maxima and step counters (integers set to 1<<40).
func corruptAllAt(step int, value float64) func(*trainer) error {
	calls := 0
	return func(t *trainer) error {
		calls++
		if calls != step+1 {
			return nil
		}
		for v := range t.ctx.IterVariables() {
			if isLearningRate(v) || !v.HasValue() {
				continue
			}
			n, dims := v.Shape().Size(), v.Shape().Dimensions
			var bad *tensors.Tensor
			switch v.DType().String() {
			case "Float32":
				bad = tensors.FromFlatDataAndDimensions(slices.Repeat([]float32{float32(value)}, n), dims...)
			case "Float64":
				bad = tensors.FromFlatDataAndDimensions(slices.Repeat([]float64{value}, n), dims...)
			case "Int64":
				bad = tensors.FromFlatDataAndDimensions(slices.Repeat([]int64{1 << 40}, n), dims...)
			default:
				return fmt.Errorf("variable %s has dtype %s", v.ScopeAndName(), v.DType())
			}
			if err := v.SetValue(bad); err != nil {
				return err
			}
		}
		return nil
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func finiteAll(xs []float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// TestRecoveryFromInjectedBlowUp corrupts the parameter of the stand-in flow in the middle of
// training (NaN, +1e30, −1e30): the driver must detect the divergence, roll parameters and
// optimizer state back to the last snapshot, halve the learning rate, log and record the event,
// and finish with finite parameters and NLLs.
func TestRecoveryFromInjectedBlowUp(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	s := loadTiny(t, dataDir, 40)
	const step = 13 // epoch 3, batch 1 of 4 batches per epoch
	final := map[string][]float64{}
	for _, tc := range []struct {
		name   string
		value  float64
		reason string
		all    bool // corrupt the optimizer state too
	}{
		{"NaN parameter", math.NaN(), "non_finite_loss", false},
		// Restoring must cover the optimizer state: the result equals the parameter-only case.
		{"NaN parameters and optimizer state", math.NaN(), "non_finite_loss", true},
		{"huge parameter", 1e30, "loss_spike", false},                // z → 0, log-det 3·Σs ≈ 6e30: a finite spike
		{"huge negative parameter", -1e30, "non_finite_loss", false}, // exp(−s) overflows
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			logs := &syncBuffer{}
			o := baseOptions(b, s, out)
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
			o.Recovery = RecoveryOptions{SnapshotEvery: 3, MinHistory: 5, beforeStep: corruptAt(step, 1, tc.value)}
			if tc.all {
				o.Recovery.beforeStep = corruptAllAt(step, tc.value)
			}
			res, err := Run(context.Background(), o)
			if err != nil {
				t.Fatalf("run did not recover: %v", err)
			}
			if res.Recoveries != 1 || res.Epochs != 6 || res.Steps != 24 {
				t.Errorf("result %+v: want 1 recovery, 6 epochs, 24 steps", res)
			}
			events, err := ReadRecoveries(out)
			if err != nil || len(events) != 1 {
				t.Fatalf("recoveries.csv: %d events, %v", len(events), err)
			}
			e := events[0]
			if e.Reason != tc.reason || e.Step != step || e.RestoreStep > e.Step || e.RestoreStep < e.Step-3 ||
				e.LRBefore != 0.05 || e.LRAfter != 0.025 || e.Consecutive != 1 || e.Epoch != 3 {
				t.Errorf("event %+v", e)
			}
			if !strings.Contains(logs.String(), "divergence: rolled back") || !strings.Contains(logs.String(), "reason="+tc.reason) {
				t.Errorf("recovery not logged:\n%s", logs.String())
			}
			p := logScale(t, b, out)
			if !finiteAll(p) {
				t.Errorf("final parameters %v", p)
			}
			final[tc.name] = p
			rows, err := ReadMetricsCSV(out)
			if err != nil || len(rows) != 6 {
				t.Fatalf("metrics: %d rows, %v", len(rows), err)
			}
			for _, r := range rows {
				if !finiteAll([]float64{r.TrainNLL, r.TrainLoss, r.GradNorm}) {
					t.Errorf("epoch %d: non-finite metrics %+v", r.Epoch, r)
				}
				if wantLR := map[bool]float64{true: 0.025, false: 0.05}[r.Epoch >= 3]; r.LR != wantLR {
					t.Errorf("epoch %d: lr %g, want %g", r.Epoch, r.LR, wantLR)
				}
			}
			if !finiteAll([]float64{res.BestValNLL, res.BestTestNLL, rows[4].ValNLL, rows[4].TestNLL}) || !(rows[4].ValNLL < rows[0].ValNLL) {
				t.Errorf("val/test NLL not finite or not improving: %+v / %+v", res, rows)
			}
		})
	}
	if a, b := final["NaN parameter"], final["NaN parameters and optimizer state"]; !slices.Equal(a, b) {
		t.Errorf("rollback did not restore the optimizer state: final parameters %v vs %v", b, a)
	}
}

// TestRecoveryStateSurvivesResume interrupts a run after a recovery: the resumed run keeps the
// event, the count and the lowered learning rate.
func TestRecoveryStateSurvivesResume(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	s := loadTiny(t, dataDir, 40)
	out := t.TempDir()
	o := baseOptions(b, s, out)
	o.Recovery = RecoveryOptions{SnapshotEvery: 2, beforeStep: corruptAt(5, 1, math.NaN())}
	ctx, cancel := context.WithCancel(context.Background())
	o.Train = &cancellingDataset{Dataset: s.train, after: 12, cancel: cancel}
	if _, err := Run(ctx, o); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("want ErrInterrupted, got %v", err)
	}
	cancel()
	o = baseOptions(b, s, out)
	o.Resume = true
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	events, err := ReadRecoveries(out)
	if err != nil || len(events) != 1 || res.Recoveries != 1 {
		t.Fatalf("after resume: %d events (%v), result %+v", len(events), err, res)
	}
	rows, _ := ReadMetricsCSV(out)
	if last := rows[len(rows)-1]; last.LR != 0.025 {
		t.Errorf("lowered learning rate lost on resume: %g", last.LR)
	}
}

// TestRecoveryGivesUp corrupts the parameter before every step from step 6 on: after
// MaxConsecutive divergences the run stops with ErrDiverged, and the last good state is
// checkpointed and loadable.
func TestRecoveryGivesUp(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	s := loadTiny(t, dataDir, 40)
	for _, tc := range []struct {
		name    string
		rec     RecoveryOptions
		wantErr error
		events  int
	}{
		{"recovery on", RecoveryOptions{MaxConsecutive: 3, SnapshotEvery: 2}, ErrDiverged, 3},
		{"recovery disabled", RecoveryOptions{Disable: true}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			o := baseOptions(b, s, out)
			o.Recovery = tc.rec
			o.Recovery.beforeStep = corruptAt(6, 1000, math.NaN())
			res, err := Run(context.Background(), o)
			if err == nil || res != nil {
				t.Fatalf("want an error, got %+v", res)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "non_finite_loss")) {
				t.Fatalf("disabled recovery: error %v", err)
			}
			events, _ := ReadRecoveries(out)
			if len(events) != tc.events {
				t.Fatalf("%d events, want %d", len(events), tc.events)
			}
			for i, e := range events {
				if e.Consecutive != i+1 || e.LRAfter != 0.05*math.Pow(0.5, float64(i+1)) {
					t.Errorf("event %d: %+v", i, e)
				}
			}
			if tc.wantErr != nil {
				if p := logScale(t, b, out); !finiteAll(p) {
					t.Errorf("checkpointed state not finite: %v", p)
				}
			}
		})
	}
}

// TestRepairRunDir damages the newest checkpoint of a run in the ways a kill during GoMLX's
// non-atomic Save (or a kill during a best/ replacement) can, then resumes: the run must
// continue from the previous checkpoint and end like an uninterrupted run.
func TestRepairRunDir(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	s := loadTiny(t, dataDir, 40)
	refDir := t.TempDir()
	ref, err := Run(context.Background(), baseOptions(b, s, refDir))
	if err != nil {
		t.Fatal(err)
	}
	refParams := logScale(t, b, refDir)

	truncate := func(frac float64, suffix string) func(t *testing.T, dir, base string) {
		return func(t *testing.T, dir, base string) {
			p := filepath.Join(dir, base+suffix)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data[:int(float64(len(data))*frac)], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir, base string)
	}{
		{"empty json", truncate(0, checkpoints.JsonNameSuffix)},
		{"truncated json", truncate(0.5, checkpoints.JsonNameSuffix)},
		{"truncated data", truncate(0.6, checkpoints.BinDataSuffix)},
		{"missing data", func(t *testing.T, dir, base string) {
			if err := os.Remove(filepath.Join(dir, base+checkpoints.BinDataSuffix)); err != nil {
				t.Fatal(err)
			}
		}},
		{"json not yet written", func(t *testing.T, dir, base string) { // kill between data and json
			if err := os.Remove(filepath.Join(dir, base+checkpoints.JsonNameSuffix)); err != nil {
				t.Fatal(err)
			}
		}},
		{"best replacement interrupted", func(t *testing.T, dir, base string) {
			if err := os.Rename(filepath.Join(dir, BestDir), filepath.Join(dir, BestDir+".old")); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, "."+BestDir+".tmp-123"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ".metrics.csv.tmp-456"), []byte("partial"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Interrupt at the start of epoch 4 (the 17th batch request), damage the newest checkpoint.
			o := baseOptions(b, s, dir)
			ctx, cancel := context.WithCancel(context.Background())
			o.Train = &cancellingDataset{Dataset: s.train, after: 17, cancel: cancel}
			if _, err := Run(ctx, o); !errors.Is(err, ErrInterrupted) {
				t.Fatalf("want ErrInterrupted, got %v", err)
			}
			cancel()
			list, err := listCheckpoints(dir)
			if err != nil || len(list) < 2 {
				t.Fatalf("checkpoints %v, %v", list, err)
			}
			tc.damage(t, dir, list[len(list)-1])

			o = baseOptions(b, s, dir)
			o.Resume = true
			res, err := Run(context.Background(), o)
			if err != nil {
				t.Fatalf("resume after damage: %v", err)
			}
			if res.Steps != ref.Steps || math.Abs(res.BestTestNLL-ref.BestTestNLL) > 1e-12 {
				t.Errorf("resumed %+v, uninterrupted %+v", res, ref)
			}
			got := logScale(t, b, dir)
			for i := range refParams {
				if math.Abs(got[i]-refParams[i]) > 1e-12 {
					t.Errorf("log_scale[%d] %.15g, uninterrupted %.15g", i, got[i], refParams[i])
				}
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp-") || e.Name() == BestDir+".old" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
			if l, _ := listCheckpoints(filepath.Join(dir, BestDir)); len(l) != 1 {
				t.Errorf("best/ holds %d checkpoints", len(l))
			}
		})
	}
}

// TestRecoveryENF injects a NaN into an EGNN weight of the real E-NF (dopri5, adjoint) in
// the middle of training. The adaptive solver cannot make progress on a NaN field (every
// step is rejected until the step size vanishes: ErrStepSizeTooSmall), or the loss comes out
// non-finite; either way the run must roll back, continue and end finite.
func TestRecoveryENF(t *testing.T) {
	if testing.Short() {
		t.Skip("E-NF recovery test skipped in -short mode")
	}
	o, logs := tinyENFRecoveryOptions(t, 1e-4, Schedule{Epochs: 3, TestEvery: 2, Batch: 5},
		RecoveryOptions{SnapshotEvery: 2, beforeStep: corruptAt(6, 1, math.NaN())})
	out := o.OutDir
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("E-NF run did not recover: %v\n%s", err, logs.String())
	}
	events, err := ReadRecoveries(out)
	if err != nil || len(events) != 1 || res.Recoveries != 1 {
		t.Fatalf("%d events (%v), result %+v", len(events), err, res)
	}
	if e := events[0]; (e.Reason != "solver_failure" && e.Reason != "non_finite_loss") || e.Step != 6 || e.RestoreStep != 6 {
		t.Errorf("event %+v", e)
	}
	t.Logf("E-NF recovery event: %s (%s)", events[0].Reason, events[0].Detail)
	if p := enfParams(t, out); !finiteAll(p) {
		t.Error("non-finite parameters after recovery")
	}
	rows, _ := ReadMetricsCSV(out)
	for _, r := range rows {
		if !finiteAll([]float64{r.TrainNLL, r.GradNorm}) {
			t.Errorf("epoch %d metrics %+v", r.Epoch, r)
		}
	}
	if !finiteAll([]float64{res.BestValNLL, res.BestTestNLL}) || res.Steps != 12 {
		t.Errorf("result %+v", res)
	}
}

// failingModel fails LogLikelihood on one batch (by call count).
type failingModel struct {
	Model
	failCall, calls int
	err             error // returned on the failing call; nil → NaN log-likelihoods
}

func (m *failingModel) LogLikelihood(b *Batch, seed uint64) ([]float64, Stats, error) {
	m.calls++
	n := b.Size()
	ll := slices.Repeat([]float64{-1}, n)
	if m.calls == m.failCall {
		if m.err != nil {
			return nil, Stats{}, m.err
		}
		ll[n/2] = math.NaN()
	}
	return ll, Stats{NFEForward: 1}, nil
}

// TestEvaluateNamesFailingBatch: solver resource limits (ode.ErrMaxSteps) and NaN likelihoods
// in evaluation must name the batch and its row range.
func TestEvaluateNamesFailingBatch(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 50, "val": 10, "test": 10})
	s := loadTiny(t, dataDir, 50)
	spec := DefaultSpec("dw4", 4, 2)
	spec.DType, spec.EGNN.Hidden, spec.EGNN.Layers, spec.CNF.MaxSteps = "float64", 8, 1, 3
	spec.CNF.RTol, spec.CNF.ATol = 1e-12, 1e-12 // needs many steps
	enf, err := BuildModel(b, mlctx.New(), &spec)
	if err != nil {
		t.Fatal(err)
	}
	solverErr := fmt.Errorf("cnf: forward solve (t=0→1): %w", ode.ErrMaxSteps)
	for _, tc := range []struct {
		name    string
		m       Model
		want    string
		wantErr error
	}{
		{"solver limit in batch 2", &failingModel{failCall: 3, err: solverErr}, "batch 2 of 5 (rows 20–29 of 50)", ode.ErrMaxSteps},
		{"NaN in batch 4", &failingModel{failCall: 5}, "batch 4 of 5 (rows 40–49 of 50): NLL is NaN", nil},
		{"real E-NF with max 3 solver steps", enf, "batch 0 of 5 (rows 0–9 of 50)", ode.ErrMaxSteps},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Evaluate(context.Background(), tc.m, s.train, 10, 1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tc.wantErr)
			}
		})
	}
}

// TestRefreshBestAfterInterruptedCopy simulates a kill between saving the checkpoint of a new
// best epoch and copying it to best/: best/ still holds an older best. Resuming must copy the
// best epoch's checkpoint again.
func TestRefreshBestAfterInterruptedCopy(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	s := loadTiny(t, dataDir, 40)
	dir := t.TempDir()
	o := baseOptions(b, s, dir)
	ctx, cancel := context.WithCancel(context.Background())
	o.Train = &cancellingDataset{Dataset: s.train, after: 13, cancel: cancel} // stop in epoch 3
	if _, err := Run(ctx, o); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("want ErrInterrupted, got %v", err)
	}
	cancel()
	// Drop the interruption checkpoint: the newest is now the end of epoch 2 (a best epoch).
	list, _ := listCheckpoints(dir)
	for _, suf := range []string{checkpoints.JsonNameSuffix, checkpoints.BinDataSuffix} {
		if err := os.Remove(filepath.Join(dir, list[len(list)-1]+suf)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := checkpointRunState(dir)
	if err != nil || st.Epoch != 3 || st.Batch != 0 || st.BestEpoch != 2 {
		t.Fatalf("newest checkpoint state %+v (%v): the scenario needs the end of best epoch 2", st, err)
	}
	// Make best/ look like the best of epoch 0 (what it held before epoch 2's copy).
	bestList, _ := listCheckpoints(filepath.Join(dir, BestDir))
	js := filepath.Join(dir, BestDir, bestList[0]+checkpoints.JsonNameSuffix)
	data, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Replace(data, []byte(`\"epoch\":3,`), []byte(`\"epoch\":1,`), 1)
	if bytes.Equal(old, data) {
		t.Fatal("run state not found in best/'s checkpoint")
	}
	// best/ files are hard links to the run's checkpoint files: replace, do not rewrite in place.
	if err := os.Remove(js); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(js, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if bst, _ := checkpointRunState(filepath.Join(dir, BestDir)); bst == nil || bst.Epoch != 1 {
		t.Fatalf("best/ state %+v", bst)
	}

	o = baseOptions(b, s, dir)
	o.Resume = true
	o.Schedule.Epochs = 3 // setup only: the loop has nothing left to do
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if bst, err := checkpointRunState(filepath.Join(dir, BestDir)); err != nil || bst.Epoch != 3 || bst.BestEpoch != 2 {
		t.Errorf("best/ not refreshed: %+v (%v)", bst, err)
	}
}

// TestClipGradPersists: Options.ClipGrad reaches the optimizer (the run differs from an
// unclipped one) and is stored in the checkpoints, so a resume without it keeps clipping.
func TestClipGradPersists(t *testing.T) {
	b := testBackend(t)
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	s := loadTiny(t, dataDir, 40)
	clipParam := func(dir string) (float64, bool) {
		lm, err := LoadCheckpoint(dir, "last")
		if err != nil {
			t.Fatal(err)
		}
		v, ok := lm.Ctx.GetParam(optim.ParamClipGradNorm)
		f, _ := v.(float64)
		return f, ok
	}
	plain := t.TempDir()
	if _, err := Run(context.Background(), baseOptions(b, s, plain)); err != nil {
		t.Fatal(err)
	}
	if _, ok := clipParam(plain); ok {
		t.Error("unclipped run stored a clipping norm")
	}

	dir := t.TempDir()
	o := baseOptions(b, s, dir)
	o.ClipGrad = 0.5
	ctx, cancel := context.WithCancel(context.Background())
	o.Train = &cancellingDataset{Dataset: s.train, after: 10, cancel: cancel}
	if _, err := Run(ctx, o); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("want ErrInterrupted, got %v", err)
	}
	cancel()
	if v, ok := clipParam(dir); !ok || v != 0.5 {
		t.Errorf("checkpoint clip norm %v (%v), want 0.5", v, ok)
	}
	o = baseOptions(b, s, dir) // no ClipGrad: the checkpoint's value applies
	o.Resume = true
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if v, ok := clipParam(dir); !ok || v != 0.5 {
		t.Errorf("after resume: clip norm %v (%v), want 0.5", v, ok)
	}
	ref := t.TempDir()
	o = baseOptions(b, s, ref)
	o.ClipGrad = 0.5
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got, want, unclipped := logScale(t, b, dir), logScale(t, b, ref), logScale(t, b, plain)
	if !slices.Equal(got, want) {
		t.Errorf("clipped run resumed without --clip-grad: %v, uninterrupted clipped run %v", got, want)
	}
	if slices.Equal(want, unclipped) {
		t.Errorf("clipping had no effect: %v", want)
	}
}

// TestRecoveryTightensTolerances: with the default policy the first divergence only lowers the
// learning rate and the second consecutive one also tightens the dopri5 tolerances (×0.1), for
// the training and evaluation models; the tightened tolerances are recorded in recoveries.csv
// and kept by a resumed run.
func TestRecoveryTightensTolerances(t *testing.T) {
	if testing.Short() {
		t.Skip("E-NF recovery test skipped in -short mode")
	}
	o, logs := tinyENFRecoveryOptions(t, 1e-3, Schedule{Epochs: 2, TestEvery: 1, Batch: 5},
		RecoveryOptions{SnapshotEvery: 2, beforeStep: corruptAt(5, 2, math.NaN())})
	out := o.OutDir
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatalf("run did not recover: %v\n%s", err, logs.String())
	}
	events, err := ReadRecoveries(out)
	if err != nil || len(events) != 2 {
		t.Fatalf("%d events (%v)\n%s", len(events), err, logs.String())
	}
	if !math.IsNaN(events[0].RTolAfter) || events[0].Consecutive != 1 {
		t.Errorf("first event tightened the tolerances: %+v", events[0])
	}
	if e := events[1]; e.Consecutive != 2 || math.Abs(e.RTolAfter-1e-4) > 1e-18 || math.Abs(e.ATolAfter-1e-4) > 1e-18 {
		t.Errorf("second event %+v, want rtol = atol = 1e-4", e)
	}
	if !strings.Contains(logs.String(), "tightened the solver tolerances") {
		t.Errorf("no tightening logged:\n%s", logs.String())
	}

	// Resume for one more epoch: both models (training/validation with Hutchinson, exact test) must solve
	// at the tightened tolerances.
	var seen [][3]float64
	o.Resume, o.Schedule.Epochs = true, 3
	o.Recovery = RecoveryOptions{SnapshotEvery: 2, beforeStep: func(tr *trainer) error {
		for _, m := range tr.models {
			rt, at, _ := m.(TolerancedModel).Tolerances()
			seen = append(seen, [3]float64{rt, at, float64(len(tr.models))})
		}
		return nil
	}}
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if len(seen) == 0 {
		t.Fatal("no training step after resume")
	}
	for _, v := range seen {
		if math.Abs(v[0]-1e-4) > 1e-18 || math.Abs(v[1]-1e-4) > 1e-18 || v[2] != 2 {
			t.Fatalf("after resume a model solves at rtol %g atol %g (%v models), want 1e-4 and 2 models (hutchinson, exact)", v[0], v[1], v[2])
		}
	}
}

// tinyENFRecoveryOptions trains a tiny float64 E-NF (EGNN 8 × 1, dopri5 at rtol = atol = tol,
// at most 200 solver steps) on 20 synthetic DW4 configurations, logging into the returned buffer.
func tinyENFRecoveryOptions(t *testing.T, tol float64, sched Schedule, rec RecoveryOptions) (Options, *syncBuffer) {
	t.Helper()
	dataDir := t.TempDir()
	writeTinyDW4(t, dataDir, map[string]int{"train": 20, "val": 10, "test": 10})
	s := loadTiny(t, dataDir, 20)
	spec := DefaultSpec("dw4", 4, 2)
	spec.DType, spec.Seed = "float64", 5
	spec.EGNN.Hidden, spec.EGNN.Layers = 8, 1
	spec.CNF.RTol, spec.CNF.ATol, spec.CNF.MaxSteps = tol, tol, 200
	logs := &syncBuffer{}
	return Options{
		Backend: testBackend(t), Spec: spec, Train: s.train, Val: s.val, Test: s.test, OutDir: t.TempDir(),
		Schedule: sched, EvalBatch: 10, LearningRate: 5e-3, Seed: 9, ValTrace: "hutchinson", TestTrace: "exact",
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Recovery: rec,
	}, logs
}
