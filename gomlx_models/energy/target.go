package energy

import (
	"fmt"
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph"
)

// Target is the Boltzmann density p(x) ∝ exp(−Energy(x)/Temperature) toward which energy-based
// (reverse KL) training pulls a flow.
type Target struct {
	// Name identifies the energy in errors and logs (e.g. "dw4").
	Name string
	// Energy maps positions [B, N, D] to energies [B] (differentiable).
	Energy Func
	// Temperature T > 0 (0 is taken as 1).
	Temperature float64
}

// Normalized returns t with the default temperature filled in, or an error naming the target
// when it has no energy or an invalid temperature.
func (t Target) Normalized() (Target, error) {
	if t.Energy == nil {
		return t, fmt.Errorf("energy: target %q has no energy function", t.Name)
	}
	if t.Temperature == 0 {
		t.Temperature = 1
	}
	if err := CheckTemperature(t.Temperature); err != nil {
		return t, fmt.Errorf("target %q: %w", t.Name, err)
	}
	return t, nil
}

// Target returns s as a target at temperature T.
func (s System) Target(T float64) Target {
	return Target{Name: s.Name, Energy: s.Energy, Temperature: T}
}

// KLResult holds the batch means of one energy-based (reverse KL) evaluation of a flow on
// samples x = f(z), z ~ q_Z.
type KLResult struct {
	// Loss is what is minimised: KL plus the model's regulariser term, if any.
	Loss float64
	// KL is E[u(x)/T − log|det ∂x/∂z|]: the reverse KL without the θ-independent prior term
	// E[log q_Z(z)] and without log Z_T (bgflow's "KL loss"; it can be negative).
	KL float64
	// KLPrior is E[log q_X(x) + u(x)/T] = KL + E[log q_Z(z)]: the reverse KL(q_X ‖ p) up to the
	// unknown log Z_T only.
	KLPrior float64
	// MeanEnergy is E[u(x)] of the batch (not divided by T).
	MeanEnergy float64
	// Reg is the batch mean of the model's regulariser (CNF: ∫₀¹ ‖εᵀ∂f/∂x‖² + ‖f‖² dt), 0 if none.
	Reg float64
}

// DefaultCutMax is the energy above which LinLogCut stops growing (its gradient is zero there).
const DefaultCutMax = 1e9

// LinLogCut returns f with energies above high compressed logarithmically, as bgflow's
// "linlogcut" does for energy training of systems with hard cores (LJ): u' = u for u ≤ high,
// high + ln(1 + u − high) above, after clamping u at max (> high). Overlapping particles then
// give a finite loss with a bounded gradient instead of u ≈ 10¹⁰ or more. It changes the target
// only where exp(−u/T) is negligible for any sensible high (e.g. 1e3 above the data's energies).
func LinLogCut(f Func, high, max float64) (Func, error) {
	switch {
	case f == nil:
		return nil, fmt.Errorf("energy: nil energy function")
	case math.IsNaN(high) || math.IsInf(high, 0):
		return nil, fmt.Errorf("energy: energy cut must be finite, got %v", high)
	case !(max > high) || math.IsInf(max, 0):
		return nil, fmt.Errorf("energy: energy cut maximum %v must be finite and above the cut %v", max, high)
	}
	return func(x *Node) *Node {
		u := MinScalar(f(x), max)
		over := MaxScalar(AddScalar(u, -high), 0)
		return Add(MinScalar(u, high), Log1p(over))
	}, nil
}
