// Package cnf implements the continuous normalizing flow (FFJORD, Grathwohl et al. 2019) used by
// the E(n) equivariant normalizing flow (Satorras et al. 2021) on top of a velocity field
// f(t, x) (dynamics.Func).
//
// Conventions (REFERENCE.md §3.3, §4.6; FFJORD sign conventions): data x at t = 0, latent z at t = 1.
// The augmented state [x, logp, reg] follows
//
//	d/dt [x, logp, reg] = [ f(t, x),  −tr(∂f/∂x),  ‖εᵀ∂f/∂x‖² + ‖f‖² ]
//
// from logp(0) = reg(0) = 0, so that the change of variables gives
//
//	log p(x) = log p_Z(z) + ∫₀¹ tr(∂f/∂x) dt = log p_Z(z) − logp(1).
//
// The regulariser (Finlay et al. 2020, as in ENF's ODEfunc) is only integrated when
// Config.RegWeight > 0. The trace is exact (all N·C diagonal entries, via one vector–Jacobian
// product on a batch replicated N·C times with one-hot cotangents) or Hutchinson's estimator
// εᵀ(∂f/∂x)ε with ONE noise draw ε (Gaussian or Rademacher, masked) per solve, held fixed across all
// stages and steps. The prior p_Z is the centre-of-gravity-free Gaussian (package prior) on the
// position channels, standard normal on feature channels (Config.PosDims).
//
// Gradients (Config.Grad):
//
//   - "adjoint" (torchdiffeq odeint_adjoint): solve forward without gradients, then integrate the
//     adjoint system backward from t = 1 to t = 0,
//     d/dt [y, a, a_θ] = [f_aug(y), −aᵀ∂f_aug/∂y, −aᵀ∂f_aug/∂θ],  y = (x, logp, reg),
//     with a(1) = ∂L/∂y(1), a_θ(1) = 0, so ∂L/∂θ = a_θ(0). The backward solve uses the same solver and
//     tolerances; with dopri5 its error norm covers every tensor (y, a, a_θ), as torchdiffeq's default
//     adjoint norm. Each stage is one compiled vector–Jacobian product; memory is flat in the number of
//     steps (only the current state is kept).
//   - "backprop": differentiate through the solver. The forward solve is run from Go without
//     gradients (adaptive step control needs Go), then the accepted steps (times and sizes) are
//     replayed in ONE unrolled graph (ode.Integrate) that computes the loss and its gradient by
//     reverse-mode autodiff; the step sizes are treated as constants. With fixed-step solvers the
//     unrolled graph is used directly. Memory grows with the number of steps; compiled graphs are
//     cached per number of steps.
//
// A Model is not safe for concurrent use.
package cnf

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/gomlx_models/ode"
	"github.com/enflow/enflow/internal/graphutil"
)

// DynamicsFunc is a velocity field: t is a scalar, state is (B, N, C), mask is (B, N) of 0/1 or
// nil; it returns (B, N, C). Parameters live in ctx. It has the same underlying type as
// dynamics.Func, so a dynamics.Func can be passed directly. Samples must be independent (no
// batch-coupling such as batch norm): the exact trace replicates the batch.
type DynamicsFunc = func(ctx *context.Context, t, state, mask *Node) *Node

// Trace estimators (Config.Trace). The values are the CLI/JSON spellings.
const (
	// TraceHutchinson is Hutchinson's estimator εᵀ(∂f/∂x)ε with one noise draw per solve
	// (the default).
	TraceHutchinson = "hutchinson"
	// TraceExact is the exact trace: all N·C diagonal entries of ∂f/∂x.
	TraceExact = "exact"
	// TraceAnalytic is a closed-form divergence supplied by Config.Divergence.
	TraceAnalytic = "analytic"
)

// Hutchinson noise distributions (Config.Noise).
const (
	NoiseGaussian   = "gaussian"   // ε ~ N(0, I) (the default)
	NoiseRademacher = "rademacher" // ε uniform on {−1, +1} (ENF's "bernoulli")
)

// Gradient methods (Config.Grad).
const (
	GradAdjoint  = "adjoint"  // integrate the adjoint system backward (the default, as ENF)
	GradBackprop = "backprop" // differentiate the replayed accepted steps
)

// Exact-trace strategies (Config.ExactTraceMode).
const (
	// ExactTraceAuto (the zero value) chooses ExactTraceLoop when N·C ≤ 64 on SimpleGo or
	// N·C ≤ 16 on other backends (XLA compiles every unrolled VJP), else ExactTraceReplicate.
	ExactTraceAuto = ""
	// ExactTraceLoop is one forward pass and N·C vector–Jacobian products sharing it.
	ExactTraceLoop = "loop"
	// ExactTraceReplicate replicates the batch N·C times: one forward pass and one VJP on it.
	ExactTraceReplicate = "replicate"
)

// ExactTraceEnv names the environment variable from which the command line (package
// pipeline/cli, pipeline/train) takes Config.ExactTraceMode. This package never reads it.
const ExactTraceEnv = "ENFLOW_EXACT_TRACE"

// Config configures a Model. Zero values take the defaults noted.
type Config struct {
	Solver     string  // "dopri5" (default), "rk4" (3/8 rule, as torchdiffeq), "rk4classic", "euler"
	RTol, ATol float64 // dopri5 tolerances; both zero → 1e-4 (ENF training setting, REFERENCE.md §4.6)
	Steps      int     // number of steps of fixed-step solvers
	Trace      string  // TraceHutchinson (default), TraceExact, or TraceAnalytic (needs Divergence)
	Noise      string  // Hutchinson noise: NoiseGaussian (default) or NoiseRademacher
	Grad       string  // GradAdjoint (default, as ENF) or GradBackprop
	// ExactTraceMode is the strategy of Trace TraceExact: ExactTraceAuto (default),
	// ExactTraceLoop or ExactTraceReplicate (case and surrounding spaces are ignored). It changes
	// cost and memory, not results (beyond rounding).
	ExactTraceMode string
	// RegWeight weighs the kinetic/Jacobian-Frobenius regulariser in the loss (ENF QM9: 1e-3).
	// With 0 (DW4/LJ13) the regulariser is not integrated at all.
	RegWeight float64
	MaxSteps  int          // maximum dopri5 step attempts per solve (default ode.DefaultMaxSteps)
	DType     dtypes.DType // dtype of data, noise and state (default Float32)
	// PosDims is the number of leading channels that are positions (CoG-free prior); the other
	// channels get a standard normal prior. 0 means all channels are positions.
	PosDims int
	// Divergence, used with Trace "analytic", returns the velocity and its exact divergence
	// tr(∂f/∂x) per sample (shape (B)) in closed form, for fields that provide it (the kernel
	// dynamics baseline). It must compute the same velocity as the DynamicsFunc given to New.
	Divergence DivergenceFunc
}

// DivergenceFunc is a velocity field that also returns its exact divergence per sample.
type DivergenceFunc = func(ctx *context.Context, t, state, mask *Node) (v, div *Node)

// Stats reports the cost of a call.
type Stats struct {
	// Forward is the forward solve (data → latent; latent → data for Sample/Decode).
	Forward ode.Stats
	// Backward is the adjoint solve (Grad "adjoint"), or, for Grad "backprop", the replayed graph:
	// NFE counts the function evaluations in the replay (each also back-propagated), Accepted the
	// replayed steps. With Grad "backprop" and a fixed-step solver there is no separate forward
	// solve and Forward repeats the replay's counts.
	Backward ode.Stats
	// Reg is the batch mean of the integrated regulariser reg(1) (0 when RegWeight == 0).
	Reg float64
}

// Model is a continuous normalizing flow with compiled graphs for its solves.
type Model struct {
	backend backends.Backend
	ctx     *context.Context
	dyn     DynamicsFunc
	cfg     Config
	tab     *ode.Tableau

	nAug      int  // 2 (x, logp) or 3 (x, logp, reg)
	needNoise bool // Hutchinson trace or regulariser

	fwd, sample, adj *ode.Solver
	vars             []*context.Variable

	initExec, terminalExec *context.Exec
	replay                 map[replayKey]*context.Exec

	// Energy-based training (kl.go): the target and its loss graph, and log p_Z(z).
	target     *energy.Target
	klTerminal *context.Exec
	logpzExec  *context.Exec
}

type replayKey struct {
	steps     int
	hasMask   bool
	inputGrad bool // also output ∂loss/∂x (LossAndGradInput)
	kl        bool // the energy-based loss from z (klReplayGraph) instead of the likelihood
}

// maxReplayGraphs bounds the cache of unrolled backprop graphs (one per number of steps).
const maxReplayGraphs = 32

// New creates a Model for the dynamics f. Variables of f live in ctx; they are created the first
// time a graph of f is built — by InitVariables, or by the first LogLikelihood/LossAndGrad/Sample.
func New(b backends.Backend, ctx *context.Context, f DynamicsFunc, cfg Config) (*Model, error) {
	if b == nil || f == nil {
		return nil, fmt.Errorf("cnf: backend and dynamics must be non-nil")
	}
	if ctx == nil {
		ctx = context.New()
	}
	cfg.Solver = strings.ToLower(cfg.Solver)
	if cfg.Solver == "" {
		cfg.Solver = ode.Dopri5.Name
	}
	tab, err := ode.Lookup(cfg.Solver)
	if err != nil {
		return nil, fmt.Errorf("cnf: %w", err)
	}
	if cfg.RTol == 0 && cfg.ATol == 0 {
		cfg.RTol, cfg.ATol = 1e-4, 1e-4
	}
	cfg.Trace = strings.ToLower(cfg.Trace)
	switch cfg.Trace {
	case "":
		cfg.Trace = TraceHutchinson
	case TraceHutchinson, TraceExact:
	case TraceAnalytic:
		if cfg.Divergence == nil {
			return nil, fmt.Errorf("cnf: Trace \"analytic\" needs Config.Divergence (a field with a closed-form divergence)")
		}
	case "hutch":
		cfg.Trace = TraceHutchinson
	default:
		return nil, fmt.Errorf("cnf: unknown Trace %q (want exact, hutchinson or analytic)", cfg.Trace)
	}
	cfg.Noise = strings.ToLower(cfg.Noise)
	switch cfg.Noise {
	case "":
		cfg.Noise = NoiseGaussian
	case NoiseGaussian, NoiseRademacher:
	case "bernoulli": // ENF's name for Rademacher noise
		cfg.Noise = NoiseRademacher
	default:
		return nil, fmt.Errorf("cnf: unknown Noise %q (want gaussian or rademacher)", cfg.Noise)
	}
	cfg.ExactTraceMode = strings.ToLower(strings.TrimSpace(cfg.ExactTraceMode))
	switch cfg.ExactTraceMode {
	case ExactTraceAuto, ExactTraceLoop, ExactTraceReplicate:
	default:
		return nil, fmt.Errorf("cnf: unknown ExactTraceMode %q (want %s, %s or empty for automatic; $%s)",
			cfg.ExactTraceMode, ExactTraceLoop, ExactTraceReplicate, ExactTraceEnv)
	}
	cfg.Grad = strings.ToLower(cfg.Grad)
	switch cfg.Grad {
	case "":
		cfg.Grad = GradAdjoint
	case GradAdjoint, GradBackprop:
	default:
		return nil, fmt.Errorf("cnf: unknown Grad %q (want adjoint or backprop)", cfg.Grad)
	}
	if cfg.RegWeight < 0 {
		return nil, fmt.Errorf("cnf: RegWeight must be ≥ 0, got %g", cfg.RegWeight)
	}
	if cfg.DType == dtypes.InvalidDType {
		cfg.DType = dtypes.Float32
	}
	if cfg.DType != dtypes.Float32 && cfg.DType != dtypes.Float64 {
		return nil, fmt.Errorf("cnf: DType %s not supported (Float32 or Float64)", cfg.DType)
	}
	m := &Model{
		backend:   b,
		ctx:       ctx,
		dyn:       f,
		cfg:       cfg,
		tab:       tab,
		nAug:      2,
		needNoise: cfg.Trace == TraceHutchinson || cfg.RegWeight > 0,
		replay:    make(map[replayKey]*context.Exec),
	}
	if cfg.RegWeight > 0 {
		m.nAug = 3
	}
	if m.fwd, err = ode.New(b, ctx, m.augmented, m.nAug, m.odeOptions()); err != nil {
		return nil, fmt.Errorf("cnf: forward solver: %w", err)
	}
	if m.sample, err = ode.New(b, ctx, m.plain, 1, m.odeOptions()); err != nil {
		return nil, fmt.Errorf("cnf: sampling solver: %w", err)
	}
	if m.initExec, err = context.NewExec(b, ctx, m.initGraph); err != nil {
		return nil, fmt.Errorf("cnf: init executable: %w", err)
	}
	if m.terminalExec, err = context.NewExec(b, ctx, m.terminalGraph); err != nil {
		return nil, fmt.Errorf("cnf: loss executable: %w", err)
	}
	m.initExec.SetMaxCache(-1) // one graph per input shape (e.g. per molecule size)
	m.terminalExec.SetMaxCache(-1)
	return m, nil
}

// Config returns the configuration with defaults filled in.
func (m *Model) Config() Config { return m.cfg }

// Context returns the context holding the dynamics' variables.
func (m *Model) Context() *context.Context { return m.ctx }

// SetTolerances changes the adaptive solver's tolerances for the following solves (no graph is
// recompiled: the step controller runs in Go). Both must be positive.
func (m *Model) SetTolerances(rtol, atol float64) error {
	if !(rtol > 0) || !(atol > 0) {
		return fmt.Errorf("cnf: tolerances rtol=%g atol=%g must be positive", rtol, atol)
	}
	m.cfg.RTol, m.cfg.ATol = rtol, atol
	return nil
}

// Adaptive reports whether the solver is adaptive (its tolerances matter).
func (m *Model) Adaptive() bool {
	name := m.cfg.Solver
	if name == "" {
		name = "dopri5"
	}
	tab, err := ode.Lookup(name)
	return err == nil && tab.Adaptive()
}

func (m *Model) odeOptions() ode.Options {
	return ode.Options{Method: m.cfg.Solver, RTol: m.cfg.RTol, ATol: m.cfg.ATol, Steps: m.cfg.Steps, MaxSteps: m.cfg.MaxSteps}
}

// Variables returns the trainable variables of ctx, in the order of the gradients of LossAndGrad.
// The list is frozen the first time gradients are computed (or by InitVariables); before that it
// reflects the variables currently in ctx, which are only created when a graph of the dynamics is
// first built (call InitVariables first if the list is needed before training starts).
func (m *Model) Variables() []*context.Variable {
	if m.vars != nil {
		return m.vars
	}
	return trainableVariables(m.ctx)
}

// trainableVariables lists the trainable variables under ctx's scope (the whole context for a
// root-scoped ctx; only the flow's for a model embedded in a larger one, such as QM9's).
func trainableVariables(ctx *context.Context) []*context.Variable {
	var vs []*context.Variable
	for v := range ctx.IterVariablesInScope() {
		if v.Trainable {
			vs = append(vs, v)
		}
	}
	return vs
}

// InitVariables builds and runs the dynamics graph once on x (and mask, may be nil), which creates
// and initializes the dynamics' variables in ctx, and freezes the list returned by Variables.
func (m *Model) InitVariables(x, mask *tensors.Tensor) error {
	if m.vars != nil {
		return nil
	}
	if _, err := m.checkInput(x, mask); err != nil {
		return err
	}
	out, err := m.initExec.Exec(withOptional([]any{x}, mask)...)
	if err != nil {
		return fmt.Errorf("cnf: building the dynamics to initialize variables: %w", err)
	}
	graphutil.Free(out...)
	m.vars = trainableVariables(m.ctx)
	if len(m.vars) == 0 {
		m.vars = []*context.Variable{} // non-nil: frozen, even if empty
	}
	return nil
}

func (m *Model) initGraph(ctx *context.Context, in []*Node) *Node {
	x := in[0]
	var mask *Node
	if len(in) > 1 {
		mask = in[1]
	}
	t := ScalarZero(x.Graph(), x.DType())
	return ReduceAllSum(m.dyn(ctx.Checked(false), t, x, mask))
}
