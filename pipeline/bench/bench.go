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
//   - qm9/forward_18atoms_b1, qm9/forward_18atoms_b64  the QM9 dynamics on 18-atom molecules, 64
//     calls of one molecule vs one call of 64; ms per molecule-evaluation (interleaved).
//   - qm9/sample_batched, qm9/sample_single, qm9/sample_bucketed  QM9 sampling with the published
//     checkpoint (dopri5 rtol = atol = 1e-4, the same QM9Molecules sizes drawn from p(N), the same
//     prior draws): molecules of one size batched in one solve, one molecule per solve, and sizes
//     merged into QM9Buckets padded ranges (fewer compiled shapes). ms is per molecule; the three
//     are measured interleaved (one run of each per repeat) and speedup is the median over
//     repeats of the per-repeat ratio to qm9/sample_single.
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
// first_run_ms is the wall time of the warm-up run (graph compilation included) and compile_ms
// that minus the median timed run: the first-call cost, mostly compilation (XLA compiles one
// graph per input shape). Cases of one group (the QM9 sampling cases) are measured interleaved:
// all are set up and warmed up, then each repeat runs every case of the group once, so that
// their ratios see the same machine load.
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
	// Unit is what one op is: "eval", "iteration", "batch", "molecule", "molecule-eval".
	Unit    string    `json:"unit"`
	Batch   int       `json:"batch"`   // samples per op (molecules per solve for sampling)
	Repeats int       `json:"repeats"` // timed runs
	MinMS   float64   `json:"min_ms"`
	MaxMS   float64   `json:"max_ms"`
	Runs    []float64 `json:"runs_ms,omitempty"`
	// NFEForward/NFEBackward split the NFE of training iterations.
	NFEForward  int `json:"nfe_forward,omitempty"`
	NFEBackward int `json:"nfe_backward,omitempty"`
	// FirstRunMS is the wall time of the untimed warm-up run (whole run, not per unit),
	// compilation included; CompileMS is FirstRunMS minus the median timed run.
	FirstRunMS float64 `json:"first_run_ms"`
	CompileMS  float64 `json:"compile_ms"`
	// Sampling cases: molecules per run, throughput (molecules per wall / CPU second, from the
	// medians), ODE solves per run, distinct (molecules, atoms) solve shapes (= compiled graph
	// shapes) and NFE per molecule (Σ over solves of molecules × NFE, divided by molecules).
	Molecules      int     `json:"molecules,omitempty"`
	MolPerS        float64 `json:"mol_per_s,omitempty"`
	MolPerCPUS     float64 `json:"mol_per_cpu_s,omitempty"`
	Solves         int     `json:"solves,omitempty"`
	Shapes         int     `json:"shapes,omitempty"`
	NFEPerMolecule float64 `json:"nfe_per_molecule,omitempty"`
	// Baseline names the case of the same group that Speedup and SpeedupCPU compare with: the
	// median over repeats of baseline ms / ms (cpu_ms) of the same repeat.
	Baseline   string  `json:"baseline,omitempty"`
	Speedup    float64 `json:"speedup,omitempty"`
	SpeedupCPU float64 `json:"speedup_cpu,omitempty"`
	Note       string  `json:"note,omitempty"`
	Error      string  `json:"error,omitempty"`
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
	// QM9Molecules is the number of molecules of the QM9 sampling cases (default 100); the
	// one-at-a-time case samples the first QM9SingleMolecules sizes of the same draw (0 = all, the
	// default). QM9Buckets is the number of padded size ranges of qm9/sample_bucketed (default 4).
	// QM9Workers is the number of concurrent solves of the sampling cases (0 = the sampler's
	// default, qm9.DefaultSampleWorkers).
	QM9Molecules, QM9SingleMolecules, QM9Buckets, QM9Workers int
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
	// group: consecutive selected cases with the same non-empty group are measured interleaved.
	group string
	// baseline: a case of the same group to report Speedup against.
	baseline string
}

type opStats struct {
	nfe, nfeFwd, nfeBwd int
	perOp               int    // ops represented by one run (molecules), default 1
	note                string // copied to Result.Note
	// Sampling: molecules per run (also perOp), solves, distinct solve shapes, Σ molecules × NFE.
	molecules, solves, shapes, moleculeNFE int
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
		o.QM9SingleMolecules = o.QM9Molecules
	}
	if o.QM9Buckets <= 0 {
		o.QM9Buckets = 4
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
			if spec != backend.DefaultSimpleGo && cfg != "" {
				bname = "simplego(" + cfg + ")"
			}
		} else if spec == "" && strings.Contains(bname, "SimpleGo") {
			bname = "simplego"
		}
		for i := 0; i < len(names); {
			if err := ctx.Err(); err != nil {
				b.Finalize()
				return results, err
			}
			// The next case and the following ones of its group.
			var runs []*caseRun
			for j := i; j < len(names); j++ {
				r := lookup(names[j])
				if j > i && (r.group == "" || r.group != runs[0].r.group) {
					break
				}
				name := names[j]
				env := &caseEnv{ctx: ctx, b: b, opts: &opts, data: data, backend: bname,
					logf: func(format string, args ...any) {
						fmt.Fprintf(opts.Log, "[%s %s] %s\n", bname, name, fmt.Sprintf(format, args...))
					}}
				runs = append(runs, &caseRun{env: env, r: r})
			}
			i += len(runs)
			for _, res := range measureGroup(runs) {
				results = append(results, res)
				if opts.Emit != nil {
					opts.Emit(res)
				}
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

// caseRun is one case being measured.
type caseRun struct {
	env     *caseEnv
	r       *runner
	res     Result
	op      func(rep int) (opStats, error)
	cleanup func()
	ok      bool // set up and warmed up, no error so far

	walls, cpus, totals, molNFE []float64 // per unit; totals: whole-run wall ms
	nfes, fwds, bwds, solves    []int
	shapes, molecules           int
	peak, hwm                   float64
}

// guard runs f, turning a panic into the case's error.
func (c *caseRun) guard(stage string, f func() error) {
	defer func() {
		if p := recover(); p != nil {
			c.res.Error, c.ok = fmt.Sprintf("%spanic: %v", stage, p), false
		}
	}()
	if err := f(); err != nil {
		c.res.Error, c.ok = stage+err.Error(), false
	}
}

// prepare sets the case up and runs the untimed warm-up (compilation).
func (c *caseRun) prepare() {
	o := c.env.opts
	c.res = Result{Case: c.r.name, Backend: c.env.backend, Unit: c.r.unit, Repeats: o.Repeats}
	if c.r.batch != nil {
		c.res.Batch = c.r.batch(o)
	}
	c.ok = true
	c.guard("", func() error {
		var err error
		c.op, c.cleanup, err = c.r.setup(c.env)
		return err
	})
	if !c.ok {
		return
	}
	c.guard("warm-up: ", func() error {
		t0 := time.Now()
		if _, err := c.op(-1); err != nil {
			return err
		}
		c.res.FirstRunMS = round3(ms(time.Since(t0)))
		c.env.logf("warm-up (compilation) %.2fs", time.Since(t0).Seconds())
		return nil
	})
}

// runOnce times one repeat.
func (c *caseRun) runOnce(rep int) {
	if !c.ok {
		return
	}
	c.guard("", func() error {
		if err := c.env.ctx.Err(); err != nil {
			return err
		}
		c0, w0 := cpuTime(), time.Now()
		st, err := c.op(rep)
		wall, cpu := time.Since(w0), cpuTime()-c0
		if err != nil {
			return err
		}
		per := float64(max(st.perOp, 1))
		c.totals = append(c.totals, ms(wall))
		c.walls = append(c.walls, ms(wall)/per)
		c.cpus = append(c.cpus, ms(cpu)/per)
		c.nfes = append(c.nfes, st.nfe)
		c.fwds = append(c.fwds, st.nfeFwd)
		c.bwds = append(c.bwds, st.nfeBwd)
		if st.note != "" {
			c.res.Note = st.note
		}
		if st.molecules > 0 {
			c.molecules, c.shapes = st.molecules, st.shapes
			c.solves = append(c.solves, st.solves)
			c.molNFE = append(c.molNFE, float64(st.moleculeNFE)/float64(st.molecules))
		}
		return nil
	})
}

// finish fills the result from the timed runs.
func (c *caseRun) finish() Result {
	res := c.res
	res.PeakMB, res.VmHWMMB = round1(c.peak), round1(c.hwm)
	if len(c.walls) > 0 {
		res.Runs = roundAll(c.walls)
		res.MS, res.CPUMS = round3(median(c.walls)), round3(median(c.cpus))
		res.MinMS, res.MaxMS = round3(slices.Min(c.walls)), round3(slices.Max(c.walls))
		res.NFE, res.NFEForward, res.NFEBackward = medianInt(c.nfes), medianInt(c.fwds), medianInt(c.bwds)
		res.CompileMS = round3(max(0, res.FirstRunMS-median(c.totals)))
		if c.molecules > 0 {
			res.Molecules, res.Shapes, res.Solves = c.molecules, c.shapes, medianInt(c.solves)
			res.NFEPerMolecule = round3(median(c.molNFE))
			res.MolPerS, res.MolPerCPUS = round3(1000/median(c.walls)), round3(1000/median(c.cpus))
		}
	}
	return res
}

// measureGroup measures cases: setup and warm-up of each, then Repeats rounds in which every
// case runs once (interleaved, so that ratios between them see the same load), and the speedups
// against each case's baseline (median of the per-round ratios).
func measureGroup(runs []*caseRun) []Result {
	for _, c := range runs {
		c.prepare()
	}
	defer func() {
		for _, c := range runs {
			if c.cleanup != nil {
				c.cleanup()
			}
		}
	}()
	o := runs[0].env.opts
	var mem *memSampler
	if len(runs) == 1 {
		mem = startMemSampler()
	}
	for rep := range o.Repeats {
		for _, c := range runs {
			if len(runs) > 1 && c.ok {
				mem = startMemSampler()
			}
			c.runOnce(rep)
			if len(runs) > 1 && mem != nil {
				p, h := mem.stop()
				c.peak, c.hwm, mem = max(c.peak, p), max(c.hwm, h), nil
			}
		}
	}
	if len(runs) == 1 {
		runs[0].peak, runs[0].hwm = mem.stop()
	}
	out := make([]Result, len(runs))
	for i, c := range runs {
		out[i] = c.finish()
	}
	for i, c := range runs {
		if c.r.baseline == "" {
			continue
		}
		for _, b := range runs {
			if b.r.name != c.r.baseline || len(b.walls) == 0 || len(c.walls) == 0 {
				continue
			}
			var wr, cr []float64
			for k := range min(len(b.walls), len(c.walls)) {
				wr = append(wr, b.walls[k]/c.walls[k])
				cr = append(cr, b.cpus[k]/c.cpus[k])
			}
			out[i].Baseline, out[i].Speedup, out[i].SpeedupCPU = b.r.name, round3(median(wr)), round3(median(cr))
		}
	}
	for i, c := range runs {
		res := out[i]
		c.env.logf("ms=%.3g cpu_ms=%.3g nfe=%d peak_mb=%.0f vmhwm_mb=%.0f compile_ms=%.0f%s %s", res.MS, res.CPUMS, res.NFE,
			res.PeakMB, res.VmHWMMB, res.CompileMS, speedupNote(res), res.Error)
	}
	return out
}

func speedupNote(r Result) string {
	if r.Baseline == "" {
		return ""
	}
	return fmt.Sprintf(" speedup=%.3g (cpu %.3g) vs %s", r.Speedup, r.SpeedupCPU, r.Baseline)
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
