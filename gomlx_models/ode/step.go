package ode

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Func is the right-hand side dy/dt = f(t, y) of an ODE whose state y is a list of tensors
// (e.g. (x, logp, reg) for a continuous normalizing flow). The tensors are kept separate rather
// than concatenated, which avoids Slice/Concatenate (whose second-order gradients need Pad, missing
// in SimpleGo) and lets the error norm treat each tensor separately, as torchdiffeq does for tuple
// states.
//
// t is a scalar node with the dtype of y[0]. args are constant inputs held fixed during the solve
// (e.g. a node mask or Hutchinson noise). f must return one derivative per state tensor, with the
// same shape and dtype. Parameters are read from ctx.
//
// f is called several times when a graph is built (once per Runge–Kutta stage), with a context in
// unchecked mode (variables are created on first use and reused afterwards).
type Func func(ctx *context.Context, t *Node, y, args []*Node) []*Node

// StageFunc is a Func bound to its context and args: it evaluates f(t, y) inside a graph.
type StageFunc func(t *Node, y []*Node) []*Node

// Bind binds f to ctx and args. If detach is true, every stage input is wrapped as
// Identity(StopGradient(y)): derivatives taken inside f (e.g. vector–Jacobian products with
// respect to y or to parameters) are then local to the stage, not back-propagated through the
// previous stages of the step. Use detach for the gradient-free solves driven from Go (forward and
// adjoint solves); do not use it when differentiating through the solver (backprop mode).
func Bind(ctx *context.Context, f Func, args []*Node, detach bool) StageFunc {
	ctx = ctx.Checked(false)
	return func(t *Node, y []*Node) []*Node {
		if detach {
			yd := make([]*Node, len(y))
			for i, yi := range y {
				yd[i] = Detach(yi)
			}
			y = yd
			// The time too: in the initial-step graph t0 + h depends, through h, on norms of
			// f(t0, y0), whose gradients (√ at 0 for an all-zero state part, such as the
			// adjoint's a_θ(1) = 0) are NaN. A gradient taken inside f (the adjoint's
			// a·∂f/∂θ) must not flow into them.
			t = Detach(t)
		}
		return f(ctx, t, y, args)
	}
}

// Detach returns a new node equal to x through which no gradient flows back to x, but with respect
// to which gradients can be taken (Identity of StopGradient). Gradient with respect to a plain
// StopGradient node is always zero in GoMLX.
func Detach(x *Node) *Node { return Identity(StopGradient(x)) }

// castScalar converts a scalar node to dtype if needed.
func castScalar(s *Node, dtype dtypes.DType) *Node {
	if s.DType() == dtype {
		return s
	}
	return ConvertDType(s, dtype)
}

// combine returns base + dt·Σ_j coeffs[j]·ks[j] for each state tensor (base may be nil, meaning
// zero). Zero coefficients are skipped.
func combine(base []*Node, dt *Node, coeffs []float64, ks [][]*Node, n int) []*Node {
	out := make([]*Node, n)
	for i := range n {
		var acc *Node
		for j, c := range coeffs {
			if c == 0 {
				continue
			}
			term := ks[j][i]
			if c != 1 {
				term = MulScalar(term, c)
			}
			if acc == nil {
				acc = term
			} else {
				acc = Add(acc, term)
			}
		}
		switch {
		case acc == nil && base == nil:
			panic("ode: combine with all-zero coefficients and no base")
		case acc == nil:
			out[i] = base[i]
		default:
			acc = Mul(acc, castScalar(dt, acc.DType()))
			if base != nil {
				acc = Add(base[i], acc)
			}
			out[i] = acc
		}
	}
	return out
}

// Step builds one explicit Runge–Kutta step of tab inside a graph (t0 and dt are scalars, typically
// Float64; f receives t converted to the dtype of y0[0]):
//
//	k_i = f(t0 + C_i·dt, y0 + dt·Σ_{j<i} A_ij·k_j),   y1 = y0 + dt·Σ_j B_j·k_j.
//
// k1 is f(t0, y0) if known (FSAL), otherwise nil and it is evaluated. It returns y1, the last stage
// kLast (= f(t1, y1) for FSAL tableaux, the next step's k1) and, for adaptive tableaux, the local
// error estimate dt·Σ_j E_j·k_j (nil otherwise). nfe is the number of evaluations of f.
func Step(tab *Tableau, f StageFunc, t0, dt *Node, y0, k1 []*Node) (y1, kLast, errEst []*Node, nfe int) {
	n := len(y0)
	s := tab.Stages()
	ks := make([][]*Node, s)
	tDType := y0[0].DType() // f receives t with the dtype of the state.
	if k1 == nil {
		k1 = f(castScalar(t0, tDType), y0)
		nfe++
	}
	ks[0] = k1
	var yStage []*Node
	for i := 1; i < s; i++ {
		yStage = combine(y0, dt, tab.A[i], ks[:i], n)
		ti := t0
		if tab.C[i] != 0 {
			ti = Add(t0, MulScalar(dt, tab.C[i]))
		}
		ks[i] = f(castScalar(ti, tDType), yStage)
		nfe++
	}
	if tab.FSAL {
		// The last stage was evaluated on y0 + dt·Σ B_j k_j = y1.
		y1 = yStage
	} else {
		y1 = combine(y0, dt, tab.B, ks, n)
	}
	kLast = ks[s-1]
	if tab.E != nil {
		errEst = combine(nil, dt, tab.E, ks, n)
	}
	return y1, kLast, errEst, nfe
}

// RMSNorm is sqrt(mean(x²)) over all elements (torchdiffeq `_rms_norm`), as a scalar of x's dtype.
func RMSNorm(x *Node) *Node {
	return Sqrt(ReduceAllMean(Square(x)))
}

// MixedNorm is torchdiffeq's `_mixed_norm` for tuple states: the maximum over the tensors of their
// RMS norms, returned as a Float64 scalar.
func MixedNorm(xs []*Node) *Node {
	var out *Node
	for _, x := range xs {
		if x.Shape().Size() == 0 {
			continue
		}
		r := castScalar(RMSNorm(x), dtypes.Float64)
		if out == nil {
			out = r
		} else {
			out = Max(out, r)
		}
	}
	if out == nil {
		panic("ode: MixedNorm of an empty state")
	}
	return out
}

// ErrorRatio is torchdiffeq's `_compute_error_ratio` with the mixed norm:
//
//	max_i RMS( err_i / (atol + rtol·max(|y0_i|, |y1_i|)) ),
//
// so every state tensor (for a CNF: x, logp and reg) takes part in step-size control. Returned as a
// Float64 scalar; the step is accepted if it is ≤ 1.
func ErrorRatio(errEst, y0, y1 []*Node, rtol, atol float64) *Node {
	scaled := make([]*Node, len(errEst))
	for i := range errEst {
		tol := AddScalar(MulScalar(Max(Abs(y0[i]), Abs(y1[i])), rtol), atol)
		scaled[i] = Div(errEst[i], tol)
	}
	return MixedNorm(scaled)
}

// Integrate builds, inside one graph, the unrolled integration of f over a sequence of steps: step
// i starts at time ts[i] and has (signed) size dts[i]; FSAL tableaux reuse the last stage. The
// result is differentiable end to end, e.g. to back-propagate through a replay of the steps accepted
// by an adaptive Solve (Solution.Times and Solution.Steps, passed as scalar inputs so that the replay
// evaluates f at exactly the same points). It returns the final state and the number of
// evaluations of f.
func Integrate(tab *Tableau, f StageFunc, ts, dts []*Node, y0 []*Node) (y []*Node, nfe int) {
	if len(ts) != len(dts) {
		panic("ode.Integrate: ts and dts must have the same length")
	}
	y = y0
	var k []*Node
	for i, dt := range dts {
		t := ts[i]
		dt = castScalar(dt, t.DType())
		var kLast []*Node
		var n int
		y, kLast, _, n = Step(tab, f, t, dt, y, k)
		nfe += n
		if tab.FSAL {
			k = kLast
		}
	}
	return y, nfe
}
