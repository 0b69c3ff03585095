package train

// Training objectives of Boltzmann generators (Köhler, Klein & Noé): maximum likelihood on data
// (ML), the reverse KL divergence to a Boltzmann density p(x) ∝ exp(−u(x)/T) on flow samples
// (KL, "energy training"), or the mixture λ·ML + (1−λ)·KL with λ scheduled over the epochs.

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/internal/graphutil"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Objective names (Options.Objective, --objective).
const (
	ObjectiveML   = "ml"    // −mean log q(x) on training data (the default)
	ObjectiveKL   = "kl"    // E_z[u(f(z))/T − log|det ∂f/∂z|] on flow samples
	ObjectiveMLKL = "ml+kl" // λ·ML + (1−λ)·KL
)

// ParseObjective normalises an objective name ("" is ML).
func ParseObjective(s string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "", ObjectiveML, "nll":
		return ObjectiveML, nil
	case ObjectiveKL, "energy":
		return ObjectiveKL, nil
	case ObjectiveMLKL, "kl+ml", "mixed":
		return ObjectiveMLKL, nil
	}
	return "", fmt.Errorf("train: unknown objective %q (want ml, kl or ml+kl)", s)
}

// Lambda is the weight λ of the ML term of ML+KL, linear from Start at the first epoch to End at
// the last (Köhler's kernel-flow script: 1.0 → 0.5).
type Lambda struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// ParseLambda reads "a" (constant) or "a:b" (linear over the epochs); both in [0, 1].
func ParseLambda(s string) (Lambda, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) > 2 || parts[0] == "" {
		return Lambda{}, fmt.Errorf("train: --lambda %q: want λ or λstart:λend, e.g. 1.0:0.5", s)
	}
	vals := make([]float64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(v >= 0 && v <= 1) {
			return Lambda{}, fmt.Errorf("train: --lambda %q: %q is not a number in [0, 1]", s, p)
		}
		vals[i] = v
	}
	if len(vals) == 1 {
		return Lambda{Start: vals[0], End: vals[0]}, nil
	}
	return Lambda{Start: vals[0], End: vals[1]}, nil
}

// At returns λ at epoch (0-based) of epochs.
func (l Lambda) At(epoch, epochs int) float64 {
	if epochs <= 1 {
		return l.Start
	}
	f := float64(min(max(epoch, 0), epochs-1)) / float64(epochs-1)
	return l.Start + (l.End-l.Start)*f
}

func (l Lambda) String() string {
	if l.Start == l.End {
		return strconv.FormatFloat(l.Start, 'g', -1, 64)
	}
	return strconv.FormatFloat(l.Start, 'g', -1, 64) + ":" + strconv.FormatFloat(l.End, 'g', -1, 64)
}

// EnergyModel is implemented by model kinds that can be trained by energy (reverse KL): the
// particle CNFs (E-NF, the baselines) and the RealNVP.
type EnergyModel interface {
	// SetTarget sets the Boltzmann density of KLLossAndGrad.
	SetTarget(t energy.Target) error
	// KLLossAndGrad draws n flow samples from seed and returns the batch-mean KL terms and the
	// gradient of KLResult.Loss for every variable of Variables().
	KLLossAndGrad(n int, seed uint64) (energy.KLResult, []*tensors.Tensor, Stats, error)
}

// DensitySampler is implemented by model kinds that return the log density of their samples
// (for importance weights, `enflow sample --log-weights`).
type DensitySampler interface {
	// SampleWithLogDensity draws batch configurations [batch, nodes, dims] with seed and returns
	// log q_X(x) of each (nats, in the flow's own coordinates).
	SampleWithLogDensity(batch, nodes, dims int, seed uint64) (*tensors.Tensor, []float64, Stats, error)
}

// EnergyOptions configures energy-based training (Options.Energy).
type EnergyOptions struct {
	// Objective is ObjectiveML (default), ObjectiveKL or ObjectiveMLKL.
	Objective string `json:"objective"`
	// Energy names the target energy (energy.ByName; "" = the system's own: dw4, lj13).
	Energy string `json:"energy,omitempty"`
	// Temperature T of the target (default 1).
	Temperature float64 `json:"temperature,omitempty"`
	// KLSamples is the number of flow samples per KL step (default: the batch size).
	KLSamples int `json:"kl_samples,omitempty"`
	// Lambda is the ML weight schedule of ObjectiveMLKL (default 0.5 constant, bgflow's trainer).
	Lambda *Lambda `json:"lambda,omitempty"`
	// EnergyCut, when set, trains on energy.LinLogCut(u, *EnergyCut, energy.DefaultCutMax)
	// instead of u (bgflow's linlogcut): needed for hard-core energies such as LJ13, whose
	// overlapping flow samples otherwise give losses of 10¹⁰ and more.
	EnergyCut *float64 `json:"energy_cut,omitempty"`
}

// resolveEnergy settles the run's objective: a resumed run without an explicit objective keeps
// the stored one; the choice is stored in the run state (checkpointed) and its target looked up.
func (t *trainer) resolveEnergy(resumed bool) error {
	e := &t.opts.Energy
	if resumed && strings.TrimSpace(e.Objective) == "" && t.state.Energy != nil {
		*e = *t.state.Energy
	}
	tg, err := e.resolve(t.spec.System, t.opts.Schedule.Batch)
	if err != nil {
		return err
	}
	t.target = tg
	if e.Objective == ObjectiveML {
		t.state.Energy = nil
		return nil
	}
	stored := *e
	t.state.Energy = &stored
	t.log.Info("energy-based objective", "objective", e.Objective, "energy", tg.Name, "temperature", tg.Temperature,
		"kl_samples", e.KLSamples, "lambda", e.Lambda.String())
	return nil
}

// Validate checks the options for a model of system without changing them: a known objective,
// a target energy that exists for the system and a finite temperature > 0. The CLI calls it
// before it creates the run directory, so a bad flag leaves nothing behind.
func (e EnergyOptions) Validate(system string) error {
	if e.Temperature != 0 {
		if err := energy.CheckTemperature(e.Temperature); err != nil {
			return fmt.Errorf("train: --temperature: %w", err)
		}
	}
	c := e
	_, err := c.resolve(system, 1)
	return err
}

// resolve fills defaults and looks up the target for the model's system.
func (e *EnergyOptions) resolve(system string, batch int) (energy.Target, error) {
	obj, err := ParseObjective(e.Objective)
	if err != nil {
		return energy.Target{}, err
	}
	e.Objective = obj
	if e.Temperature == 0 {
		e.Temperature = 1
	}
	if e.KLSamples <= 0 {
		e.KLSamples = batch
	}
	if e.Lambda == nil {
		e.Lambda = &Lambda{Start: 0.5, End: 0.5}
	}
	if obj == ObjectiveML {
		return energy.Target{}, nil
	}
	sys, err := energy.ForSystem(system, e.Energy)
	if err != nil {
		return energy.Target{}, fmt.Errorf("train: --objective %s needs an energy: %w", obj, err)
	}
	tg, err := sys.Target(e.Temperature).Normalized()
	if err != nil {
		return energy.Target{}, fmt.Errorf("train: %w", err)
	}
	if e.EnergyCut != nil {
		if tg.Energy, err = energy.LinLogCut(tg.Energy, *e.EnergyCut, energy.DefaultCutMax); err != nil {
			return energy.Target{}, fmt.Errorf("train: --energy-cut: %w", err)
		}
		tg.Name += fmt.Sprintf("(linlogcut %g)", *e.EnergyCut)
	}
	return tg, nil
}

// combineGrads returns λ·a + (1−λ)·b element-wise (same shapes and dtypes), as new tensors.
func combineGrads(lambda float64, a, b []*tensors.Tensor) ([]*tensors.Tensor, error) {
	if len(a) != len(b) {
		return nil, fmt.Errorf("train: %d ML gradients but %d KL gradients", len(a), len(b))
	}
	out := make([]*tensors.Tensor, len(a))
	for i := range a {
		av, err := graphutil.Floats(a[i])
		if err != nil {
			finalize(out...)
			return nil, err
		}
		bv, err := graphutil.Floats(b[i])
		if err != nil {
			finalize(out...)
			return nil, err
		}
		if len(av) != len(bv) {
			finalize(out...)
			return nil, fmt.Errorf("train: gradient %d: ML has %d values, KL %d", i, len(av), len(bv))
		}
		for j := range av {
			av[j] = lambda*av[j] + (1-lambda)*bv[j]
		}
		if out[i], err = graphutil.Tensor(a[i].DType(), av, a[i].Shape().Dimensions...); err != nil {
			finalize(out...)
			return nil, err
		}
	}
	return out, nil
}

// objectiveStep computes the loss and gradients of one step under the run's objective. For ML
// it is the model's LossAndGrad on the batch; for KL the model's KLLossAndGrad on KLSamples
// flow samples from the step seed; for ML+KL both, weighted by λ of the current epoch.
func (t *trainer) objectiveStep(b *Batch, seed uint64) (stepOut, error) {
	e := &t.opts.Energy
	var out stepOut
	out.kl = energy.KLResult{Loss: math.NaN(), KL: math.NaN(), KLPrior: math.NaN(), MeanEnergy: math.NaN()}
	out.nll = math.NaN()
	wantML := e.Objective != ObjectiveKL
	wantKL := e.Objective != ObjectiveML
	var mlGrads, klGrads []*tensors.Tensor
	var mlLoss float64
	if wantML {
		loss, nll, grads, st, err := t.model.LossAndGrad(b, seed)
		if err != nil {
			return out, err
		}
		mlLoss, out.nll, mlGrads = loss, nll, grads
		out.stats.Add(st)
	}
	if wantKL {
		em, ok := t.model.(EnergyModel)
		if !ok {
			finalize(mlGrads...)
			return out, fmt.Errorf("model kind %q cannot be trained by energy (--objective %s)", t.spec.Kind, e.Objective)
		}
		res, grads, st, err := em.KLLossAndGrad(e.KLSamples, klSeed(seed, t.rec.state.Consecutive))
		if err != nil {
			finalize(mlGrads...)
			return out, err
		}
		out.kl, klGrads = res, grads
		out.stats.Add(st)
	}
	switch e.Objective {
	case ObjectiveML:
		out.loss, out.grads = mlLoss, mlGrads
	case ObjectiveKL:
		out.loss, out.grads = out.kl.Loss, klGrads
	default:
		lam := e.Lambda.At(t.state.Epoch, t.opts.Schedule.Epochs)
		g, err := combineGrads(lam, mlGrads, klGrads)
		finalize(mlGrads...)
		finalize(klGrads...)
		if err != nil {
			return out, err
		}
		out.loss, out.grads = lam*mlLoss+(1-lam)*out.kl.Loss, g
	}
	return out, nil
}

// klSeed is the seed of a step's KL samples: separate from the ML step's Hutchinson seed, and
// different after each divergence rollback (retries = the recovery's consecutive-divergence
// count, checkpointed, reset after a stretch of good steps), so a retried step does not redraw
// the very samples that blew up. With no divergence (retries 0) the seed is the step's own, so
// runs without divergences are unchanged and resumes stay exact.
func klSeed(seed uint64, retries int) uint64 {
	return seed ^ klSeedMix ^ (uint64(retries) * 0x9e3779b97f4a7c15)
}

// klSeedMix separates the KL samples' seed from the ML step's Hutchinson seed.
const klSeedMix = 0x6b6c5f73616d706c // "kl_sampl"

type stepOut struct {
	loss, nll float64
	kl        energy.KLResult
	grads     []*tensors.Tensor
	stats     Stats
}
