package prior

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sizes is the distribution p(M) of the number of atoms M of a molecule: a histogram of molecule
// sizes counted over a training split, as en_flows' DistributionNodes. It is stored with every
// molecule model (model.json), so the size term of the bound and sampling use the distribution
// of the data the model was trained on.
type Sizes struct {
	// Counts[m] is the number of training molecules with m atoms (len = largest size + 1).
	Counts []int64 `json:"counts"`
}

// qm9SizeCounts is the reference QM9 histogram (en_flows analyzed['n_nodes'], EDM qm9_with_h):
// train molecules with m atoms, m = 0..29 (sizes 0, 1, 2 and 28 never occur; total 100,000).
var qm9SizeCounts = [...]int64{
	3: 1, 4: 4, 5: 5, 6: 9, 7: 16, 8: 49, 9: 124, 10: 362, 11: 807, 12: 1689,
	13: 3060, 14: 5136, 15: 7796, 16: 10644, 17: 13025, 18: 13364, 19: 13832, 20: 9482,
	21: 9970, 22: 3393, 23: 4848, 24: 539, 25: 1506, 26: 48, 27: 266, 29: 25,
}

// QM9Sizes returns the reference QM9 size histogram (the 100,000 molecules of the standard
// train split), the p(M) of the published model.
func QM9Sizes() Sizes { return Sizes{Counts: append([]int64(nil), qm9SizeCounts[:]...)} }

// SizesFromCounts builds a distribution from the sizes of a data set (count of molecules per
// size). Sizes must be ≥ 1.
func SizesFromCounts(bySize map[int]int64) (Sizes, error) {
	maxM := 0
	for m, c := range bySize {
		if m < 1 || c < 0 {
			return Sizes{}, fmt.Errorf("prior: size histogram entry %d atoms × %d molecules is invalid", m, c)
		}
		maxM = max(maxM, m)
	}
	s := Sizes{Counts: make([]int64, maxM+1)}
	for m, c := range bySize {
		s.Counts[m] = c
	}
	if s.Total() == 0 {
		return Sizes{}, fmt.Errorf("prior: empty size histogram")
	}
	return s, nil
}

// Total is the number of molecules counted.
func (s Sizes) Total() int64 {
	var t int64
	for _, c := range s.Counts {
		t += c
	}
	return t
}

// MaxAtoms is the largest size with a non-zero count (0 for an empty histogram).
func (s Sizes) MaxAtoms() int {
	for m := len(s.Counts) - 1; m >= 0; m-- {
		if s.Counts[m] > 0 {
			return m
		}
	}
	return 0
}

// Validate checks that the histogram has at least one molecule and no negative count.
func (s Sizes) Validate() error {
	for m, c := range s.Counts {
		if c < 0 {
			return fmt.Errorf("prior: size histogram: %d molecules of %d atoms", c, m)
		}
	}
	if s.Total() == 0 {
		return fmt.Errorf("prior: size histogram has no molecule")
	}
	return nil
}

// LogProb returns log p(M) = ln(count_M/total + 1e-30), the size term of the QM9 bound. As the
// reference (a KeyError there), it fails for sizes absent from the histogram.
func (s Sizes) LogProb(m int) (float64, error) {
	if m < 0 || m >= len(s.Counts) || s.Counts[m] == 0 {
		return 0, fmt.Errorf("prior: log p(M): no training molecule has %d atoms", m)
	}
	return math.Log(float64(s.Counts[m])/float64(s.Total()) + 1e-30), nil
}

// Entropy returns H[M] = −Σ p·ln p (nats).
func (s Sizes) Entropy() float64 {
	t := float64(s.Total())
	var h float64
	for _, c := range s.Counts {
		if c > 0 {
			p := float64(c) / t
			h -= p * math.Log(p)
		}
	}
	return h
}

// Present lists the sizes with a non-zero count, ascending.
func (s Sizes) Present() []int {
	var out []int
	for m, c := range s.Counts {
		if c > 0 {
			out = append(out, m)
		}
	}
	sort.Ints(out)
	return out
}

// SizeSampler draws molecule sizes M with probability count_M/total. It is deterministic for a
// given seed and not safe for concurrent use.
type SizeSampler struct {
	rng   *rand.Rand
	cum   []int64 // cum[m] = Σ_{k≤m} Counts[k]
	total int64
}

// NewSampler returns a sampler of s seeded with seed (PCG, stream 0).
func (s Sizes) NewSampler(seed uint64) *SizeSampler {
	sp := &SizeSampler{rng: rand.New(rand.NewPCG(seed, 0)), cum: make([]int64, len(s.Counts))}
	var c int64
	for m, k := range s.Counts {
		c += k
		sp.cum[m] = c
	}
	sp.total = c
	return sp
}

// Sample draws one size: a uniform integer r in [0, total) selects the smallest M with
// cum[M] > r, so each M is drawn with probability exactly count_M/total.
func (sp *SizeSampler) Sample() int {
	if sp.total <= 0 {
		return 0
	}
	r := sp.rng.Int64N(sp.total)
	lo, hi := 0, len(sp.cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if sp.cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// SampleN draws k sizes (none when k ≤ 0).
func (sp *SizeSampler) SampleN(k int) []int {
	if k <= 0 {
		return nil
	}
	out := make([]int, k)
	for i := range out {
		out[i] = sp.Sample()
	}
	return out
}
