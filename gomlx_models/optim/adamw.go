// Package optim implements AdamW with the AMSGrad variant as a GoMLX optimizer, with the exact
// update of PyTorch's torch.optim.AdamW(amsgrad=True), plus optional gradient-norm clipping
// (fixed, as torch.nn.utils.clip_grad_norm_, or adaptive as en_flows' gradient_clipping queue).
//
// GoMLX's optimizers.Adam (v0.26.0 to v0.27.3) leaves AMSGrad unimplemented (the AMSGrad option is commented
// out in optimizers/adam.go) and applies weight decay after the Adam step; this package fills the
// gap. It satisfies optimizers.Interface and train.OptimizeWithGradients, and additionally offers
// ApplyGradientsGraph (explicit variable list) and Stepper (a compiled "apply these gradient
// tensors" step), which is what enflow uses: the CNF gradients are computed from Go by the
// adjoint method, so the optimizer step is a separate graph taking the gradients as inputs.
//
// All optimizer state (moments, max of second moments, step counter, learning rate, adaptive
// clipping queue) lives in context variables, so GoMLX checkpoints save and restore it.
//
// Update, per parameter p with gradient g at step t (PyTorch AdamW, amsgrad=True):
//
//	p ← p·(1 − lr·wd)
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	v̂ ← max(v̂, v)                       (AMSGrad: the max of the raw, not bias-corrected, v)
//	p ← p − lr/(1−β1^t) · m / (sqrt(v̂)/sqrt(1−β2^t) + ε)
package optim

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// Context hyperparameters read by Config.FromContext. The learning rate is GoMLX's
// optimizers.ParamLearningRate ("learning_rate"); betas, epsilon and weight decay reuse the names of
// GoMLX's Adam parameters, but default to PyTorch's values.
const (
	ParamBeta1       = optimizers.ParamAdamBeta1       // "adam_beta1", default 0.9
	ParamBeta2       = optimizers.ParamAdamBeta2       // "adam_beta2", default 0.999
	ParamEpsilon     = optimizers.ParamAdamEpsilon     // "adam_epsilon", default 1e-8 (PyTorch)
	ParamWeightDecay = optimizers.ParamAdamWeightDecay // "adam_weight_decay", default 1e-2 (PyTorch)
	// ParamAMSGrad (bool) selects the AMSGrad variant. Default true.
	ParamAMSGrad = "adam_amsgrad"
	// ParamClipGradNorm (float64) > 0 clips the global gradient norm to this fixed value.
	ParamClipGradNorm = "clip_grad_norm"
	// ParamClipAdaptive (bool) enables en_flows' adaptive clipping: max norm = 1.5·mean + 2·std of
	// the last ParamClipQueueLen recorded norms.
	ParamClipAdaptive = "clip_grad_adaptive"
	// ParamClipQueueLen (int) is the length of the adaptive clipping queue. Default 50.
	ParamClipQueueLen = "clip_grad_queue_len"
	// ParamClipQueueInit (float64) is the value the adaptive queue is seeded with. Default 3000
	// (en_flows QM9; QM9-positional uses 1e30).
	ParamClipQueueInit = "clip_grad_queue_init"
)

// Defaults (PyTorch's torch.optim.AdamW, with AMSGrad on as enflow trains).
const (
	DefaultLearningRate = 1e-3
	DefaultBeta1        = 0.9
	DefaultBeta2        = 0.999
	DefaultEpsilon      = 1e-8
	DefaultWeightDecay  = 1e-2
	DefaultQueueLen     = 50
	DefaultQueueInit    = 3000.0

	// DefaultScope is the absolute scope holding the optimizer's state variables.
	DefaultScope = "AdamW"
)

// Config configures AdamW. Create it with AdamW(), adjust with the setters, and call Done.
type Config struct {
	scope        string
	dtype        dtypes.DType // InvalidDType: the loss (gradient) dtype.
	learningRate float64      // < 0: ctx param "learning_rate", else DefaultLearningRate.
	beta1, beta2 float64
	epsilon      float64
	weightDecay  float64
	amsGrad      bool

	clipNorm      float64 // > 0: fixed max norm.
	clipAdaptive  bool
	clipQueueLen  int
	clipQueueInit float64
	clipFilter    func(v *context.Variable) bool
}

// AdamW returns a configuration with PyTorch's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8,
// weight decay 1e-2) and AMSGrad enabled, no clipping.
func AdamW() *Config {
	return &Config{
		scope:         DefaultScope,
		dtype:         dtypes.InvalidDType,
		learningRate:  -1,
		beta1:         DefaultBeta1,
		beta2:         DefaultBeta2,
		epsilon:       DefaultEpsilon,
		weightDecay:   DefaultWeightDecay,
		amsGrad:       true,
		clipQueueLen:  DefaultQueueLen,
		clipQueueInit: DefaultQueueInit,
	}
}

// FromContext reads the hyperparameters (see the Param* constants) set in ctx, keeping the current
// values for those not set. The learning rate is read lazily at graph building, from
// "learning_rate", unless LearningRate was called.
func (c *Config) FromContext(ctx *context.Context) *Config {
	c.beta1 = context.GetParamOr(ctx, ParamBeta1, c.beta1)
	c.beta2 = context.GetParamOr(ctx, ParamBeta2, c.beta2)
	c.epsilon = context.GetParamOr(ctx, ParamEpsilon, c.epsilon)
	c.weightDecay = context.GetParamOr(ctx, ParamWeightDecay, c.weightDecay)
	c.amsGrad = context.GetParamOr(ctx, ParamAMSGrad, c.amsGrad)
	c.clipNorm = context.GetParamOr(ctx, ParamClipGradNorm, c.clipNorm)
	c.clipAdaptive = context.GetParamOr(ctx, ParamClipAdaptive, c.clipAdaptive)
	c.clipQueueLen = context.GetParamOr(ctx, ParamClipQueueLen, c.clipQueueLen)
	c.clipQueueInit = context.GetParamOr(ctx, ParamClipQueueInit, c.clipQueueInit)
	return c
}

// Scope sets the absolute scope of the optimizer state variables (default "AdamW").
func (c *Config) Scope(name string) *Config { c.scope = name; return c }

// DType sets the dtype of the optimizer computation and state; InvalidDType (default) uses the
// dtype of the loss / gradients.
func (c *Config) DType(dtype dtypes.DType) *Config { c.dtype = dtype; return c }

// LearningRate sets the initial learning rate. It is stored in GoMLX's learning-rate variable
// ("/optimizers/learning_rate" for a root context), so schedules can change it and checkpoints keep it.
func (c *Config) LearningRate(lr float64) *Config { c.learningRate = lr; return c }

// Betas sets β1 and β2.
func (c *Config) Betas(beta1, beta2 float64) *Config { c.beta1, c.beta2 = beta1, beta2; return c }

// Epsilon sets ε, added to the bias-corrected sqrt of the second moment.
func (c *Config) Epsilon(eps float64) *Config { c.epsilon = eps; return c }

// WeightDecay sets the decoupled weight decay: p ← p·(1 − lr·wd) before the Adam step.
func (c *Config) WeightDecay(wd float64) *Config { c.weightDecay = wd; return c }

// AMSGrad enables or disables the AMSGrad variant (default enabled).
func (c *Config) AMSGrad(enabled bool) *Config { c.amsGrad = enabled; return c }

// ClipGradNorm clips the global L2 norm of the (filtered) gradients to maxNorm, exactly as
// torch.nn.utils.clip_grad_norm_ (scale by min(1, maxNorm/(norm+1e-6))). maxNorm <= 0 disables it.
func (c *Config) ClipGradNorm(maxNorm float64) *Config { c.clipNorm = maxNorm; return c }

// ClipAdaptive enables en_flows' adaptive clipping: the max norm is 1.5·mean + 2·std (population)
// of a queue of the last queueLen recorded norms, seeded with one value queueInit; after each step
// min(norm, maxNorm) is pushed (oldest dropped). The queue lives in context variables.
func (c *Config) ClipAdaptive(queueLen int, queueInit float64) *Config {
	c.clipAdaptive, c.clipQueueLen, c.clipQueueInit = true, queueLen, queueInit
	return c
}

// ClipOnly restricts the gradient-norm computation and clipping to the variables for which
// filter returns true (en_flows clips the flow's parameters but not the dequantizer's).
// nil (default) clips all.
func (c *Config) ClipOnly(filter func(v *context.Variable) bool) *Config {
	c.clipFilter = filter
	return c
}

// Done validates the configuration and returns the optimizer.
func (c *Config) Done() (*Optimizer, error) {
	switch {
	case c.scope == "":
		return nil, fmt.Errorf("optim: empty scope")
	case c.beta1 < 0 || c.beta1 >= 1 || c.beta2 < 0 || c.beta2 >= 1:
		return nil, fmt.Errorf("optim: betas (%g, %g) must be in [0, 1)", c.beta1, c.beta2)
	case c.epsilon < 0 || c.weightDecay < 0:
		return nil, fmt.Errorf("optim: epsilon %g and weight decay %g must be >= 0", c.epsilon, c.weightDecay)
	case c.clipAdaptive && c.clipQueueLen < 1:
		return nil, fmt.Errorf("optim: adaptive clipping queue length %d must be >= 1", c.clipQueueLen)
	case c.dtype != dtypes.InvalidDType && !c.dtype.IsFloat():
		return nil, fmt.Errorf("optim: dtype %s is not a float", c.dtype)
	}
	cfg := *c
	return &Optimizer{config: &cfg}, nil
}

// Optimizer is AdamW(amsgrad) with optional gradient-norm clipping. It implements
// optimizers.Interface and train.OptimizeWithGradients.
type Optimizer struct {
	config *Config
}

var (
	_ optimizers.Interface        = (*Optimizer)(nil)
	_ train.OptimizeWithGradients = (*Optimizer)(nil)
)

// UpdateGraph implements optimizers.Interface: it differentiates the scalar loss with respect to
// the trainable variables and applies the update. Like every GoMLX graph-building function, it
// panics on error (the executor turns that into an error).
func (o *Optimizer) UpdateGraph(ctx *context.Context, g *Graph, loss *Node) {
	_ = g
	if !loss.Shape().IsScalar() {
		panic(fmt.Errorf("optim: loss must be a scalar, got shape %s", loss.Shape()))
	}
	grads := ctx.BuildTrainableVariablesGradientsGraph(loss)
	o.UpdateGraphWithGradients(ctx, grads, loss.DType())
}

// UpdateGraphWithGradients implements train.OptimizeWithGradients: grads are the gradients of the
// trainable variables used by the graph, in ctx.IterVariables order (as returned by
// Context.BuildTrainableVariablesGradientsGraph).
func (o *Optimizer) UpdateGraphWithGradients(ctx *context.Context, grads []*Node, lossDType dtypes.DType) {
	if len(grads) == 0 {
		panic(fmt.Errorf("optim: no gradients given: are there trainable variables?"))
	}
	g := grads[0].Graph()
	var vars []*context.Variable
	for v := range ctx.IterVariables() {
		if v.Trainable && v.InUseByGraph(g) {
			vars = append(vars, v)
		}
	}
	if len(vars) != len(grads) {
		panic(fmt.Errorf("optim: %d gradients for %d trainable variables in use by the graph", len(grads), len(vars)))
	}
	dtype := o.config.dtype
	if dtype == dtypes.InvalidDType {
		dtype = lossDType
	}
	o.ApplyGradientsGraph(ctx, vars, grads, dtype)
}

// Clear implements optimizers.Interface: it deletes the optimizer state (moments, step counter,
// clipping queue). The learning rate and global step are left alone.
func (o *Optimizer) Clear(ctx *context.Context) error {
	if err := ctx.InAbsPath(context.ScopeSeparator + o.config.scope).DeleteVariablesInScope(); err != nil {
		return fmt.Errorf("optim: clearing scope %q: %w", o.config.scope, err)
	}
	return nil
}

// StepStats are the scalar outputs of ApplyGradientsGraph.
type StepStats struct {
	// GradNorm is the global L2 norm of the (filtered) gradients before clipping.
	GradNorm *Node
	// MaxNorm is the clipping threshold used in this step, or 0 if clipping is off.
	MaxNorm *Node
}

// ApplyGradientsGraph updates vars with their gradients grads (same order and shapes), computing
// in dtype (InvalidDType: the dtype of grads[0]). It increments the global step and the optimizer's
// own step counter. It panics on error, like every GoMLX graph-building function.
func (o *Optimizer) ApplyGradientsGraph(ctx *context.Context, vars []*context.Variable, grads []*Node, dtype dtypes.DType) StepStats {
	c := o.config
	if len(vars) != len(grads) || len(grads) == 0 {
		panic(fmt.Errorf("optim: %d variables and %d gradients (want equal, > 0)", len(vars), len(grads)))
	}
	g := grads[0].Graph()
	if dtype == dtypes.InvalidDType {
		dtype = grads[0].DType()
	}
	grads = append([]*Node(nil), grads...) // do not modify the caller's slice
	for i, v := range vars {
		if !v.Shape().EqualDimensions(grads[i].Shape()) {
			panic(fmt.Errorf("optim: variable %s has shape %s but its gradient has shape %s",
				v.ScopeAndName(), v.Shape(), grads[i].Shape()))
		}
		if grads[i].DType() != dtype {
			grads[i] = ConvertDType(grads[i], dtype)
		}
	}
	state := ctx.Checked(false).InAbsPath(context.ScopeSeparator + c.scope)

	lrValue := c.learningRate
	if lrValue < 0 {
		lrValue = context.GetParamOr(ctx, optimizers.ParamLearningRate, DefaultLearningRate)
	}
	lr := optimizers.LearningRateVar(ctx, dtype, lrValue).ValueGraph(g)
	if lr.DType() != dtype {
		lr = ConvertDType(lr, dtype)
	}

	_ = optimizers.IncrementGlobalStepGraph(ctx, g, dtypes.Int64)
	step := optimizers.IncrementGlobalStepGraph(state, g, dtype)

	grads, stats := o.clipGraph(state, vars, grads, dtype)

	beta1 := Scalar(g, dtype, c.beta1)
	beta2 := Scalar(g, dtype, c.beta2)
	bc1 := OneMinus(Pow(beta1, step))
	bc2Sqrt := Sqrt(OneMinus(Pow(beta2, step)))
	stepSize := Div(lr, bc1)
	decay := OneMinus(MulScalar(lr, c.weightDecay))
	eps := Scalar(g, dtype, c.epsilon)

	for i, v := range vars {
		grad := grads[i]
		m1, m2, mMax := o.momentVariables(state, v, dtype)
		value := v.ValueGraph(g)
		if value.DType() != dtype {
			value = ConvertDType(value, dtype)
		}
		value = Mul(value, decay)

		moment1 := Add(Mul(beta1, m1.ValueGraph(g)), Mul(OneMinus(beta1), grad))
		m1.SetValueGraph(moment1)
		moment2 := Add(Mul(beta2, m2.ValueGraph(g)), Mul(OneMinus(beta2), Square(grad)))
		m2.SetValueGraph(moment2)
		if c.amsGrad {
			moment2 = Max(mMax.ValueGraph(g), moment2)
			mMax.SetValueGraph(moment2)
		}
		denom := Add(Div(Sqrt(moment2), bc2Sqrt), eps)
		updated := Sub(value, Div(Mul(stepSize, moment1), denom))
		updated = optimizers.ClipNaNsInUpdates(ctx, v.ValueGraph(g), convertIfNeeded(updated, v.DType()))
		v.SetValueGraph(updated)
	}
	return stats
}

// convertIfNeeded converts x to dtype if it differs.
func convertIfNeeded(x *Node, dtype dtypes.DType) *Node {
	if x.DType() == dtype {
		return x
	}
	return ConvertDType(x, dtype)
}

// clipGraph computes the global norm of the filtered gradients and clips them if configured.
func (o *Optimizer) clipGraph(state *context.Context, vars []*context.Variable, grads []*Node, dtype dtypes.DType) ([]*Node, StepStats) {
	c := o.config
	g := grads[0].Graph()
	var sumSq *Node
	selected := make([]bool, len(vars))
	for i, v := range vars {
		if c.clipFilter != nil && !c.clipFilter(v) {
			continue
		}
		selected[i] = true
		s := ReduceAllSum(Square(grads[i]))
		if sumSq == nil {
			sumSq = s
		} else {
			sumSq = Add(sumSq, s)
		}
	}
	stats := StepStats{MaxNorm: ScalarZero(g, dtype)}
	if sumSq == nil {
		stats.GradNorm = ScalarZero(g, dtype)
		return grads, stats
	}
	norm := Sqrt(sumSq)
	stats.GradNorm = norm

	var maxNorm *Node
	switch {
	case c.clipAdaptive:
		maxNorm = o.adaptiveQueueGraph(state, norm, dtype)
	case c.clipNorm > 0:
		maxNorm = Scalar(g, dtype, c.clipNorm)
	default:
		return grads, stats
	}
	stats.MaxNorm = maxNorm
	// torch.nn.utils.clip_grad_norm_: coef = max_norm/(norm+1e-6), clamped to <= 1.
	coef := MinScalar(Div(maxNorm, AddScalar(norm, 1e-6)), 1.0)
	out := make([]*Node, len(grads))
	for i := range grads {
		if selected[i] {
			out[i] = Mul(grads[i], coef)
		} else {
			out[i] = grads[i]
		}
	}
	return out, stats
}

// adaptiveQueueGraph returns the max norm 1.5·mean + 2·std of the queue, and pushes
// min(norm, maxNorm) into it. The queue is a ring buffer (values, count, head) in variables.
func (o *Optimizer) adaptiveQueueGraph(state *context.Context, norm *Node, dtype dtypes.DType) *Node {
	c := o.config
	g := norm.Graph()
	n := c.clipQueueLen
	initial := make([]float64, n)
	initial[0] = c.clipQueueInit
	qCtx := state.In("clip_queue")
	valuesVar := qCtx.VariableWithValue("values", initial).SetTrainable(false)
	countVar := qCtx.VariableWithValue("count", int64(1)).SetTrainable(false)
	headVar := qCtx.VariableWithValue("head", int64(1%n)).SetTrainable(false)

	// The statistics are computed in the queue's float64, as en_flows' Python floats: seeded
	// with 1e30 (QM9 Positional), squared deviations overflow float32.
	qd := valuesVar.DType()
	values := valuesVar.ValueGraph(g)
	count := countVar.ValueGraph(g)
	head := headVar.ValueGraph(g)
	idx := Iota(g, shapes.Make(dtypes.Int64, n), 0)
	valid := LessThan(idx, count)
	zeros := ZerosLike(values)
	countF := ConvertDType(count, qd)
	mean := Div(ReduceAllSum(Where(valid, values, zeros)), countF)
	variance := Div(ReduceAllSum(Where(valid, Square(Sub(values, mean)), zeros)), countF)
	maxNorm64 := Add(MulScalar(mean, 1.5), MulScalar(Sqrt(variance), 2.0))

	item := Min(convertIfNeeded(norm, qd), maxNorm64)
	values = Where(Equal(idx, head), BroadcastToShape(item, values.Shape()), values)
	valuesVar.SetValueGraph(values)
	headVar.SetValueGraph(Mod(AddScalar(head, 1), Scalar(g, dtypes.Int64, n)))
	countVar.SetValueGraph(MinScalar(AddScalar(count, 1), n))
	maxNorm := convertIfNeeded(maxNorm64, dtype)
	return maxNorm
}

// momentVariables returns (creating if needed) the first and second moment variables of v, and
// the running max of the second moment when AMSGrad is on (else nil).
func (o *Optimizer) momentVariables(state *context.Context, v *context.Variable, dtype dtypes.DType) (m1, m2, mMax *context.Variable) {
	shape := v.Shape().Clone()
	shape.DType = dtype
	scoped := state.InAbsPath(context.ScopeSeparator + o.config.scope + v.Scope()).WithInitializer(initializers.Zero)
	m1 = scoped.VariableWithShape(v.Name()+"_1st_moment", shape).SetTrainable(false)
	m2 = scoped.VariableWithShape(v.Name()+"_2nd_moment", shape).SetTrainable(false)
	if o.config.amsGrad {
		mMax = scoped.VariableWithShape(v.Name()+"_max_2nd_moment", shape).SetTrainable(false)
	}
	return
}
