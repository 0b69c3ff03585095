package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// EvalResult is the NLL of a split, computed as en_flows does: the mean over batches of the
// per-batch mean NLL.
type EvalResult struct {
	NLL     float64       `json:"nll"`
	N       int           `json:"n"`       // configurations evaluated
	Batches int           `json:"batches"` // batches evaluated
	NFE     int           `json:"nfe"`     // dynamics evaluations
	Wall    time.Duration `json:"-"`
}

// Evaluate computes the NLL of ds with m in batches of batch (see EvalBatches). seed drives the
// per-batch seeds (Hutchinson noise); the same seed gives the same number. It stops early with
// ctx's error when ctx is cancelled.
//
// Molecule datasets are evaluated as en_flows' QM9 test(): consecutive batches including the
// last incomplete one, the NLL averaged per molecule (batch-size weighted), and batch bi's noise
// drawn from seed + bi·φ — the same batches and noise as EvaluateRun with Order "data", so a
// model gives the same number through both.
func Evaluate(ctx context.Context, m Model, ds Dataset, batch int, seed uint64) (EvalResult, error) {
	if md, ok := ds.(*MoleculeDataset); ok {
		return evaluateMoleculeDataset(ctx, m, md, batch, seed)
	}
	start := time.Now()
	batches := EvalBatches(ds.Len(), batch)
	if len(batches) == 0 {
		return EvalResult{}, fmt.Errorf("train: nothing to evaluate (%d examples, batch %d)", ds.Len(), batch)
	}
	rng := rand.New(rand.NewPCG(seed, evalStream))
	res := EvalResult{}
	sum := 0.0
	for bi, idx := range batches {
		if err := ctx.Err(); err != nil {
			return EvalResult{}, err
		}
		// Batches are consecutive rows: name them in errors (e.g. ode.ErrMaxSteps on one batch).
		where := fmt.Sprintf("batch %d of %d (rows %d–%d of %d)", bi, len(batches), idx[0], idx[len(idx)-1], ds.Len())
		b, err := ds.Batch(idx)
		if err != nil {
			return EvalResult{}, fmt.Errorf("train: evaluating %s: %w", where, err)
		}
		ll, st, err := m.LogLikelihood(b, rng.Uint64())
		b.Finalize()
		if err != nil {
			return EvalResult{}, fmt.Errorf("train: evaluating %s: %w", where, err)
		}
		if len(ll) != len(idx) {
			return EvalResult{}, fmt.Errorf("train: evaluating %s: model returned %d log-likelihoods for a batch of %d", where, len(ll), len(idx))
		}
		mean := 0.0
		for _, v := range ll {
			mean -= v
		}
		mean /= float64(len(ll))
		if math.IsNaN(mean) {
			return EvalResult{}, fmt.Errorf("train: evaluating %s: NLL is NaN", where)
		}
		sum += mean
		res.N += len(idx)
		res.Batches++
		res.NFE += st.NFEForward + st.NFEBackward
	}
	res.NLL = sum / float64(res.Batches)
	res.Wall = time.Since(start)
	if math.IsNaN(res.NLL) {
		return res, fmt.Errorf("train: NLL is NaN")
	}
	return res, nil
}

// PCG stream constants separating the random streams derived from one seed.
const (
	trainStream uint64 = 0x7472_6169_6e00_0001 // data order + per-step seeds
	evalStream  uint64 = 0x6576_616c_0000_0002 // evaluation seeds
)

// evalSeed derives the evaluation seed of a split at an epoch, independent of the training
// stream (so evaluating does not change training, and a resumed run evaluates identically).
func evalSeed(seed uint64, epoch int, split string) uint64 {
	h := uint64(1469598103934665603)
	for _, c := range []byte(split) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	r := rand.New(rand.NewPCG(seed^h, uint64(epoch)))
	return r.Uint64()
}

func evaluateMoleculeDataset(ctx context.Context, m Model, ds *MoleculeDataset, batch int, seed uint64) (EvalResult, error) {
	start := time.Now()
	if ds.Len() == 0 || batch <= 0 {
		return EvalResult{}, fmt.Errorf("train: nothing to evaluate (%d molecules, batch %d)", ds.Len(), batch)
	}
	res := EvalResult{}
	sum := 0.0
	for bi, s := 0, 0; s < ds.Len(); bi, s = bi+1, s+batch {
		if err := ctx.Err(); err != nil {
			return EvalResult{}, err
		}
		idx := make([]int, 0, batch)
		for i := s; i < min(s+batch, ds.Len()); i++ {
			idx = append(idx, i)
		}
		where := fmt.Sprintf("%s: batch %d (molecules %d–%d of %d)", ds.Path, bi, idx[0], idx[len(idx)-1], ds.Len())
		b, err := ds.Batch(idx)
		if err != nil {
			return EvalResult{}, fmt.Errorf("train: evaluating %s: %w", where, err)
		}
		ll, st, err := m.LogLikelihood(b, moleculeBatchSeed(seed, bi))
		b.Finalize()
		if err != nil {
			return EvalResult{}, fmt.Errorf("train: evaluating %s: %w", where, err)
		}
		if len(ll) != len(idx) {
			return EvalResult{}, fmt.Errorf("train: evaluating %s: model returned %d log-likelihoods for %d molecules", where, len(ll), len(idx))
		}
		for _, v := range ll {
			sum -= v
		}
		res.N += len(idx)
		res.Batches++
		res.NFE += st.NFEForward + st.NFEBackward
	}
	res.NLL = sum / float64(res.N)
	res.Wall = time.Since(start)
	if math.IsNaN(res.NLL) {
		return res, fmt.Errorf("train: %s: NLL is NaN", ds.Path)
	}
	return res, nil
}
