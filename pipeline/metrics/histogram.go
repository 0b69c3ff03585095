package metrics

import (
	"fmt"
	"math"

	"github.com/enflow/enflow/etl/molecule"
)

// Relative-distance histogram parameters of the reference Histogram_cont(num_bins=100,
// range=[0,13], ignore_zeros=True).
const (
	DistBins   = 100   // number of bins
	DistMax    = 13.0  // Å; bin width DistMax/DistBins = 0.13 Å, values ≥ DistMax go to the last bin
	DistIgnore = 1e-8  // values ≤ DistIgnore (and NaN) are not counted
	jsEpsilon  = 1e-10 // added to each normalised bin before JS/KL, without renormalising
)

// DistanceBin returns the bin of a relative distance e (Å) and whether it is counted:
// e is counted iff e > 1e-8, and its bin is min(int(e/13·100), 99).
func DistanceBin(e float64) (int, bool) {
	if !(e > DistIgnore) { // also rejects NaN, as the reference's comparison does
		return 0, false
	}
	x := e / DistMax * DistBins // evaluated as (e/13)·100, like the reference
	if !(x < DistBins-1) {      // also catches +Inf, for which int() is undefined
		return DistBins - 1, true
	}
	return int(x), true
}

// DistanceHistogram is the histogram of relative distances of the reference
// (main_qm9_pos.py::visualize_histograms): for each molecule, the full n×n matrix of Euclidean
// distances in both orders (i,j) and (j,i), zeros ignored. The zero value is empty.
type DistanceHistogram struct {
	Bins [DistBins]int64
}

// Add counts one relative distance (Å).
func (h *DistanceHistogram) Add(e float64) {
	if b, ok := DistanceBin(e); ok {
		h.Bins[b]++
	}
}

// AddPositions counts all ordered pairs i≠j of one molecule (positions in Å). Each unordered
// pair is counted twice, since the distance is the same in both orders. Distances are computed
// in float64; the reference computes them in float32 torch, which moves a handful of
// distances across bin edges (on the 1,813 real 19-atom test molecules JS against analyzed_19
// is 3.5822e-5 in float64 and 3.5811e-5 in float32 arithmetic; both are the published 3.6e-5).
func (h *DistanceHistogram) AddPositions(pos [][3]float64) {
	for i := range pos {
		for j := i + 1; j < len(pos); j++ {
			if b, ok := DistanceBin(math.Sqrt(pairDist2(&pos[i], &pos[j]))); ok {
				h.Bins[b] += 2
			}
		}
	}
}

// AddMolecule is AddPositions for a molecule record.
func (h *DistanceHistogram) AddMolecule(m *molecule.Molecule) { h.AddPositions(m.Positions) }

// Merge adds the counts of o to h.
func (h *DistanceHistogram) Merge(o *DistanceHistogram) {
	for i, c := range o.Bins {
		h.Bins[i] += c
	}
}

// Total is the number of counted ordered pairs.
func (h *DistanceHistogram) Total() int64 {
	var t int64
	for _, c := range h.Bins {
		t += c
	}
	return t
}

// Floats returns the counts as float64, the input form of JSDivergence and SymmetricKL.
func (h *DistanceHistogram) Floats() []float64 { return intsToFloats(h.Bins[:]) }

func intsToFloats(c []int64) []float64 {
	out := make([]float64, len(c))
	for i, v := range c {
		out[i] = float64(v)
	}
	return out
}

// Analyzed19Distances is the reference distance histogram analyzed_19['distances'] of en_flows
// and EDM: 4,730,544 ordered pairs from the 13,832 train molecules with 19 atoms.
var Analyzed19Distances = [DistBins]int64{
	0, 0, 0, 0, 0, 0, 0, 22566, 258690, 16534, 50256, 181302, 19676, 122590, 23874, 54834, 309290, 205426, 172004, 229940,
	193180, 193058, 161294, 178292, 152184, 157242, 189186, 150298, 125750, 147020, 127574, 133654, 142696, 125906, 98168, 95340, 88632, 80694, 71750, 64466,
	55740, 44570, 42850, 36084, 29310, 27268, 23696, 20254, 17112, 14130, 12220, 10660, 9112, 7640, 6378, 5350, 4384, 3650, 2840, 2362,
	2050, 1662, 1414, 1216, 966, 856, 492, 516, 420, 326, 388, 326, 236, 140, 130, 92, 62, 52, 78, 56,
	24, 8, 10, 12, 18, 2, 10, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
}

// Analyzed19AtomTypes is analyzed_19['atom_types'] by type index (H, C, N, O, F).
var Analyzed19AtomTypes = [NumTypes]int64{139496, 93818, 8251, 21212, 26}

// Analyzed19Histogram returns Analyzed19Distances as float64 counts.
func Analyzed19Histogram() []float64 { return intsToFloats(Analyzed19Distances[:]) }

// normalise returns h/Σh + 1e-10 per bin (no renormalisation), as the reference does.
func normalise(h []float64, name string) ([]float64, error) {
	for i, v := range h {
		if !(v >= 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: bin %d is %v, want a finite count ≥ 0", name, i, v)
		}
	}
	sum := pairwiseSum(h)
	if !(sum > 0) {
		return nil, fmt.Errorf("%s: histogram is empty", name)
	}
	p := make([]float64, len(h))
	for i, v := range h {
		p[i] = v/sum + jsEpsilon
	}
	return p, nil
}

func normalisePair(h1, h2 []float64) ([]float64, []float64, error) {
	if len(h1) != len(h2) {
		return nil, nil, fmt.Errorf("histograms have %d and %d bins", len(h1), len(h2))
	}
	if len(h1) == 0 {
		return nil, nil, fmt.Errorf("histograms have no bins")
	}
	p1, err := normalise(h1, "first histogram")
	if err != nil {
		return nil, nil, err
	}
	p2, err := normalise(h2, "second histogram")
	if err != nil {
		return nil, nil, err
	}
	return p1, p2, nil
}

// kl is Σ p·ln(p/q), summed like numpy.
func kl(p, q []float64) float64 {
	t := make([]float64, len(p))
	for i := range p {
		t[i] = p[i] * math.Log(p[i]/q[i])
	}
	return pairwiseSum(t)
}

// JSDivergence returns the Jensen–Shannon divergence (nats) between two histograms of counts,
// exactly as the reference js_divergence: p = h/Σh + 1e-10 without renormalisation,
// M = (p1+p2)/2, JS = ½·KL(p1‖M) + ½·KL(p2‖M).
func JSDivergence(h1, h2 []float64) (float64, error) {
	p1, p2, err := normalisePair(h1, h2)
	if err != nil {
		return 0, fmt.Errorf("metrics: JS divergence: %w", err)
	}
	m := make([]float64, len(p1))
	for i := range p1 {
		m[i] = (p1[i] + p2[i]) / 2
	}
	return (kl(p1, m) + kl(p2, m)) / 2, nil
}

// SymmetricKL returns ½(KL(p1‖p2) + KL(p2‖p1)) (nats) with the same normalisation as
// JSDivergence (the reference kl_divergence_sym).
func SymmetricKL(h1, h2 []float64) (float64, error) {
	p1, p2, err := normalisePair(h1, h2)
	if err != nil {
		return 0, fmt.Errorf("metrics: symmetric KL: %w", err)
	}
	return (kl(p1, p2) + kl(p2, p1)) / 2, nil
}

// pairwiseSum sums a like numpy's float64 add.reduce on a contiguous array (pairwise
// summation with 8 accumulators and blocks of 128), so results match numpy bit for bit
// whenever the summands do.
func pairwiseSum(a []float64) float64 {
	n := len(a)
	switch {
	case n < 8:
		var s float64
		for _, v := range a {
			s += v
		}
		return s
	case n <= 128:
		var r [8]float64
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for k := range 8 {
				r[k] += a[i+k]
			}
		}
		s := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			s += a[i]
		}
		return s
	default:
		n2 := n / 2
		n2 -= n2 % 8
		return pairwiseSum(a[:n2]) + pairwiseSum(a[n2:])
	}
}
