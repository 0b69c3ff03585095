// Package minimize takes particle configurations to their local energy minima and counts
// the distinct metastable states among them (the "discovery" experiment of Köhler, Klein
// and Noé, Equivariant Flows, §4).
//
// Each configuration is minimised on the host with gonum's L-BFGS (a quasi-Newton method:
// second order, no momentum) on the analytic energy and gradient of etl/particles, to a
// Euclidean gradient-norm tolerance; when L-BFGS stalls above it (line-search failure close
// to the minimum), Newton steps with the finite-difference Hessian finish the job. At the
// end point the Hessian (central differences of the analytic gradient, symmetrised) is
// projected onto the orthogonal complement of the rigid-body motions — D translations and
// D(D−1)/2 rotations, D(D+1)/2 modes in all (3 in 2-D, 6 in 3-D) — and the point is a
// minimum when every remaining eigenvalue exceeds a tolerance.
//
// Minima are grouped by a permutation-, rotation-, reflection- and translation-invariant
// fingerprint: the sorted list of all pair distances, two points being the same state when
// the largest absolute difference of their sorted distances and their energy difference are
// both below tolerances.
package minimize

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/gomlx_models/energy"
)

// Options control one minimisation. Zero fields take the defaults in brackets.
type Options struct {
	// GradTol is the Euclidean norm of the gradient at which a point counts as stationary
	// [1e-8].
	GradTol float64
	// MaxIter bounds the L-BFGS iterations [20000].
	MaxIter int
	// HessStep is the central-difference step of the Hessian [1e-5].
	HessStep float64
	// EigTol: a stationary point is a minimum when all non-rigid Hessian eigenvalues are
	// > EigTol [1e-6].
	EigTol float64
}

func (o Options) withDefaults() Options {
	if o.GradTol <= 0 {
		o.GradTol = 1e-8
	}
	if o.MaxIter <= 0 {
		o.MaxIter = 20000
	}
	if o.HessStep <= 0 {
		o.HessStep = 1e-5
	}
	if o.EigTol <= 0 {
		o.EigTol = 1e-6
	}
	return o
}

// Result is the outcome of one minimisation.
type Result struct {
	// X is the end point, mean removed (flattened particle-major).
	X []float64
	// Energy is u(X) (temperature 1); InitialEnergy is u(x0).
	Energy, InitialEnergy float64
	// GradNorm is ‖∇u(X)‖₂.
	GradNorm float64
	// Iterations counts L-BFGS iterations plus Newton steps; Evaluations counts energy and
	// gradient evaluations (Hessians excluded).
	Iterations, Evaluations int
	// Status is gonum's termination status, with "+newton" when Newton steps followed.
	Status string
	// Converged reports GradNorm < GradTol.
	Converged bool
	// ZeroModes is the number of rigid-body modes projected out (D(D+1)/2 unless the
	// configuration is degenerate, e.g. collinear in 3-D).
	ZeroModes int
	// Eigenvalues are those of the Hessian on the complement of the rigid-body modes,
	// ascending (N·D − ZeroModes of them).
	Eigenvalues []float64
	// IsMinimum reports Converged and every eigenvalue > EigTol.
	IsMinimum bool
}

// Minimizer minimises configurations of one system under one energy.
type Minimizer struct {
	Energy energy.System
	Opts   Options
}

// New returns a minimiser for a particle system ("dw4", "lj13") and an energy of it (""
// for the system's default; "lj13-twice" counts LJ13 pairs twice).
func New(system, energyName string, opts Options) (*Minimizer, error) {
	s, err := energy.ForSystem(system, energyName)
	if err != nil {
		return nil, fmt.Errorf("minimize: %w", err)
	}
	if math.IsNaN(opts.GradTol) || math.IsNaN(opts.EigTol) || math.IsNaN(opts.HessStep) {
		return nil, fmt.Errorf("minimize: NaN tolerance")
	}
	return &Minimizer{Energy: s, Opts: opts.withDefaults()}, nil
}

// ErrNonFinite is returned (wrapped) for a start point whose energy or gradient is not finite.
var ErrNonFinite = errors.New("non-finite energy or gradient")

func (m *Minimizer) flat() int { return m.Energy.Particles * m.Energy.Dim }

func (m *Minimizer) check(x []float64) error {
	if len(x) != m.flat() {
		return fmt.Errorf("minimize: %s configuration has %d coordinates, want %d (%d particles × %d dims)",
			m.Energy.Name, len(x), m.flat(), m.Energy.Particles, m.Energy.Dim)
	}
	for k, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("minimize: coordinate %d is %v", k, v)
		}
	}
	return nil
}

// Minimize runs the minimisation from x0 (not modified) and analyses the end point.
// A failure to converge is not an error (Result.Converged is false); a malformed or
// non-finite start point is.
func (m *Minimizer) Minimize(x0 []float64) (Result, error) {
	if err := m.check(x0); err != nil {
		return Result{}, err
	}
	pot, dim, opt := m.Energy.Host, m.Energy.Dim, m.Opts
	n := len(x0)
	g0 := make([]float64, n)
	e0 := pot.EnergyGrad(x0, dim, g0)
	if !finite(e0) || !allFinite(g0) {
		return Result{}, fmt.Errorf("minimize: start point: %w (energy %v)", ErrNonFinite, e0)
	}
	evals := 1
	problem := optimize.Problem{
		Func: func(x []float64) float64 {
			evals++
			e := pot.EnergyGrad(x, dim, nil)
			if math.IsNaN(e) {
				return math.Inf(1)
			}
			return e
		},
		Grad: func(grad, x []float64) {
			evals++
			pot.EnergyGrad(x, dim, grad)
		},
	}
	settings := &optimize.Settings{
		// gonum checks the infinity norm; ‖g‖∞ < tol/√n implies ‖g‖₂ < tol.
		GradientThreshold: opt.GradTol / math.Sqrt(float64(n)),
		Converger:         &optimize.FunctionConverge{Absolute: 0, Relative: 0, Iterations: 200},
		MajorIterations:   opt.MaxIter,
	}
	x := append([]float64(nil), x0...)
	status := "not run"
	iters := 0
	res, err := optimize.Minimize(problem, x, settings, &optimize.LBFGS{GradStopThreshold: math.NaN()})
	if res != nil {
		status = res.Status.String()
		iters = res.Stats.MajorIterations
		if finite(res.F) && res.F <= e0 && allFinite(res.X) {
			x = res.X
		}
	}
	_ = err // a line-search failure near the minimum is expected; the gradient check decides
	grad := make([]float64, n)
	e := pot.EnergyGrad(x, dim, grad)
	gn := norm(grad)
	if gn >= opt.GradTol {
		var steps int
		x, e, gn, steps, evals = m.newton(x, e, gn, evals)
		if steps > 0 {
			status += "+newton"
			iters += steps
		}
	}
	particles.RemoveMean(x, dim)
	r := Result{X: x, Energy: e, InitialEnergy: e0, GradNorm: gn, Iterations: iters, Evaluations: evals,
		Status: status, Converged: gn < opt.GradTol}
	ev, zero, err := m.InternalEigenvalues(x)
	if err != nil {
		return r, err
	}
	r.Eigenvalues, r.ZeroModes = ev, zero
	r.IsMinimum = r.Converged && len(ev) > 0 && ev[0] > opt.EigTol
	return r, nil
}

// newton takes up to 50 saddle-free Newton steps (|λ| in place of λ, on the non-rigid
// subspace) with backtracking on the energy, until the gradient norm is below GradTol.
func (m *Minimizer) newton(x []float64, e, gn float64, evals int) ([]float64, float64, float64, int, int) {
	pot, dim, opt := m.Energy.Host, m.Energy.Dim, m.Opts
	n := len(x)
	grad := make([]float64, n)
	trial := make([]float64, n)
	steps := 0
	for ; steps < 50 && gn >= opt.GradTol; steps++ {
		pot.EnergyGrad(x, dim, grad)
		evals++
		q, _ := internalBasis(x, dim)
		sym := m.internalHessian(x, q)
		var es mat.EigenSym
		if !es.Factorize(sym, true) {
			break
		}
		vals, k := es.Values(nil), sym.SymmetricDim()
		var vecs mat.Dense
		es.VectorsTo(&vecs)
		// Step in internal coordinates: δ = −Σ (vᵀ Qᵀ g)/|λ| v.
		gq := mat.NewVecDense(k, nil)
		gq.MulVec(q.T(), mat.NewVecDense(n, grad))
		delta := mat.NewVecDense(k, nil)
		for c := range k {
			lam := math.Max(math.Abs(vals[c]), 1e-8)
			coef := -mat.Dot(vecs.ColView(c), gq) / lam
			delta.AddScaledVec(delta, coef, vecs.ColView(c))
		}
		step := mat.NewVecDense(n, nil)
		step.MulVec(q, delta)
		improved := false
		for a := 1.0; a > 1e-6; a /= 2 {
			for i := range n {
				trial[i] = x[i] + a*step.AtVec(i)
			}
			et := pot.EnergyGrad(trial, dim, grad)
			evals++
			gt := norm(grad)
			if finite(et) && (et < e || (et <= e+1e-12*math.Max(1, math.Abs(e)) && gt < gn)) {
				copy(x, trial)
				e, gn = et, gt
				improved = true
				break
			}
		}
		if !improved {
			break
		}
	}
	return x, e, gn, steps, evals
}

// Hessian returns the Hessian of the energy at x by central differences of the analytic
// gradient with step Opts.HessStep, symmetrised.
func (m *Minimizer) Hessian(x []float64) *mat.SymDense {
	pot, dim, h := m.Energy.Host, m.Energy.Dim, m.Opts.HessStep
	n := len(x)
	xp := append([]float64(nil), x...)
	gp, gm := make([]float64, n), make([]float64, n)
	cols := mat.NewDense(n, n, nil)
	for j := range n {
		xp[j] = x[j] + h
		pot.EnergyGrad(xp, dim, gp)
		xp[j] = x[j] - h
		pot.EnergyGrad(xp, dim, gm)
		xp[j] = x[j]
		for i := range n {
			cols.Set(i, j, (gp[i]-gm[i])/(2*h))
		}
	}
	s := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			s.SetSym(i, j, 0.5*(cols.At(i, j)+cols.At(j, i)))
		}
	}
	return s
}

// InternalEigenvalues returns the ascending eigenvalues of the Hessian at x on the
// orthogonal complement of the rigid-body modes, and the number of modes removed.
func (m *Minimizer) InternalEigenvalues(x []float64) ([]float64, int, error) {
	if err := m.check(x); err != nil {
		return nil, 0, err
	}
	q, zero := internalBasis(x, m.Energy.Dim)
	sym := m.internalHessian(x, q)
	var es mat.EigenSym
	if !es.Factorize(sym, false) {
		return nil, zero, fmt.Errorf("minimize: Hessian eigen-decomposition failed")
	}
	vals := es.Values(nil)
	sort.Float64s(vals)
	return vals, zero, nil
}

// RigidModes returns an orthonormal basis (columns) of the rigid-body motions of x:
// D translations and the D(D−1)/2 infinitesimal rotations about the centroid, with
// degenerate directions (e.g. rotations about the axis of a collinear configuration)
// dropped.
func RigidModes(x []float64, dim int) *mat.Dense {
	n := len(x) / dim
	c := make([]float64, dim)
	for i := range n {
		for k := range dim {
			c[k] += x[i*dim+k] / float64(n)
		}
	}
	var vecs [][]float64
	for k := range dim {
		v := make([]float64, n*dim)
		for i := range n {
			v[i*dim+k] = 1
		}
		vecs = append(vecs, v)
	}
	for a := range dim {
		for b := a + 1; b < dim; b++ {
			v := make([]float64, n*dim)
			for i := range n {
				v[i*dim+a] = -(x[i*dim+b] - c[b])
				v[i*dim+b] = x[i*dim+a] - c[a]
			}
			vecs = append(vecs, v)
		}
	}
	// Gram–Schmidt (twice for stability), dropping near-dependent vectors.
	var basis [][]float64
	for _, v := range vecs {
		n0 := norm(v)
		for range 2 {
			for _, b := range basis {
				d := dot(v, b)
				for i := range v {
					v[i] -= d * b[i]
				}
			}
		}
		if nv := norm(v); nv > 1e-8*math.Max(1, n0) {
			for i := range v {
				v[i] /= nv
			}
			basis = append(basis, v)
		}
	}
	out := mat.NewDense(len(x), len(basis), nil)
	for j, b := range basis {
		for i, v := range b {
			out.Set(i, j, v)
		}
	}
	return out
}

// internalBasis returns an orthonormal basis (columns) of the complement of RigidModes(x)
// and the number of rigid modes.
func internalBasis(x []float64, dim int) (*mat.Dense, int) {
	r := RigidModes(x, dim)
	n, k := r.Dims()
	// Eigenvectors of the projector I − R Rᵀ with eigenvalue 1 span the complement.
	p := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			v := 0.0
			if i == j {
				v = 1
			}
			for c := range k {
				v -= r.At(i, c) * r.At(j, c)
			}
			p.SetSym(i, j, v)
		}
	}
	var es mat.EigenSym
	es.Factorize(p, true)
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	vals := es.Values(nil) // ascending: k zeros, then n−k ones
	q := mat.NewDense(n, n-k, nil)
	col := 0
	for c := range n {
		if vals[c] > 0.5 && col < n-k {
			for i := range n {
				q.Set(i, col, vecs.At(i, c))
			}
			col++
		}
	}
	return q, k
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func allFinite(v []float64) bool {
	for _, x := range v {
		if !finite(x) {
			return false
		}
	}
	return true
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func norm(a []float64) float64 { return math.Sqrt(dot(a, a)) }

// internalHessian is the Hessian of the energy at x projected on the internal coordinates q
// (orthonormal columns spanning the complement of the translation and rotation modes):
// QᵀHQ, symmetrised against rounding.
func (m *Minimizer) internalHessian(x []float64, q *mat.Dense) *mat.SymDense {
	var hq, hr mat.Dense
	hq.Mul(m.Hessian(x), q)
	hr.Mul(q.T(), &hq)
	k := q.RawMatrix().Cols
	sym := mat.NewSymDense(k, nil)
	for i := range k {
		for j := i; j < k; j++ {
			sym.SetSym(i, j, 0.5*(hr.At(i, j)+hr.At(j, i)))
		}
	}
	return sym
}
