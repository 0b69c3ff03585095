// Package bench is enflow's performance suite: the costs that decide how fast E-NF trains and
// samples, measured on every available GoMLX backend and reported as one JSON object per case.
//
// Cases (system × kind; `enflow bench --list` prints them):
//
//   - <sys>/forward        one evaluation of the E-NF dynamics f(t, x) on a batch.
//   - <sys>/vjp            f and the Hutchinson vector–Jacobian product εᵀ∂f/∂x (one forward-solver stage).
//   - <sys>/adjoint_stage  one adjoint-ODE stage: f, the Hutchinson trace, and −aᵀ∂[f, −tr]/∂(x, θ)
//     (second-order: parameter gradients of the trace), as torchdiffeq's odeint_adjoint.
//   - <sys>/train_iter     one training iteration: dopri5 rtol = atol = 1e-4, adjoint gradients,
//     Rademacher Hutchinson trace, AdamW (AMSGrad) step. NFE = forward + backward.
//   - <sys>/train_iter_tol1e-6  the same at rtol = atol = 1e-6 (more steps): with the adjoint, peak
//     memory must not grow with the number of steps.
//   - <sys>/exact_eval     log-likelihood of a batch with the exact trace (dopri5 1e-4).
//   - qm9/forward, qm9/vjp the QM9 dynamics (published weights) on 64 molecules × 29 atoms.
//   - qm9/sample_batched, qm9/sample_single  QM9 sampling with the published checkpoint (dopri5
//     1e-4, sizes from p(N)), molecules of one size batched in one solve vs one molecule per solve;
//     ms is per molecule.
//
// Systems: dw4 (4 particles in 2D), lj13 (13 particles in 3D), batch 100 by default, inputs are the
// first configurations of the shared DW4 train / LJ13 test split (mean removed), or Gaussian
// mean-free configurations when the shared folder is missing. Variables use PyTorch-default-style
// initialisation (seed 0); the NFE of adaptive solves therefore differs from PyTorch's by the
// random initialisation, so compare ms per NFE too.
//
// Every case is run once to compile and warm up, then Repeats times; ms is the median wall time,
// cpu_ms the median process CPU time (user+system, all threads; robust on a shared machine),
// peak_mb the peak Go HeapInuse sampled during the timed runs, and vmhwm_mb the process's peak RSS
// (VmHWM, reset before each case when the kernel allows; XLA's buffers live outside the Go heap).
package bench

import (
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"

	"github.com/enflow/enflow/gomlx_models/backend"
)

// Result is one measured case on one backend.
type Result struct {
	Case    string  `json:"case"`
	Backend string  `json:"backend"`
	MS      float64 `json:"ms"`     // median wall milliseconds per op (per molecule for sampling)
	CPUMS   float64 `json:"cpu_ms"` // median process CPU milliseconds per op
	NFE     int     `json:"nfe"`    // dynamics evaluations per op (median); 1 for single evaluations
	PeakMB  float64 `json:"peak_mb"`
	VmHWMMB float64 `json:"vmhwm_mb"`
	// Unit is what one op is: "eval", "iteration", "batch", "molecule".
	Unit    string    `json:"unit"`
	Batch   int       `json:"batch"`   // samples per op (molecules per solve for sampling)
	Repeats int       `json:"repeats"` // timed runs
	MinMS   float64   `json:"min_ms"`
	MaxMS   float64   `json:"max_ms"`
	Runs    []float64 `json:"runs_ms,omitempty"`
	// NFEForward/NFEBackward split the NFE of training iterations.
	NFEForward  int    `json:"nfe_forward,omitempty"`
	NFEBackward int    `json:"nfe_backward,omitempty"`
	Note        string `json:"note,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Options configure Run.
type Options struct {
	// Backends are backend specs (see gomlx_models/backend.New); nil means Available().
	Backends []string
	// Cases are glob patterns (path.Match) over case names, e.g. "dw4/*"; nil means DefaultCases.
	Cases   []string
	Repeats int // timed runs per case (default 5)
	Batch   int // particle batch (default 100)
	// Shared is the shared data folder ("" = internal/shared.Dir()); QM9Dir holds the published
	// checkpoint (default <Shared>/data/pretrained/en_flows_qm9).
	Shared, QM9Dir string
	// QM9Molecules is the number of molecules of qm9/sample_batched (default 100); the one-at-a-time
	// case samples the first QM9SingleMolecules (default 8) sizes of the same draw.
	QM9Molecules, QM9SingleMolecules int
	// Log receives progress lines (nil = discard).
	Log io.Writer
	// Emit, if set, is called with each result as soon as it is measured.
	Emit func(Result)
}

// runner measures one case on one backend. setup builds everything (not timed) and returns the
// op to time; op returns the NFE of that run (and, optionally, forward/backward split).
type runner struct {
	name  string
	unit  string
	batch func(o *Options) int
	setup func(env *caseEnv) (op func(rep int) (opStats, error), cleanup func(), err error)
	slow  bool // not in DefaultCases on SimpleGo unless asked for
}

type opStats struct {
	nfe, nfeFwd, nfeBwd int
	perOp               int    // ops represented by one run (molecules), default 1
	note                string // copied to Result.Note
}

type caseEnv struct {
	ctx     context.Context
	b       backends.Backend
	opts    *Options
	data    *dataCache
	logf    func(format string, args ...any)
	backend string
}

var registry []*runner

func register(r *runner) { registry = append(registry, r) }

// CaseNames lists every registered case, in run order.
func CaseNames() []string {
	var out []string
	for _, r := range registry {
		out = append(out, r.name)
	}
	return out
}

// DefaultCases are the cases run when Options.Cases is empty.
var DefaultCases = []string{"dw4/*", "lj13/*", "qm9/*"}

// Available returns the backend specs usable in this binary: SimpleGo always, and XLA CPU when the
// binary was built with -tags xla and a PJRT plugin can be loaded.
func Available() []string {
	out := []string{backend.DefaultSimpleGo}
	if b, err := backend.New("xla:cpu"); err == nil {
		b.Finalize()
		out = append(out, "xla:cpu")
	}
	return out
}

// Select returns the registered case names matching any of the patterns.
func Select(patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		patterns = DefaultCases
	}
	var out []string
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		found := false
		for _, r := range registry {
			ok, err := path.Match(p, r.name)
			if err != nil {
				return nil, fmt.Errorf("bench: bad case pattern %q: %w", p, err)
			}
			if ok {
				found = true
				if !slices.Contains(out, r.name) {
					out = append(out, r.name)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("bench: no case matches %q (cases: %s)", p, strings.Join(CaseNames(), ", "))
		}
	}
	// Keep registry order.
	order := map[string]int{}
	for i, r := range registry {
		order[r.name] = i
	}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i]] < order[out[j]] })
	return out, nil
}

func (o *Options) defaults() {
	if o.Repeats <= 0 {
		o.Repeats = 5
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.QM9Molecules <= 0 {
		o.QM9Molecules = 100
	}
	if o.QM9SingleMolecules <= 0 {
		o.QM9SingleMolecules = 8
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Run measures the selected cases on the selected backends. A case that fails yields a Result
// with Error set (the suite goes on); Run's error is for bad options only.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	opts.defaults()
	names, err := Select(opts.Cases)
	if err != nil {
		return nil, err
	}
	specs := opts.Backends
	if len(specs) == 0 {
		specs = Available()
	}
	data := &dataCache{shared: opts.Shared}
	var results []Result
	for _, spec := range specs {
		b, err := backend.New(spec)
		if err != nil {
			return results, fmt.Errorf("bench: %w", err)
		}
		bname := backend.Name(b)
		if _, cfg, _ := strings.Cut(spec, ":"); strings.HasPrefix(spec, "go") || strings.HasPrefix(spec, "simplego") {
			bname = "simplego"
			if spec != backend.DefaultSimpleGo && cfg != "" && cfg != "ops_sequential" {
				bname = "simplego(" + cfg + ")"
			}
		} else if spec == "" && strings.Contains(bname, "SimpleGo") {
			bname = "simplego"
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				b.Finalize()
				return results, err
			}
			r := lookup(name)
			env := &caseEnv{ctx: ctx, b: b, opts: &opts, data: data, backend: bname,
				logf: func(format string, args ...any) {
					fmt.Fprintf(opts.Log, "[%s %s] %s\n", bname, name, fmt.Sprintf(format, args...))
				}}
			res := measure(env, r)
			env.logf("ms=%.3g cpu_ms=%.3g nfe=%d peak_mb=%.0f vmhwm_mb=%.0f %s", res.MS, res.CPUMS, res.NFE, res.PeakMB, res.VmHWMMB, res.Error)
			results = append(results, res)
			if opts.Emit != nil {
				opts.Emit(res)
			}
		}
		b.Finalize()
	}
	return results, nil
}

func lookup(name string) *runner {
	for _, r := range registry {
		if r.name == name {
			return r
		}
	}
	return nil
}

// measure runs one case: setup, one untimed warm-up (compilation), then Repeats timed runs.
func measure(env *caseEnv, r *runner) (res Result) {
	o := env.opts
	res = Result{Case: r.name, Backend: env.backend, Unit: r.unit, Repeats: o.Repeats}
	if r.batch != nil {
		res.Batch = r.batch(o)
	}
	defer func() {
		if p := recover(); p != nil {
			res.Error = fmt.Sprintf("panic: %v", p)
		}
	}()
	op, cleanup, err := r.setup(env)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if cleanup != nil {
		defer cleanup()
	}
	t0 := time.Now()
	if _, err := op(-1); err != nil {
		res.Error = fmt.Sprintf("warm-up: %v", err)
		return res
	}
	env.logf("warm-up (compilation) %.2fs", time.Since(t0).Seconds())
	mem := startMemSampler()
	var walls, cpus []float64
	var nfes, fwds, bwds []int
	for rep := range o.Repeats {
		if err := env.ctx.Err(); err != nil {
			res.Error = err.Error()
			break
		}
		c0, w0 := cpuTime(), time.Now()
		st, err := op(rep)
		wall, cpu := time.Since(w0), cpuTime()-c0
		if err != nil {
			res.Error = err.Error()
			break
		}
		per := float64(max(st.perOp, 1))
		walls = append(walls, ms(wall)/per)
		cpus = append(cpus, ms(cpu)/per)
		nfes = append(nfes, st.nfe)
		if st.note != "" {
			res.Note = st.note
		}
		fwds = append(fwds, st.nfeFwd)
		bwds = append(bwds, st.nfeBwd)
	}
	peak, hwm := mem.stop()
	res.PeakMB, res.VmHWMMB = round1(peak), round1(hwm)
	if len(walls) > 0 {
		res.Runs = roundAll(walls)
		res.MS, res.CPUMS = round3(median(walls)), round3(median(cpus))
		res.MinMS, res.MaxMS = round3(slices.Min(walls)), round3(slices.Max(walls))
		res.NFE, res.NFEForward, res.NFEBackward = medianInt(nfes), medianInt(fwds), medianInt(bwds)
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianInt(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func round3(x float64) float64 {
	switch {
	case x >= 100:
		return float64(int64(x*10+0.5)) / 10
	case x >= 1:
		return float64(int64(x*100+0.5)) / 100
	default:
		return float64(int64(x*1000+0.5)) / 1000
	}
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

func roundAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = round3(x)
	}
	return out
}
