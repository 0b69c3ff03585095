package metrics

import (
	"errors"
	"fmt"
	"math"
)

// Importance weights of Boltzmann-generator samples.
//
// Sign convention (the only one used in enflow): for a configuration x with energy u(x) at
// temperature T and flow log density log q_X(x),
//
//	log w(x) = −u(x)/T − log q_X(x)        (up to an additive constant),
//
// so that w ∝ p(x)/q(x) with the target p(x) ∝ exp(−u(x)/T). Samples the flow
// over-produces (large q, high energy) get small weights. For a flow sample made from a
// prior draw z, log q_X(x) = log q_Z(z) − log|det ∂x/∂z|. bgflow once shipped the opposite
// sign; TestLogWeightSign pins this one. Every function below is invariant under adding a
// constant to all log-weights, so the normalising constant of p never matters.

// ErrNoWeights is returned (wrapped) when there are no log-weights or all of them are −Inf.
var ErrNoWeights = errors.New("no samples with a positive weight")

// LogWeights returns −u_i/T − logQ_i. An energy of +Inf (e.g. overlapping LJ particles)
// gives weight zero (log-weight −Inf); NaN inputs, −Inf energies and infinite log_q are
// errors naming the sample index.
func LogWeights(energy, logQ []float64, T float64) ([]float64, error) {
	if len(energy) != len(logQ) {
		return nil, fmt.Errorf("metrics: %d energies but %d log-densities", len(energy), len(logQ))
	}
	if !(T > 0) || math.IsInf(T, 0) {
		return nil, fmt.Errorf("metrics: temperature must be finite and > 0, got %v", T)
	}
	out := make([]float64, len(energy))
	for i, u := range energy {
		switch q := logQ[i]; {
		case math.IsNaN(u) || math.IsInf(u, -1):
			return nil, fmt.Errorf("metrics: sample %d: energy %v", i, u)
		case math.IsNaN(q) || math.IsInf(q, 0):
			return nil, fmt.Errorf("metrics: sample %d: log q %v", i, q)
		case math.IsInf(u, 1):
			out[i] = math.Inf(-1)
		default:
			out[i] = -u/T - q
		}
	}
	return out, nil
}

// LogSumExp returns log Σ exp(a_i), computed stably (−Inf for an empty slice or all −Inf).
func LogSumExp(a []float64) float64 {
	m := math.Inf(-1)
	for _, v := range a {
		m = math.Max(m, v)
	}
	if math.IsInf(m, -1) || math.IsNaN(m) {
		return m
	}
	s := 0.0
	for _, v := range a {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

func checkLogWeights(logw []float64) error {
	if len(logw) == 0 {
		return fmt.Errorf("metrics: %w (empty)", ErrNoWeights)
	}
	pos := false
	for i, v := range logw {
		if math.IsNaN(v) || math.IsInf(v, 1) {
			return fmt.Errorf("metrics: log-weight %d is %v", i, v)
		}
		pos = pos || !math.IsInf(v, -1)
	}
	if !pos {
		return fmt.Errorf("metrics: %w (all %d log-weights are −Inf)", ErrNoWeights, len(logw))
	}
	return nil
}

// NormalizedWeights returns the self-normalised weights softmax(logw) (they sum to 1).
func NormalizedWeights(logw []float64) ([]float64, error) {
	if err := checkLogWeights(logw); err != nil {
		return nil, err
	}
	lse := LogSumExp(logw)
	out := make([]float64, len(logw))
	for i, v := range logw {
		out[i] = math.Exp(v - lse)
	}
	return out, nil
}

// KishESS returns the Kish effective sample size (Σw)² / Σw² of the weights exp(logw),
// computed with the weights scaled by exp(−max logw) so nothing overflows; ESS/n is the
// reverse ESS fraction of flow samples (1 when the flow is the target).
func KishESS(logw []float64) (float64, error) {
	if err := checkLogWeights(logw); err != nil {
		return 0, err
	}
	m := math.Inf(-1)
	for _, v := range logw {
		m = math.Max(m, v)
	}
	s1, s2 := 0.0, 0.0
	for _, v := range logw {
		w := math.Exp(v - m)
		s1 += w
		s2 += w * w
	}
	return s1 * s1 / s2, nil
}

// ForwardESSFraction is the forward ESS fraction of samples x_i ∼ p (data, not flow
// samples) with log-weights log w(x_i): 1 / (E_p[w]·E_p[1/w]), with both expectations
// estimated by sample means. It estimates the same quantity as KishESS/n on flow samples
// but needs no flow samples (EACF's forward ESS). All log-weights must be finite.
func ForwardESSFraction(logw []float64) (float64, error) {
	if err := checkLogWeights(logw); err != nil {
		return 0, err
	}
	neg := make([]float64, len(logw))
	for i, v := range logw {
		if math.IsInf(v, -1) {
			return 0, fmt.Errorf("metrics: forward ESS: log-weight %d is −Inf (a data sample outside the flow's support)", i)
		}
		neg[i] = -v
	}
	logn := math.Log(float64(len(logw)))
	return math.Exp(2*logn - LogSumExp(logw) - LogSumExp(neg)), nil
}

// ReweightedMean returns the self-normalised importance-sampling estimate Σ w̄_i f_i of
// E_p[f] and its delta-method standard error sqrt(Σ w̄_i² (f_i − mean)²).
func ReweightedMean(logw, f []float64) (mean, stderr float64, err error) {
	if len(logw) != len(f) {
		return 0, 0, fmt.Errorf("metrics: %d log-weights but %d observations", len(logw), len(f))
	}
	w, err := NormalizedWeights(logw)
	if err != nil {
		return 0, 0, err
	}
	for i, v := range f {
		if w[i] > 0 && (math.IsNaN(v) || math.IsInf(v, 0)) {
			return 0, 0, fmt.Errorf("metrics: observation %d is %v", i, v)
		}
		if w[i] > 0 {
			mean += w[i] * v
		}
	}
	v := 0.0
	for i := range f {
		if w[i] > 0 {
			d := f[i] - mean
			v += w[i] * w[i] * d * d
		}
	}
	return mean, math.Sqrt(v), nil
}

// WeightedHistogram is a histogram of an observable under normalised importance weights.
type WeightedHistogram struct {
	Lo, Hi float64
	// Mass is the weight in each of the equal-width bins of [Lo, Hi); Under and Over the
	// weight below Lo and at or above Hi. Mass, Under and Over sum to 1.
	Mass        []float64
	Under, Over float64
}

// Density is Mass divided by the bin width (a probability density over [Lo, Hi)).
func (h WeightedHistogram) Density() []float64 {
	width := (h.Hi - h.Lo) / float64(len(h.Mass))
	out := make([]float64, len(h.Mass))
	for i, m := range h.Mass {
		out[i] = m / width
	}
	return out
}

// ReweightedHistogram bins f into bins equal-width bins of [lo, hi) with the normalised
// weights softmax(logw) (with all log-weights equal it is the plain histogram).
func ReweightedHistogram(logw, f []float64, lo, hi float64, bins int) (WeightedHistogram, error) {
	if len(logw) != len(f) {
		return WeightedHistogram{}, fmt.Errorf("metrics: %d log-weights but %d observations", len(logw), len(f))
	}
	if bins <= 0 || !(hi > lo) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return WeightedHistogram{}, fmt.Errorf("metrics: histogram needs bins > 0 and finite lo < hi, got %d bins over [%v, %v)", bins, lo, hi)
	}
	w, err := NormalizedWeights(logw)
	if err != nil {
		return WeightedHistogram{}, err
	}
	h := WeightedHistogram{Lo: lo, Hi: hi, Mass: make([]float64, bins)}
	width := (hi - lo) / float64(bins)
	for i, v := range f {
		switch {
		case math.IsNaN(v):
			if w[i] > 0 {
				return WeightedHistogram{}, fmt.Errorf("metrics: observation %d is NaN", i)
			}
		case v < lo:
			h.Under += w[i]
		case v >= hi:
			h.Over += w[i]
		default:
			b := min(int((v-lo)/width), bins-1)
			h.Mass[b] += w[i]
		}
	}
	return h, nil
}
