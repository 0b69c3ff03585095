package minimize

import (
	"fmt"
	"math"
	"sort"
)

// ClusterOptions are the tolerances of state identification. Zero fields take the
// defaults in brackets.
type ClusterOptions struct {
	// DistTol is the largest absolute difference of sorted pair distances within one state
	// [1e-3].
	DistTol float64
	// EnergyTol is the largest energy difference within one state [1e-5].
	EnergyTol float64
}

func (o ClusterOptions) withDefaults() ClusterOptions {
	if o.DistTol <= 0 {
		o.DistTol = 1e-3
	}
	if o.EnergyTol <= 0 {
		o.EnergyTol = 1e-5
	}
	return o
}

// State is one distinct stationary point.
type State struct {
	// ID numbers states by ascending energy from 0.
	ID int `json:"id"`
	// Energy is the lowest energy among the members.
	Energy float64 `json:"energy"`
	// Count is the number of members.
	Count int `json:"count"`
	// Representative is the index (in the input) of the lowest-energy member.
	Representative int `json:"representative"`
	// IsMinimum is the representative's IsMinimum; MinEigenvalue its lowest non-rigid
	// Hessian eigenvalue (when known).
	IsMinimum     bool    `json:"is_minimum"`
	MinEigenvalue float64 `json:"min_eigenvalue"`
	// Distances is the representative's sorted pair distances (the fingerprint).
	Distances []float64 `json:"sorted_pair_distances"`
}

// SortedPairDistances is the fingerprint of a configuration (flattened, particle-major): all
// N(N−1)/2 pair distances in ascending order. It is invariant under permutations, rotations,
// reflections and translations.
func SortedPairDistances(x []float64, dim int) []float64 {
	n := len(x) / dim
	out := make([]float64, 0, n*(n-1)/2)
	for i := range n {
		for j := i + 1; j < n; j++ {
			d2 := 0.0
			for k := range dim {
				t := x[i*dim+k] - x[j*dim+k]
				d2 += t * t
			}
			out = append(out, math.Sqrt(d2))
		}
	}
	sort.Float64s(out)
	return out
}

// MaxAbsDiff is the largest absolute difference of two equally long fingerprints.
func MaxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// Point is one configuration to be grouped.
type Point struct {
	X         []float64
	Energy    float64
	IsMinimum bool
	// MinEigenvalue is the lowest non-rigid Hessian eigenvalue (NaN if unknown).
	MinEigenvalue float64
}

// Cluster groups points into states: in order of ascending energy, each point joins the
// first existing state whose representative is within the tolerances, or starts a new one.
// It returns the states by ascending energy and the state index of each point.
func Cluster(points []Point, dim int, opt ClusterOptions) ([]State, []int, error) {
	opt = opt.withDefaults()
	if dim <= 0 {
		return nil, nil, fmt.Errorf("minimize: dimension %d", dim)
	}
	order := make([]int, len(points))
	fps := make([][]float64, len(points))
	for i, p := range points {
		if len(p.X) == 0 || len(p.X)%dim != 0 || (i > 0 && len(p.X) != len(points[0].X)) {
			return nil, nil, fmt.Errorf("minimize: point %d has %d coordinates (dimension %d, first point %d)", i, len(p.X), dim, len(points[0].X))
		}
		if !finite(p.Energy) {
			return nil, nil, fmt.Errorf("minimize: point %d has energy %v", i, p.Energy)
		}
		order[i] = i
		fps[i] = SortedPairDistances(p.X, dim)
	}
	sort.SliceStable(order, func(a, b int) bool { return points[order[a]].Energy < points[order[b]].Energy })
	assign := make([]int, len(points))
	var states []State
	for _, i := range order {
		found := -1
		for s := range states {
			rep := states[s].Representative
			if math.Abs(points[i].Energy-points[rep].Energy) <= opt.EnergyTol && MaxAbsDiff(fps[i], fps[rep]) <= opt.DistTol {
				found = s
				break
			}
		}
		if found < 0 {
			found = len(states)
			states = append(states, State{ID: found, Energy: points[i].Energy, Representative: i,
				IsMinimum: points[i].IsMinimum, MinEigenvalue: points[i].MinEigenvalue, Distances: fps[i]})
		}
		states[found].Count++
		assign[i] = found
	}
	return states, assign, nil
}
