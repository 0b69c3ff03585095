// Package energy holds the DW4 and LJ13 energies as GoMLX graph functions, for training
// Boltzmann generators by energy (reverse KL) and for reweighting flow samples.
//
// Every energy maps positions x of shape [B, N, D] (float32 or float64) to one energy per
// configuration, shape [B]. The pair sums run over a full N×N pair grid with a constant
// mask that keeps each unordered pair once (i < j). Pairs outside the mask (the diagonal and
// the lower triangle) get r² + 1 before the square root, so their distances are never zero
// and no gradient of any order is NaN there; counted pairs get r² + 1e-30, which leaves every
// realistic distance unchanged in float32 and float64 and keeps the first derivative of the
// distance finite when two particles coincide. The graphs use only element-wise ops,
// Reshape, broadcasting and reductions: no Concatenate or Slice, whose second-order
// gradients need Pad, which SimpleGo lacks.
//
// The host-side energies of etl/particles are the reference: tests check that both agree
// to 1e-9 relative on the shipped DW4/LJ13 data, with equal gradients.
//
// Graph functions panic on bad shapes, as GoMLX graph functions do; graph.Exec and
// graph.ExecOnce turn the panic into an error. Check validates a shape beforehand.
package energy

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/support/exceptions"

	"github.com/enflow/enflow/etl/particles"
)

// Func maps positions [B, N, D] to energies [B].
type Func func(x *Node) *Node

// coincidentEps is added to r² of counted pairs (see the package documentation).
const coincidentEps = 1e-30

// DoubleWell is the multi double-well pair potential: each unordered pair at distance d
// contributes A·(d−D0)⁴ + B·(d−D0)² + C.
type DoubleWell struct {
	A, B, C, D0 float64
}

// LennardJones is the Lennard-Jones cluster with a harmonic restraint:
//
//	u(x) = PairFactor · Σ_{i<j} Eps·((Rm/d_ij)¹² − 2·(Rm/d_ij)⁶) + Oscillator · ½ Σ_i ‖x_i − x̄‖².
//
// PairFactor 1 counts every unordered pair once (bgflow/DEM, the energy stored in our
// tables); PairFactor 2 counts every pair twice (the en_flows / Köhler et al. double sum
// without ½, which is the density the shipped LJ13 data follow; see etl/particles
// LJ13SamplingPotential). A zero PairFactor is taken as 1.
type LennardJones struct {
	Eps, Rm, Oscillator, PairFactor float64
}

// The paper's systems.
var (
	// DW4Params: a = 0.9, b = −4, c = 0, d0 = 4 (REFERENCE §1.1).
	DW4Params = DoubleWell{A: 0.9, B: -4, C: 0, D0: 4}
	// LJ13Params: ε = rm = 1, restraint scale 1, every pair once (REFERENCE §1.2).
	LJ13Params = LennardJones{Eps: 1, Rm: 1, Oscillator: 1, PairFactor: 1}
	// LJ13TwiceParams: as LJ13Params with every pair counted twice.
	LJ13TwiceParams = LennardJones{Eps: 1, Rm: 1, Oscillator: 1, PairFactor: 2}
)

// pairGeometry returns, for x [B, N, D], the pair distances d [B, N, N] (safe, see the
// package documentation) and the constant mask [1, N, N] of counted pairs (1 for i < j).
func pairGeometry(x *Node) (d, mask *Node) {
	if x.Rank() != 3 {
		exceptions.Panicf("energy: positions must have shape [B, N, D], got %s", x.Shape())
	}
	b, n, dim := x.Shape().Dimensions[0], x.Shape().Dimensions[1], x.Shape().Dimensions[2]
	g := x.Graph()
	diff := Sub(Reshape(x, b, n, 1, dim), Reshape(x, b, 1, n, dim))
	r2 := ReduceSum(Square(diff), -1) // [B, N, N]
	m := make([][]float64, n)
	pad := make([][]float64, n)
	for i := range n {
		m[i] = make([]float64, n)
		pad[i] = make([]float64, n)
		for j := range n {
			if i < j {
				m[i][j] = 1
				pad[i][j] = coincidentEps
			} else {
				pad[i][j] = 1
			}
		}
	}
	mask = Reshape(ConstAsDType(g, x.DType(), m), 1, n, n)
	safe := Reshape(ConstAsDType(g, x.DType(), pad), 1, n, n)
	d = Sqrt(Add(r2, safe))
	return d, mask
}

// Energy is the double-well energy of x [B, N, D], shape [B].
func (p DoubleWell) Energy(x *Node) *Node {
	d, mask := pairGeometry(x)
	u := AddScalar(d, -p.D0)
	u2 := Square(u)
	pair := AddScalar(Add(MulScalar(Square(u2), p.A), MulScalar(u2, p.B)), p.C)
	return ReduceSum(Mul(pair, mask), 1, 2)
}

// Energy is the Lennard-Jones energy of x [B, N, D], shape [B].
func (p LennardJones) Energy(x *Node) *Node {
	d, mask := pairGeometry(x)
	factor := p.PairFactor
	if factor == 0 {
		factor = 1
	}
	s2 := Square(MulScalar(Reciprocal(d), p.Rm)) // (rm/d)²
	s6 := Mul(Square(s2), s2)
	pair := Mul(s6, AddScalar(s6, -2))
	e := MulScalar(ReduceSum(Mul(pair, mask), 1, 2), factor*p.Eps)
	if p.Oscillator != 0 {
		e = Add(e, MulScalar(Restraint(x), p.Oscillator))
	}
	return e
}

// Restraint is ½ Σ_i ‖x_i − x̄‖² of x [B, N, D], shape [B].
func Restraint(x *Node) *Node {
	b, dim := x.Shape().Dimensions[0], x.Shape().Dimensions[2]
	mean := Reshape(ReduceMean(x, 1), b, 1, dim)
	return MulScalar(ReduceSum(Square(Sub(x, mean)), 1, 2), 0.5)
}

// System is a named energy with its particle count and dimension.
type System struct {
	// Name is the registry name ("dw4", "lj13", "lj13-twice").
	Name string
	// Particles and Dim are N and D of the positions [B, N, D].
	Particles, Dim int
	// Energy is the graph energy (temperature 1).
	Energy Func
	// Host is the same energy on the host (etl/particles), for minimisation and checks.
	Host particles.Potential
	// Data is the particle system whose tables this energy applies to.
	Data particles.System
	// Doc is a one-line description.
	Doc string
}

var registry = map[string]System{
	"dw4": {Name: "dw4", Particles: 4, Dim: 2, Energy: DW4Params.Energy, Host: particles.DW4Potential,
		Data: particles.DW4, Doc: "DW4 double well 0.9(d−4)⁴ − 4(d−4)², each pair once"},
	"lj13": {Name: "lj13", Particles: 13, Dim: 3, Energy: LJ13Params.Energy, Host: particles.LJ13Potential,
		Data: particles.LJ13, Doc: "LJ13, ε = rm = 1, each pair once, + ½Σ‖x−x̄‖² (the table energy)"},
	"lj13-twice": {Name: "lj13-twice", Particles: 13, Dim: 3, Energy: LJ13TwiceParams.Energy,
		Host: particles.LJ13SamplingPotential, Data: particles.LJ13,
		Doc: "LJ13 with each pair counted twice, + ½Σ‖x−x̄‖² (the density of the shipped LJ13 data)"},
}

// Names lists the registered energies in sorted order.
func Names() []string {
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ByName returns the registered energy: "dw4", "lj13" (each pair once) or "lj13-twice"
// (each pair twice). Names are case-insensitive; "_" may replace "-".
func ByName(name string) (System, error) {
	key := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "_", "-")
	if s, ok := registry[key]; ok {
		return s, nil
	}
	return System{}, fmt.Errorf("energy: unknown energy %q (want one of %s)", name, strings.Join(Names(), ", "))
}

// ForSystem returns the default energy of a particle system name ("dw4" → dw4, "lj13" →
// lj13) or, when energyName is not empty, that energy after checking that it applies to
// the system (e.g. "lj13-twice" for lj13).
func ForSystem(system, energyName string) (System, error) {
	ps, err := particles.SystemByName(system)
	if err != nil {
		return System{}, fmt.Errorf("energy: %w", err)
	}
	if energyName == "" {
		energyName = ps.Name
	}
	s, err := ByName(energyName)
	if err != nil {
		return System{}, err
	}
	if s.Data.Name != ps.Name {
		return System{}, fmt.Errorf("energy: energy %q is for system %s, not %s", s.Name, s.Data.Name, ps.Name)
	}
	return s, nil
}

// CheckTemperature returns an error unless T is finite and > 0.
func CheckTemperature(T float64) error {
	if !(T > 0) || math.IsInf(T, 0) {
		return fmt.Errorf("energy: temperature must be finite and > 0, got %v", T)
	}
	return nil
}

// Reduced returns the reduced energy u(x)/T of f.
func Reduced(f Func, T float64) (Func, error) {
	if f == nil {
		return nil, fmt.Errorf("energy: nil energy function")
	}
	if err := CheckTemperature(T); err != nil {
		return nil, err
	}
	if T == 1 {
		return f, nil
	}
	return func(x *Node) *Node { return DivScalar(f(x), T) }, nil
}

// Reduced returns s's reduced energy u(x)/T.
func (s System) Reduced(T float64) (Func, error) { return Reduced(s.Energy, T) }

// CheckShape returns an error unless shape is [B, Particles, Dim] of float32 or float64.
func (s System) CheckShape(shape shapes.Shape) error {
	if shape.DType != dtypes.Float32 && shape.DType != dtypes.Float64 {
		return fmt.Errorf("energy %s: positions have dtype %s, want float32 or float64", s.Name, shape.DType)
	}
	if shape.Rank() != 3 || shape.Dimensions[1] != s.Particles || shape.Dimensions[2] != s.Dim {
		return fmt.Errorf("energy %s: positions have shape %v, want [B, %d, %d]", s.Name, shape.Dimensions, s.Particles, s.Dim)
	}
	return nil
}

// Checked is s.Energy with a shape check that panics with CheckShape's message (GoMLX
// turns the panic into an error of Exec) instead of failing somewhere inside the graph.
func (s System) Checked(x *Node) *Node {
	if err := s.CheckShape(x.Shape()); err != nil {
		exceptions.Panicf("%v", err)
	}
	return s.Energy(x)
}
