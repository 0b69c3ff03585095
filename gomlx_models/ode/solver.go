package ode

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Defaults used when the corresponding Options field is zero.
const (
	DefaultRTol     = 1e-7 // torchdiffeq's default rtol
	DefaultATol     = 1e-9 // torchdiffeq's default atol
	DefaultMaxSteps = 1000 // step attempts (accepted + rejected); torchdiffeq has no practical limit
	DefaultSafety   = 0.9
	DefaultIFactor  = 10.0
	DefaultDFactor  = 0.2
	// relativeMinStep is the floor |dt| ≥ relativeMinStep·|t1−t0| always enforced by adaptive
	// solves (on top of Options.MinStep), so that a step size collapsing to zero is an error
	// instead of a hang.
	relativeMinStep = 1e-12
)

// Errors returned (wrapped) by Solve; test with errors.Is.
var (
	// ErrMaxSteps is returned when an adaptive solve needs more than Options.MaxSteps step attempts.
	ErrMaxSteps = errors.New("ode: maximum number of steps exceeded")
	// ErrStepSizeTooSmall is returned when the adaptive step size falls below Options.MinStep (or
	// below 1e-12·|t1−t0|), e.g. because the error ratio is not finite.
	ErrStepSizeTooSmall = errors.New("ode: step size too small")
)

// Options configures a Solver.
type Options struct {
	// Method is a registered tableau name: "dopri5" (default; adaptive), "rk4" (3/8 rule, as
	// torchdiffeq's rk4), "rk4classic" or "euler" (fixed step).
	Method string
	// RTol and ATol are the relative and absolute tolerances of adaptive methods. If both are zero
	// the torchdiffeq defaults (1e-7, 1e-9) are used.
	RTol, ATol float64
	// Steps is the number of uniform steps over [t0, t1] of fixed-step methods (required > 0).
	Steps int
	// MaxSteps bounds the step attempts (accepted + rejected) of an adaptive solve: exceeding it
	// returns ErrMaxSteps. Default DefaultMaxSteps.
	MaxSteps int
	// MinStep is the smallest |dt| an adaptive solve may use before returning
	// ErrStepSizeTooSmall. A floor of 1e-12·|t1−t0| is always enforced.
	MinStep float64
	// FirstStep, if > 0, is the first step size of an adaptive solve; otherwise it is selected as
	// in torchdiffeq's _select_initial_step (Hairer, Nørsett & Wanner, Sec. II.4), costing 2 NFE.
	FirstStep float64
	// Safety, IFactor and DFactor are the step-size controller constants (defaults 0.9, 10, 0.2).
	Safety, IFactor, DFactor float64
}

// Stats reports the cost of a solve.
type Stats struct {
	// NFE is the number of evaluations of f (per batch, not per sample), including the two of the
	// initial step selection of adaptive methods.
	NFE int
	// Accepted and Rejected count the steps of the solve (Rejected is always 0 for fixed steps).
	Accepted, Rejected int
	// PeakLiveTensors is the largest number of state tensors (y, FSAL stage, candidates) owned by
	// the solver at once. It does not grow with the number of steps: the solver keeps no
	// per-step tensors.
	PeakLiveTensors int
	// Wall is the wall-clock duration of the solve (including graph compilation on first use).
	Wall time.Duration
}

// Add returns the element-wise sum of two Stats (PeakLiveTensors takes the maximum).
func (s Stats) Add(o Stats) Stats {
	return Stats{
		NFE:             s.NFE + o.NFE,
		Accepted:        s.Accepted + o.Accepted,
		Rejected:        s.Rejected + o.Rejected,
		PeakLiveTensors: max(s.PeakLiveTensors, o.PeakLiveTensors),
		Wall:            s.Wall + o.Wall,
	}
}

// Solution is the result of Solve.
type Solution struct {
	// Y is the state at t1, one tensor per state tensor. If t0 == t1 it aliases y0.
	Y []*tensors.Tensor
	// Times and Steps are the start time and signed size of every accepted step, in order. Pass
	// them to Integrate (as scalar inputs) to replay the solve in a differentiable graph.
	Times, Steps []float64
	Stats        Stats
}

// Solver integrates an ODE with a list-of-tensors state from Go, running one compiled graph per
// solver step: the graph evaluates all stages of the step and returns the new state, the FSAL
// stage and the error ratio, so that Go only does step-size control (GoMLX has no While op). Graphs
// are compiled per input shapes and cached. Once one Solve has returned, Solve (and Eval) may be
// called from several goroutines at once: the compiled graphs are shared, each solve keeps its own
// state and statistics, and graphs for new shapes are built one at a time. The very first call
// must not run beside another: GoMLX switches each Exec's context to reuse mode, unsynchronised,
// when it builds its first graph (qm9.Model.Sample solves its first batch alone for this reason).
type Solver struct {
	backend  backends.Backend
	ctx      *context.Context
	f        Func
	numState int
	opts     Options
	tab      *Tableau

	stepExec, initExec, evalExec *context.Exec
	// build serialises the building of this solver's graphs (new input shapes met by
	// concurrent solves): GoMLX's Context.VariableWithShape writes to the variable even when it
	// exists. XLA compilation and execution are not serialised.
	build sync.Mutex
}

// liveCount tracks the solver-owned tensors alive during one solve (Stats.PeakLiveTensors).
type liveCount struct{ live, peak int }

// New creates a Solver for f with numState state tensors. Variables used by f live in ctx.
func New(backend backends.Backend, ctx *context.Context, f Func, numState int, opts Options) (*Solver, error) {
	if opts.Method == "" {
		opts.Method = Dopri5.Name
	}
	tab, err := Lookup(opts.Method)
	if err != nil {
		return nil, err
	}
	if numState < 1 {
		return nil, fmt.Errorf("ode: numState must be ≥ 1, got %d", numState)
	}
	if tab.Adaptive() {
		if opts.RTol == 0 && opts.ATol == 0 {
			opts.RTol, opts.ATol = DefaultRTol, DefaultATol
		}
		if opts.RTol < 0 || opts.ATol < 0 {
			return nil, fmt.Errorf("ode: tolerances must be ≥ 0, got rtol=%g atol=%g", opts.RTol, opts.ATol)
		}
		if opts.MaxSteps <= 0 {
			opts.MaxSteps = DefaultMaxSteps
		}
		if opts.Safety == 0 {
			opts.Safety = DefaultSafety
		}
		if opts.IFactor == 0 {
			opts.IFactor = DefaultIFactor
		}
		if opts.DFactor == 0 {
			opts.DFactor = DefaultDFactor
		}
	} else if opts.Steps <= 0 {
		return nil, fmt.Errorf("ode: fixed-step method %q needs Options.Steps > 0, got %d", tab.Name, opts.Steps)
	}
	if ctx == nil {
		ctx = context.New()
	}
	s := &Solver{backend: backend, ctx: ctx, f: f, numState: numState, opts: opts, tab: tab}
	if s.stepExec, err = context.NewExec(backend, ctx, s.stepGraph); err != nil {
		return nil, fmt.Errorf("ode: creating step executable: %w", err)
	}
	s.stepExec.WithName("ode_" + tab.Name + "_step").SetMaxCache(-1) // one graph per input shape (e.g. per molecule size)
	if s.initExec, err = context.NewExec(backend, ctx, s.initGraph); err != nil {
		return nil, fmt.Errorf("ode: creating initial-step executable: %w", err)
	}
	s.initExec.WithName("ode_initial_step").SetMaxCache(-1)
	if s.evalExec, err = context.NewExec(backend, ctx, s.evalGraph); err != nil {
		return nil, fmt.Errorf("ode: creating evaluation executable: %w", err)
	}
	s.evalExec.WithName("ode_eval").SetMaxCache(-1)
	return s, nil
}

// Tableau returns the method used by the solver.
func (s *Solver) Tableau() *Tableau { return s.tab }

// Options returns the options with defaults filled in.
func (s *Solver) Options() Options { return s.opts }

// Finalize releases the compiled graphs.
func (s *Solver) Finalize() {
	s.stepExec.Finalize()
	s.initExec.Finalize()
	s.evalExec.Finalize()
}

// stateDType is the dtype of the first state tensor, used for time inside f.
func stateDType(y []*Node) dtypes.DType { return y[0].DType() }

// stepGraph inputs: t0, dt (Float64 scalars), y0[n], k1[n] (FSAL only), args...
// Outputs: y1[n], kLast[n] (FSAL only), error ratio (Float64 scalar; adaptive only).
func (s *Solver) stepGraph(ctx *context.Context, in []*Node) []*Node {
	s.build.Lock()
	defer s.build.Unlock()
	n := s.numState
	t0, dt := in[0], in[1]
	y0 := in[2 : 2+n]
	rest := in[2+n:]
	var k1 []*Node
	if s.tab.FSAL {
		k1 = rest[:n]
		rest = rest[n:]
	}
	f := Bind(ctx, s.f, rest, true)
	y1, kLast, errEst, _ := Step(s.tab, f, t0, dt, y0, k1)
	out := append([]*Node(nil), y1...)
	if s.tab.FSAL {
		out = append(out, kLast...)
	}
	if s.tab.Adaptive() {
		out = append(out, ErrorRatio(errEst, y0, y1, s.opts.RTol, s.opts.ATol))
	}
	return out
}

// initGraph implements torchdiffeq's _select_initial_step with the mixed norm. Inputs: t0, dir
// (±1, Float64 scalars), y0[n], args... Outputs: f0[n], h (Float64 scalar, > 0).
func (s *Solver) initGraph(ctx *context.Context, in []*Node) []*Node {
	s.build.Lock()
	defer s.build.Unlock()
	n := s.numState
	t0, dir := in[0], in[1]
	y0 := in[2 : 2+n]
	f := Bind(ctx, s.f, in[2+n:], true)
	g := t0.Graph()
	f0 := f(castScalar(t0, stateDType(y0)), y0)
	scale := make([]*Node, n)
	ys, fs := make([]*Node, n), make([]*Node, n)
	for i := range n {
		scale[i] = AddScalar(MulScalar(Abs(y0[i]), s.opts.RTol), s.opts.ATol)
		ys[i] = Div(y0[i], scale[i])
		fs[i] = Div(f0[i], scale[i])
	}
	d0, d1 := MixedNorm(ys), MixedNorm(fs)
	f64 := dtypes.Float64
	small := LogicalOr(LessThan(d0, Scalar(g, f64, 1e-5)), LessThan(d1, Scalar(g, f64, 1e-5)))
	h0 := Where(small, Scalar(g, f64, 1e-6), Div(MulScalar(d0, 0.01), d1))

	step := Mul(dir, h0)
	y1 := make([]*Node, n)
	for i := range n {
		y1[i] = Add(y0[i], Mul(f0[i], castScalar(step, y0[i].DType())))
	}
	f1 := f(castScalar(Add(t0, step), stateDType(y0)), y1)
	diff := make([]*Node, n)
	for i := range n {
		diff[i] = Div(Sub(f1[i], f0[i]), scale[i])
	}
	d2 := Div(MixedNorm(diff), h0)
	tiny := LogicalAnd(LessOrEqual(d1, Scalar(g, f64, 1e-15)), LessOrEqual(d2, Scalar(g, f64, 1e-15)))
	// torchdiffeq passes order = tableau order − 1, and uses the exponent 1/(order+1).
	exponent := 1.0 / float64(s.tab.Order)
	h1 := Where(tiny,
		Max(Scalar(g, f64, 1e-6), MulScalar(h0, 1e-3)),
		Pow(Div(Scalar(g, f64, 0.01), Max(d1, d2)), Scalar(g, f64, exponent)))
	h := Min(MulScalar(h0, 100), h1)
	return append(f0, h)
}

// evalGraph inputs: t (Float64 scalar), y[n], args... Outputs: f(t, y).
func (s *Solver) evalGraph(ctx *context.Context, in []*Node) []*Node {
	s.build.Lock()
	defer s.build.Unlock()
	n := s.numState
	y := in[1 : 1+n]
	f := Bind(ctx, s.f, in[1+n:], false)
	return f(castScalar(in[0], stateDType(y)), y)
}

// Eval evaluates f(t, y) once (useful for tests and diagnostics).
func (s *Solver) Eval(t float64, y, args []*tensors.Tensor) ([]*tensors.Tensor, error) {
	if len(y) != s.numState {
		return nil, fmt.Errorf("ode: Eval needs %d state tensors, got %d", s.numState, len(y))
	}
	out, err := s.stepExecCall(s.evalExec, t, nil, y, nil, args)
	if err != nil {
		return nil, fmt.Errorf("ode: evaluating f at t=%g: %w", t, err)
	}
	return out, nil
}

func (s *Solver) stepExecCall(e *context.Exec, a float64, b *float64, y, k, args []*tensors.Tensor) ([]*tensors.Tensor, error) {
	in := make([]any, 0, 2+len(y)+len(k)+len(args))
	in = append(in, a)
	if b != nil {
		in = append(in, *b)
	}
	for _, t := range y {
		in = append(in, t)
	}
	for _, t := range k {
		in = append(in, t)
	}
	for _, t := range args {
		in = append(in, t)
	}
	return e.Exec(in...)
}

func (c *liveCount) own(n int) {
	c.live += n
	c.peak = max(c.peak, c.live)
}

func (c *liveCount) release(ts []*tensors.Tensor) {
	for _, t := range ts {
		if t != nil {
			_ = t.FinalizeAll()
		}
	}
	c.live -= len(ts)
}

// Solve integrates dy/dt = f(t, y) from t0 to t1 (either direction) starting at y0, with the
// constant inputs args. Adaptive methods use an error norm over the whole state (mixed RMS norm,
// see ErrorRatio), torchdiffeq's initial step selection and its step-size controller:
//
//	factor = min(IFactor, max(Safety / ratio^(1/Order), DFactor))  (DFactor = 1 after an accepted step)
//
// Unlike torchdiffeq, which steps past t1 and interpolates, the last step is shortened to end
// exactly at t1 (as diffrax does). A non-finite error ratio rejects the step and shrinks it by
// DFactor. The caller keeps ownership of y0 and args.
func (s *Solver) Solve(t0, t1 float64, y0, args []*tensors.Tensor) (*Solution, error) {
	if len(y0) != s.numState {
		return nil, fmt.Errorf("ode: Solve needs %d state tensors, got %d", s.numState, len(y0))
	}
	start := time.Now()
	lc := &liveCount{}
	sol := &Solution{}
	if t0 == t1 {
		sol.Y = y0
		return sol, nil
	}
	var err error
	if s.tab.Adaptive() {
		err = s.solveAdaptive(lc, t0, t1, y0, args, sol)
	} else {
		err = s.solveFixed(lc, t0, t1, y0, args, sol)
	}
	sol.Stats.PeakLiveTensors = lc.peak
	sol.Stats.Wall = time.Since(start)
	if err != nil {
		return nil, err
	}
	return sol, nil
}

func (s *Solver) solveFixed(lc *liveCount, t0, t1 float64, y0, args []*tensors.Tensor, sol *Solution) error {
	steps := s.opts.Steps
	h := (t1 - t0) / float64(steps)
	y, owned := y0, false
	for i := range steps {
		t := t0 + float64(i)*h
		dt := h
		if i == steps-1 {
			dt = t1 - t
		}
		out, err := s.stepExecCall(s.stepExec, t, &dt, y, nil, args)
		if err != nil {
			if owned {
				lc.release(y)
			}
			return fmt.Errorf("ode: %s step %d at t=%g: %w", s.tab.Name, i, t, err)
		}
		lc.own(len(out))
		if owned {
			lc.release(y)
		}
		y, owned = out, true
		sol.Times = append(sol.Times, t)
		sol.Steps = append(sol.Steps, dt)
		sol.Stats.NFE += s.tab.NFEPerStep()
		sol.Stats.Accepted++
	}
	sol.Y = y
	return nil
}

func (s *Solver) solveAdaptive(lc *liveCount, t0, t1 float64, y0, args []*tensors.Tensor, sol *Solution) error {
	n := s.numState
	span := t1 - t0
	dir := math.Copysign(1, span)
	floor := max(s.opts.MinStep, relativeMinStep*math.Abs(span))

	var k []*tensors.Tensor
	var h float64
	if s.opts.FirstStep > 0 {
		out, err := s.stepExecCall(s.evalExec, t0, nil, y0, nil, args)
		if err != nil {
			return fmt.Errorf("ode: evaluating f at t0=%g: %w", t0, err)
		}
		lc.own(len(out))
		k, h = out, s.opts.FirstStep
		sol.Stats.NFE++
	} else {
		out, err := s.stepExecCall(s.initExec, t0, &dir, y0, nil, args)
		if err != nil {
			return fmt.Errorf("ode: selecting the initial step at t0=%g: %w", t0, err)
		}
		lc.own(len(out))
		k = out[:n]
		h = tensors.ToScalar[float64](out[n])
		lc.release(out[n:])
		sol.Stats.NFE += 2
	}

	y, owned := y0, false
	cleanup := func() {
		if owned {
			lc.release(y)
		}
		lc.release(k)
	}
	t := t0
	attempts := 0
	order := float64(s.tab.Order)
	for {
		remaining := t1 - t
		if remaining*dir <= 0 {
			break
		}
		if attempts >= s.opts.MaxSteps {
			cleanup()
			return fmt.Errorf("%w: %d step attempts (%d accepted, %d rejected) reached t=%g of [%g, %g] with step %g (rtol=%g, atol=%g)",
				ErrMaxSteps, attempts, sol.Stats.Accepted, sol.Stats.Rejected, t, t0, t1, h, s.opts.RTol, s.opts.ATol)
		}
		if !(h >= floor) { // also catches NaN
			cleanup()
			return fmt.Errorf("%w: |dt|=%g < %g at t=%g of [%g, %g] after %d accepted and %d rejected steps",
				ErrStepSizeTooSmall, h, floor, t, t0, t1, sol.Stats.Accepted, sol.Stats.Rejected)
		}
		dt := dir * h
		last := false
		if math.Abs(dt) >= math.Abs(remaining)-relativeMinStep*math.Abs(span) {
			dt, last = remaining, true
		}
		out, err := s.stepExecCall(s.stepExec, t, &dt, y, k, args)
		if err != nil {
			cleanup()
			return fmt.Errorf("ode: %s step at t=%g, dt=%g: %w", s.tab.Name, t, dt, err)
		}
		lc.own(len(out))
		attempts++
		sol.Stats.NFE += s.tab.NFEPerStep()
		ratio := tensors.ToScalar[float64](out[len(out)-1])
		lc.release(out[len(out)-1:])
		y1, k1 := out[:n], out[n:2*n]
		if ratio <= 1 { // false for NaN
			if owned {
				lc.release(y)
			}
			lc.release(k)
			y, k, owned = y1, k1, true
			sol.Times = append(sol.Times, t)
			sol.Steps = append(sol.Steps, dt)
			sol.Stats.Accepted++
			if last {
				t = t1
			} else {
				t += dt
			}
		} else {
			lc.release(y1)
			lc.release(k1)
			sol.Stats.Rejected++
		}
		h = math.Abs(dt) * s.stepFactor(ratio, order)
	}
	lc.release(k)
	sol.Y = y
	return nil
}

// stepFactor is torchdiffeq's _optimal_step_size; a non-finite ratio shrinks by DFactor.
func (s *Solver) stepFactor(ratio, order float64) float64 {
	switch {
	case ratio == 0:
		return s.opts.IFactor
	case math.IsNaN(ratio) || math.IsInf(ratio, 0):
		return s.opts.DFactor
	}
	dfactor := s.opts.DFactor
	if ratio < 1 {
		dfactor = 1
	}
	return min(s.opts.IFactor, max(s.opts.Safety/math.Pow(ratio, 1/order), dfactor))
}
