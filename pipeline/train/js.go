package train

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/enflow/enflow/pipeline/metrics"
)

// JSEval is the sample-quality metric of QM9 Positional (REFERENCE §3.2, en_flows
// main_qm9_pos.py visualize_histograms): draw N configurations from the flow in batches of
// Batch, histogram all their relative distances (100 bins on [0, 13] Å) and compute the
// Jensen–Shannon divergence against Reference (default: analyzed_19, the histogram of the
// 13,832 19-atom training molecules).
type JSEval struct {
	N, Batch  int       // default 1000 samples in batches of 100, as the reference
	Reference []float64 // 100 bins; nil means metrics.Analyzed19Histogram()
}

// Evaluate samples from m (whose spec is spec) with seed and returns the JS divergence and the
// dynamics evaluations spent.
func (j *JSEval) Evaluate(ctx context.Context, m Model, spec *ModelSpec, seed uint64) (js float64, nfe int, err error) {
	h, nfe, err := SampleDistanceHistogram(ctx, m, spec, j.N, j.Batch, seed)
	if err != nil {
		return 0, nfe, err
	}
	ref := j.Reference
	if ref == nil {
		ref = metrics.Analyzed19Histogram()
	}
	js, err = metrics.JSDivergence(h.Floats(), ref)
	if err != nil {
		return 0, nfe, fmt.Errorf("train: JS divergence: %w", err)
	}
	return js, nfe, nil
}

// SampleDistanceHistogram draws n 3-D configurations from m in batches of batch (defaults 1000
// and 100) and returns the histogram of their relative distances, both orders of every pair.
func SampleDistanceHistogram(ctx context.Context, m Model, spec *ModelSpec, n, batch int, seed uint64) (*metrics.DistanceHistogram, int, error) {
	if n <= 0 {
		n = 1000
	}
	if batch <= 0 {
		batch = 100
	}
	if spec.Dim != 3 {
		return nil, 0, fmt.Errorf("train: relative-distance histogram needs 3-D configurations, %s has %d", spec.System, spec.Dim)
	}
	dtype, err := spec.GoDType()
	if err != nil {
		return nil, 0, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6a73)) // "js"
	var h metrics.DistanceHistogram
	nfe := 0
	pos := make([][3]float64, spec.Nodes)
	for done := 0; done < n; {
		if err := ctx.Err(); err != nil {
			return nil, nfe, err
		}
		bs := min(batch, n-done)
		ones := make([]float64, bs*spec.Nodes)
		for i := range ones {
			ones[i] = 1
		}
		mask, err := floatTensor(dtype, ones, bs, spec.Nodes)
		if err != nil {
			return nil, nfe, err
		}
		ps, ok := m.(ParticleSampler)
		if !ok {
			finalize(mask)
			return nil, nfe, fmt.Errorf("train: the %s model does not sample particle configurations", spec.Kind)
		}
		xT, st, err := ps.Sample(bs, spec.Nodes, spec.Dim, mask, rng.Uint64())
		finalize(mask)
		if err != nil {
			return nil, nfe, fmt.Errorf("train: sampling configurations %d–%d of %d: %w", done, done+bs-1, n, err)
		}
		nfe += st.NFEForward + st.NFEBackward
		x, err := floatsOf(xT)
		finalize(xT)
		if err != nil {
			return nil, nfe, err
		}
		f := spec.Nodes * spec.Dim
		if len(x) != bs*f {
			return nil, nfe, fmt.Errorf("train: model returned %d values for %d samples of %d", len(x), bs, f)
		}
		for i := range bs {
			for a := range spec.Nodes {
				copy(pos[a][:], x[i*f+3*a:i*f+3*a+3])
			}
			h.AddPositions(pos)
		}
		done += bs
	}
	return &h, nfe, nil
}
