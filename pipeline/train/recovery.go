package train

// Divergence recovery of the training driver (run-directory crash safety: rundir.go).
//
// Divergence recovery. Every training step is checked, before the optimizer update, for a
// non-finite loss, a loss spike (loss > median + k·σ̂ of the last W good losses, σ̂ the
// MAD-based robust standard deviation) and an ODE-solver failure (ode.ErrMaxSteps,
// ode.ErrStepSizeTooSmall: the typical symptom of blown-up dynamics), and after it for a
// non-finite gradient norm. On a divergence the driver restores the last in-memory snapshot of
// every context variable (model parameters and optimizer state: Adam moments, AMSGrad maxima,
// step counters, clipping queue) together with its position in the epoch, multiplies the
// learning rate by LRFactor, and replays the batches from there (same data order and seeds).
// From the TightenAfter-th consecutive divergence on it also tightens the adaptive solver's
// tolerances by TolFactor (down to MinTol), for training and evaluation models alike; the
// tightened tolerances are checkpointed with the recovery state, so a resumed run keeps them.
// Snapshots are taken at the start of every epoch and every SnapshotEvery good steps. Each
// event is logged (slog, level WARN) and appended to OUT/recoveries.csv; Result.Recoveries
// counts them. The MaxConsecutive-th divergence without SnapshotEvery good steps in between
// stops the run with ErrDiverged, after checkpointing the last good state.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/gomlx_models/ode"
	"github.com/enflow/enflow/gomlx_models/optim"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// ErrDiverged is returned (wrapped) by Run when training kept diverging after recoveries.
var ErrDiverged = errors.New("training diverged")

// RecoveryOptions configures divergence detection and recovery (Options.Recovery). The zero
// value enables it with the defaults below.
type RecoveryOptions struct {
	// Disable turns recovery off: a non-finite loss or gradient norm then stops the run (and
	// a solver failure is an ordinary error); loss spikes are not checked.
	Disable bool
	// SnapshotEvery is the number of good steps between in-memory snapshots (default 10).
	SnapshotEvery int
	// Window is the number of recent good training losses kept for spike detection (default 50).
	Window int
	// MinHistory is the number of losses the window must hold before spikes are detected
	// (default 20).
	MinHistory int
	// SpikeK flags a loss above median + SpikeK·σ̂ of the window, σ̂ = 1.4826·MAD but at least
	// 0.01·(1 + |median|) (default 20; negative disables spike detection).
	SpikeK float64
	// LRFactor multiplies the learning rate at every recovery (default 0.5).
	LRFactor float64
	// MaxConsecutive is the number of consecutive divergences (no SnapshotEvery good steps in
	// between) that stops the run with ErrDiverged (default 5).
	MaxConsecutive int
	// TightenAfter is the number of consecutive divergences from which each recovery also
	// multiplies the adaptive solver's rtol and atol by TolFactor (default 2: the first
	// divergence only lowers the learning rate; negative: never tighten).
	TightenAfter int
	// TolFactor multiplies the tolerances when tightening (default 0.1).
	TolFactor float64
	// MinTol is the floor of tightened tolerances (default 1e-8).
	MinTol float64

	// beforeStep, if set (tests), runs before every training step; it may corrupt variables.
	beforeStep func(t *trainer) error
}

func (o *RecoveryOptions) defaults() {
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = 10
	}
	if o.Window <= 0 {
		o.Window = 50
	}
	if o.MinHistory <= 0 {
		o.MinHistory = min(20, o.Window)
	}
	o.MinHistory = min(o.MinHistory, o.Window)
	if o.SpikeK == 0 {
		o.SpikeK = 20
	}
	if o.LRFactor <= 0 || o.LRFactor >= 1 {
		o.LRFactor = 0.5
	}
	if o.MaxConsecutive <= 0 {
		o.MaxConsecutive = 5
	}
	if o.TightenAfter == 0 {
		o.TightenAfter = 2
	}
	if o.TolFactor <= 0 || o.TolFactor >= 1 {
		o.TolFactor = 0.1
	}
	if o.MinTol <= 0 {
		o.MinTol = 1e-8
	}
}

// RecoveriesCSV is the file of recovery events in a run directory.
const RecoveriesCSV = "recoveries.csv"

// recoveryParam is the context parameter (scope stateScope) holding the persisted recoveryState.
const recoveryParam = "recovery"

// RecoveryEvent is one row of recoveries.csv.
type RecoveryEvent struct {
	Event       int       // 1-based event number in the run
	Time        time.Time // wall-clock time
	Epoch       int       // epoch in which the divergence was detected
	Batch       int       // batch of the epoch
	Step        int64     // optimizer steps taken before the failing step
	Reason      string    // non_finite_loss | loss_spike | solver_failure | non_finite_grad_norm
	Loss        float64   // training loss of the failing step (NaN if unknown)
	GradNorm    float64   // gradient norm (NaN if not computed)
	Threshold   float64   // spike threshold (NaN unless Reason is loss_spike)
	LRBefore    float64
	LRAfter     float64
	RestoreStep int64 // optimizer step of the restored snapshot (-1: nothing to restore)
	Consecutive int   // consecutive divergences including this one
	Detail      string
	// RTolAfter and ATolAfter are the solver tolerances set by this recovery (NaN: unchanged).
	RTolAfter, ATolAfter float64
}

var recoveryColumns = []string{"event", "time", "epoch", "batch", "step", "reason", "loss", "grad_norm",
	"threshold", "lr_before", "lr_after", "restore_step", "consecutive", "detail", "rtol_after", "atol_after"}

// legacyRecoveryColumns is the column count of recoveries.csv files written before the
// tolerance columns existed (still read).
const legacyRecoveryColumns = 14

func fmtFloat(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

func (e *RecoveryEvent) record() []string {
	return []string{strconv.Itoa(e.Event), e.Time.UTC().Format(time.RFC3339Nano), strconv.Itoa(e.Epoch),
		strconv.Itoa(e.Batch), strconv.FormatInt(e.Step, 10), e.Reason, fmtFloat(e.Loss), fmtFloat(e.GradNorm),
		fmtFloat(e.Threshold), fmtFloat(e.LRBefore), fmtFloat(e.LRAfter), strconv.FormatInt(e.RestoreStep, 10),
		strconv.Itoa(e.Consecutive), e.Detail, fmtFloat(e.RTolAfter), fmtFloat(e.ATolAfter)}
}

// ReadRecoveries reads dir/recoveries.csv (no file: no events).
func ReadRecoveries(dir string) ([]RecoveryEvent, error) {
	path := filepath.Join(dir, RecoveriesCSV)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("train: reading %s: %w", path, err)
	}
	if len(recs) == 0 || !(slices.Equal(recs[0], recoveryColumns) || slices.Equal(recs[0], recoveryColumns[:legacyRecoveryColumns])) {
		return nil, fmt.Errorf("train: %s: unexpected header", path)
	}
	var out []RecoveryEvent
	for i, r := range recs[1:] {
		e, err := parseRecoveryRecord(r)
		if err != nil {
			return nil, fmt.Errorf("train: %s line %d: %w", path, i+2, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseRecoveryRecord(r []string) (RecoveryEvent, error) {
	if len(r) == legacyRecoveryColumns {
		r = append(r, "", "")
	}
	if len(r) != len(recoveryColumns) {
		return RecoveryEvent{}, fmt.Errorf("%d fields, want %d", len(r), len(recoveryColumns))
	}
	var e RecoveryEvent
	var errs []error
	atoi := func(s string) int { v, err := strconv.Atoi(s); errs = append(errs, err); return v }
	atoi64 := func(s string) int64 { v, err := strconv.ParseInt(s, 10, 64); errs = append(errs, err); return v }
	atof := func(s string) float64 {
		if s == "" {
			return math.NaN()
		}
		v, err := strconv.ParseFloat(s, 64)
		errs = append(errs, err)
		return v
	}
	e.Event, e.Epoch, e.Batch, e.Step = atoi(r[0]), atoi(r[2]), atoi(r[3]), atoi64(r[4])
	var terr error
	e.Time, terr = time.Parse(time.RFC3339Nano, r[1])
	errs = append(errs, terr)
	e.Reason, e.Loss, e.GradNorm, e.Threshold = r[5], atof(r[6]), atof(r[7]), atof(r[8])
	e.LRBefore, e.LRAfter, e.RestoreStep, e.Consecutive, e.Detail = atof(r[9]), atof(r[10]), atoi64(r[11]), atoi(r[12]), r[13]
	e.RTolAfter, e.ATolAfter = atof(r[14]), atof(r[15])
	return e, errors.Join(errs...)
}

func writeRecoveries(dir string, events []RecoveryEvent) error {
	path := filepath.Join(dir, RecoveriesCSV)
	err := atomicfile.Write(path, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.Write(recoveryColumns); err != nil {
			return err
		}
		for i := range events {
			if err := cw.Write(events[i].record()); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	})
	if err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	return nil
}

// divergence describes a failed training step.
type divergence struct {
	reason    string
	loss      float64
	gradNorm  float64
	threshold float64
	applied   bool  // the optimizer update was already applied
	err       error // solver error, if any
}

func (d *divergence) Error() string {
	s := fmt.Sprintf("divergence (%s): loss %g", d.reason, d.loss)
	if !math.IsNaN(d.gradNorm) {
		s += fmt.Sprintf(", gradient norm %g", d.gradNorm)
	}
	if !math.IsNaN(d.threshold) {
		s += fmt.Sprintf(", spike threshold %g", d.threshold)
	}
	if d.err != nil {
		s += ": " + d.err.Error()
	}
	return s
}

func (d *divergence) Unwrap() error { return d.err }

// recoveryState is what a checkpoint keeps of the recovery machinery.
type recoveryState struct {
	Losses      []float64 `json:"losses"`      // recent good losses, oldest first (≤ Window)
	Events      int       `json:"events"`      // recoveries so far (rows of recoveries.csv)
	Consecutive int       `json:"consecutive"` // divergences since the last SnapshotEvery good steps
	Good        int       `json:"good"`        // good steps since the last divergence
	// RTol and ATol are the solver tolerances set by recoveries (nil: the spec's).
	RTol *float64 `json:"rtol,omitempty"`
	ATol *float64 `json:"atol,omitempty"`
}

// snapshot is an in-memory copy of every context variable and of the driver position.
type snapshot struct {
	vars   []*mlctx.Variable
	values []*tensors.Tensor // host copies, same order as vars
	run    runState
}

// recovery is the live divergence-recovery state of a trainer.
type recovery struct {
	opts    RecoveryOptions
	log     *slog.Logger
	dir     string
	state   recoveryState
	events  []RecoveryEvent
	snap    *snapshot
	stepped bool    // an optimizer step ran in this process, so the optimizer variables exist
	since   int     // good steps since the last snapshot
	last    float64 // loss of the last applied step
}

func newRecovery(opts RecoveryOptions, log *slog.Logger, dir string) *recovery {
	opts.defaults()
	return &recovery{opts: opts, log: log, dir: dir}
}

// load restores the persisted state from ctx (after a checkpoint was loaded) and the events
// recorded up to that checkpoint.
func (r *recovery) load(ctx *mlctx.Context) error {
	v, ok := ctx.InAbsPath(stateScope).GetParam(recoveryParam)
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("train: recovery state parameter has type %T", v)
	}
	if err := json.Unmarshal([]byte(s), &r.state); err != nil {
		return fmt.Errorf("train: decoding recovery state: %w", err)
	}
	events, err := ReadRecoveries(r.dir)
	if err != nil {
		return err
	}
	if len(events) > r.state.Events {
		events = events[:r.state.Events] // events after the checkpoint are replayed (or not) by this run
	}
	r.events = events
	return nil
}

// store puts the persisted state into ctx (saved with the next checkpoint).
func (r *recovery) store(ctx *mlctx.Context) error {
	b, err := json.Marshal(&r.state)
	if err != nil {
		return fmt.Errorf("train: encoding recovery state: %w", err)
	}
	ctx.InAbsPath(stateScope).SetParam(recoveryParam, string(b))
	return nil
}

// isLearningRate reports GoMLX's learning-rate variable, which a rollback does not restore.
func isLearningRate(v *mlctx.Variable) bool {
	return v.Name() == optimizers.ParamLearningRate && v.Scope() == mlctx.ScopeSeparator+optimizers.Scope
}

// takeSnapshot copies every variable of ctx (but the learning rate) and the run state.
func (r *recovery) takeSnapshot(ctx *mlctx.Context, st *runState) error {
	s := &snapshot{run: *st}
	for v := range ctx.IterVariables() {
		if isLearningRate(v) || !v.HasValue() {
			continue
		}
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("train: snapshot of %s: %w", v.ScopeAndName(), err)
		}
		c, err := val.LocalClone()
		if err != nil {
			return fmt.Errorf("train: snapshot of %s: %w", v.ScopeAndName(), err)
		}
		s.vars = append(s.vars, v)
		s.values = append(s.values, c)
	}
	r.snap = s
	r.since = 0
	return nil
}

// restore writes the snapshot back into the variables (copies: the snapshot stays reusable).
func (s *snapshot) restore() error {
	for i, v := range s.vars {
		c, err := s.values[i].LocalClone()
		if err != nil {
			return fmt.Errorf("train: restoring %s: %w", v.ScopeAndName(), err)
		}
		if err := v.SetValue(c); err != nil {
			return fmt.Errorf("train: restoring %s: %w", v.ScopeAndName(), err)
		}
	}
	return nil
}

// epochStart takes the snapshot an epoch starts from, once the optimizer variables exist.
func (r *recovery) epochStart(t *trainer) error {
	if r.opts.Disable || !r.stepped {
		return nil
	}
	return r.takeSnapshot(t.ctx, t.state)
}

// checkLoss classifies a computed loss before the update: a non-finite value or a spike.
func (r *recovery) checkLoss(loss float64) *divergence {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return &divergence{reason: "non_finite_loss", loss: loss, gradNorm: math.NaN(), threshold: math.NaN()}
	}
	if r.opts.SpikeK < 0 || len(r.state.Losses) < r.opts.MinHistory {
		return nil
	}
	if th := spikeThreshold(r.state.Losses, r.opts.SpikeK); loss > th {
		return &divergence{reason: "loss_spike", loss: loss, gradNorm: math.NaN(), threshold: th}
	}
	return nil
}

// spikeThreshold is median + k·max(1.4826·MAD, 0.01·(1+|median|)) of xs.
func spikeThreshold(xs []float64, k float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	med := median(s)
	dev := make([]float64, len(s))
	for i, x := range s {
		dev[i] = math.Abs(x - med)
	}
	slices.Sort(dev)
	sigma := max(1.4826*median(dev), 0.01*(1+math.Abs(med)))
	return med + k*sigma
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// good records the step just applied (its loss is r.last; t.state is already advanced past
// it) and takes a snapshot every SnapshotEvery good steps.
func (r *recovery) good(t *trainer) error {
	loss := r.last
	r.stepped = true
	if r.opts.Disable {
		return nil
	}
	r.state.Losses = append(r.state.Losses, loss)
	if n := len(r.state.Losses) - r.opts.Window; n > 0 {
		r.state.Losses = slices.Delete(r.state.Losses, 0, n)
	}
	r.state.Good++
	if r.state.Good >= r.opts.SnapshotEvery {
		r.state.Consecutive = 0
	}
	r.since++
	if r.snap == nil || r.since >= r.opts.SnapshotEvery {
		return r.takeSnapshot(t.ctx, t.state)
	}
	return nil
}

// currentLR returns the learning rate in force (creating GoMLX's variable, or loading it from
// the checkpoint, if no step ran yet).
func currentLR(t *trainer) (float64, error) {
	if lr, ok := optim.LearningRate(t.ctx); ok {
		return lr, nil
	}
	dtype, err := t.spec.GoDType()
	if err != nil {
		return 0, err
	}
	var lr float64
	err = catchPanic(func() error {
		v := optimizers.LearningRateVar(t.ctx, dtype, t.opts.LearningRate)
		val, err := v.Value()
		if err != nil {
			return err
		}
		lr, err = scalarOf(val)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("train: reading the learning rate: %w", err)
	}
	return lr, nil
}

func catchPanic(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return fn()
}

// rollback handles a divergence: restore the last snapshot, lower the learning rate, record
// the event. It returns ErrDiverged (wrapped) when the run must stop.
func (r *recovery) rollback(t *trainer, d *divergence) error {
	st := t.state
	ev := RecoveryEvent{
		Time: time.Now(), Epoch: st.Epoch, Batch: st.Batch, Step: st.Step, Reason: d.reason,
		Loss: d.loss, GradNorm: d.gradNorm, Threshold: d.threshold, RestoreStep: -1,
	}
	if d.err != nil {
		ev.Detail = d.err.Error()
	}
	lr, err := currentLR(t)
	if err != nil {
		return err
	}
	ev.LRBefore = lr
	switch {
	case r.snap != nil:
		if err := r.snap.restore(); err != nil {
			return err
		}
		*st = r.snap.run
		ev.RestoreStep = st.Step
	case d.applied:
		return fmt.Errorf("%w before any good step (nothing to roll back to): %w", ErrDiverged, d)
	}
	// Nothing was applied without a snapshot: the failing batch is simply retried.
	newLR := lr * r.opts.LRFactor
	dtype, err := t.spec.GoDType()
	if err != nil {
		return err
	}
	if err := optim.SetLearningRate(t.ctx, dtype, newLR); err != nil {
		return err
	}
	ev.LRAfter = newLR
	ev.RTolAfter, ev.ATolAfter = math.NaN(), math.NaN()
	r.state.Events++
	r.state.Consecutive++
	if r.opts.TightenAfter > 0 && r.state.Consecutive >= r.opts.TightenAfter {
		rtol, atol, ok, err := r.tighten(t)
		if err != nil {
			return err
		}
		if ok {
			ev.RTolAfter, ev.ATolAfter = rtol, atol
		}
	}
	r.state.Good = 0
	r.since = 0
	ev.Event, ev.Consecutive = r.state.Events, r.state.Consecutive
	r.events = append(r.events, ev)
	msg := "divergence: rolled back and lowered the learning rate"
	attrs := []any{"reason", d.reason, "epoch", ev.Epoch, "batch", ev.Batch, "step", ev.Step, "loss", d.loss,
		"grad_norm", d.gradNorm, "threshold", d.threshold, "restored_step", ev.RestoreStep,
		"lr_before", lr, "lr_after", newLR, "consecutive", ev.Consecutive, "event", ev.Event, "err", d.err}
	if !math.IsNaN(ev.RTolAfter) {
		msg = "divergence: rolled back, lowered the learning rate and tightened the solver tolerances"
		attrs = append(attrs, "rtol_after", ev.RTolAfter, "atol_after", ev.ATolAfter)
	}
	r.log.Warn(msg, attrs...)
	if err := writeRecoveries(r.dir, r.events); err != nil {
		return err
	}
	if r.state.Consecutive >= r.opts.MaxConsecutive {
		return fmt.Errorf("%w: %d consecutive divergences, the last at epoch %d, batch %d: %w; lr now %g; the last good state (epoch %d, batch %d, step %d) is checkpointed (see %s)",
			ErrDiverged, r.state.Consecutive, ev.Epoch, ev.Batch, d, newLR, st.Epoch, st.Batch, st.Step, RecoveriesCSV)
	}
	return nil
}

// tighten multiplies the adaptive solver tolerances of every model of t by TolFactor (floored at
// MinTol) and records them in the persisted state. ok is false if no model has an adaptive
// solver or the tolerances are already at the floor.
func (r *recovery) tighten(t *trainer) (rtol, atol float64, ok bool, err error) {
	for _, m := range t.models {
		tm, isTol := m.(TolerancedModel)
		if !isTol {
			continue
		}
		cr, ca, adaptive := tm.Tolerances()
		if !adaptive {
			continue
		}
		nr, na := max(cr*r.opts.TolFactor, r.opts.MinTol), max(ca*r.opts.TolFactor, r.opts.MinTol)
		if nr >= cr && na >= ca {
			continue
		}
		if err := tm.SetTolerances(nr, na); err != nil {
			return 0, 0, false, fmt.Errorf("train: tightening solver tolerances: %w", err)
		}
		if m == t.model {
			rtol, atol, ok = nr, na, true
		}
	}
	if ok {
		r.state.RTol, r.state.ATol = &rtol, &atol
	}
	return rtol, atol, ok, nil
}

// applyTolerances sets the tolerances recorded by earlier recoveries (after a resume) on every
// model of t.
func (r *recovery) applyTolerances(t *trainer) error {
	if r.state.RTol == nil || r.state.ATol == nil {
		return nil
	}
	for _, m := range t.models {
		if tm, ok := m.(TolerancedModel); ok {
			if _, _, adaptive := tm.Tolerances(); adaptive {
				if err := tm.SetTolerances(*r.state.RTol, *r.state.ATol); err != nil {
					return fmt.Errorf("train: restoring solver tolerances: %w", err)
				}
			}
		}
	}
	r.log.Info("solver tolerances tightened by earlier recoveries", "rtol", *r.state.RTol, "atol", *r.state.ATol)
	return nil
}

// isSolverFailure reports an ODE solver giving up (too many steps or a vanishing step), which
// a blown-up velocity field causes.
func isSolverFailure(err error) bool {
	return errors.Is(err, ode.ErrMaxSteps) || errors.Is(err, ode.ErrStepSizeTooSmall)
}

// ---- Hooks called by the trainer ----

// beforeStep runs the test hook, if any.
func (r *recovery) beforeStep(t *trainer) error {
	if r.opts.beforeStep != nil {
		return r.opts.beforeStep(t)
	}
	return nil
}

// lossAndGradFailed classifies an error of Model.LossAndGrad: a solver failure is a
// divergence (nil otherwise).
func (r *recovery) lossAndGradFailed(err error) *divergence {
	if !isSolverFailure(err) {
		return nil
	}
	return &divergence{reason: "solver_failure", loss: math.NaN(), gradNorm: math.NaN(), threshold: math.NaN(), err: err}
}

// checkGradNorm classifies the gradient norm reported by an applied optimizer step.
func (r *recovery) checkGradNorm(loss, norm float64) *divergence {
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return &divergence{reason: "non_finite_grad_norm", loss: loss, gradNorm: norm, threshold: math.NaN(), applied: true}
	}
	return nil
}

// recoverStep handles an error of trainStep. retry reports a rollback after which the loop
// continues from t.state.Batch; otherwise err is the error to stop with (the last good state
// is checkpointed first when recovery gives up).
func (t *trainer) recoverStep(stepErr error) (retry bool, err error) {
	var d *divergence
	if t.rec.opts.Disable || !errors.As(stepErr, &d) {
		return false, stepErr
	}
	if err := t.rec.rollback(t, d); err != nil {
		if errors.Is(err, ErrDiverged) && t.rec.snap != nil {
			if cerr := t.checkpoint(); cerr != nil {
				return false, errors.Join(err, cerr)
			}
		}
		return false, err
	}
	return true, nil
}
