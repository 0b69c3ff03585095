package optim

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// Stepper applies externally computed gradients (tensors, e.g. from an adjoint ODE solve run
// from Go) to a fixed list of variables with a compiled GoMLX graph. The optimizer state lives in
// the context, so it is saved and restored by GoMLX checkpoints.
type Stepper struct {
	opt  *Optimizer
	vars []*context.Variable
	ctx  *context.Context
	exec *context.Exec
}

// StepResult reports one optimizer step.
type StepResult struct {
	// GradNorm is the global L2 norm of the (clip-filtered) gradients, before clipping.
	GradNorm float64
	// MaxNorm is the clipping threshold of this step, or 0 if clipping is off.
	MaxNorm float64
}

// NewStepper compiles (lazily, on the first Step) the update of vars by opt. The gradients passed
// to Step must match vars one to one, in order and shape.
func NewStepper(backend backends.Backend, ctx *context.Context, opt *Optimizer, vars []*context.Variable) (*Stepper, error) {
	if backend == nil || ctx == nil || opt == nil {
		return nil, fmt.Errorf("optim: NewStepper needs a backend, a context and an optimizer")
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("optim: NewStepper: no variables to optimize")
	}
	s := &Stepper{opt: opt, vars: append([]*context.Variable(nil), vars...), ctx: ctx}
	exec, err := context.NewExec(backend, ctx, func(ctx *context.Context, grads []*Node) []*Node {
		st := s.opt.ApplyGradientsGraph(ctx, s.vars, grads, dtypes.InvalidDType)
		return []*Node{ConvertDType(st.GradNorm, dtypes.Float64), ConvertDType(st.MaxNorm, dtypes.Float64)}
	})
	if err != nil {
		return nil, fmt.Errorf("optim: compiling optimizer step: %w", err)
	}
	s.exec = exec.WithName("optim.Stepper")
	return s, nil
}

// Step applies one AdamW update with the given gradients.
func (s *Stepper) Step(grads []*tensors.Tensor) (StepResult, error) {
	if len(grads) != len(s.vars) {
		return StepResult{}, fmt.Errorf("optim: Step got %d gradients for %d variables", len(grads), len(s.vars))
	}
	args := make([]any, len(grads))
	for i, gr := range grads {
		if gr == nil {
			return StepResult{}, fmt.Errorf("optim: nil gradient for variable %s", s.vars[i].ScopeAndName())
		}
		if !gr.Shape().EqualDimensions(s.vars[i].Shape()) {
			return StepResult{}, fmt.Errorf("optim: gradient %d has shape %s, variable %s has shape %s",
				i, gr.Shape(), s.vars[i].ScopeAndName(), s.vars[i].Shape())
		}
		args[i] = gr
	}
	out, err := s.exec.Exec(args...)
	if err != nil {
		return StepResult{}, fmt.Errorf("optim: executing optimizer step: %w", err)
	}
	defer func() {
		for _, t := range out {
			_ = t.FinalizeAll()
		}
	}()
	res := StepResult{}
	if res.GradNorm, err = scalarFloat(out[0]); err != nil {
		return StepResult{}, err
	}
	if res.MaxNorm, err = scalarFloat(out[1]); err != nil {
		return StepResult{}, err
	}
	return res, nil
}

// Close releases the compiled graphs.
func (s *Stepper) Close() {
	if s.exec != nil {
		s.exec.Finalize()
		s.exec = nil
	}
}

func scalarFloat(t *tensors.Tensor) (float64, error) {
	v, err := t.ValueSafe()
	if err != nil {
		return 0, fmt.Errorf("optim: reading scalar output: %w", err)
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	}
	return 0, fmt.Errorf("optim: unexpected scalar output type %T", v)
}

// LearningRate returns the current value of the learning-rate variable of ctx's scope (GoMLX's
// "<scope>/optimizers/learning_rate"), and false if it was not created yet (no step taken).
func LearningRate(ctx *context.Context) (float64, bool) {
	v := ctx.GetVariableByScopeAndName(context.JoinScope(ctx.Scope(), optimizers.Scope), optimizers.ParamLearningRate)
	if v == nil {
		return 0, false
	}
	t, err := v.Value()
	if err != nil {
		return 0, false
	}
	x, err := scalarFloat(t)
	if err != nil {
		return 0, false
	}
	return x, true
}

// SetLearningRate overwrites the learning-rate variable (e.g. for a schedule), creating it if
// needed with the given dtype.
func SetLearningRate(ctx *context.Context, dtype dtypes.DType, lr float64) error {
	return catch(func() error {
		v := optimizers.LearningRateVar(ctx, dtype, lr)
		t := tensors.FromAnyValue(shapes.CastAsDType(lr, v.DType()))
		if err := v.SetValue(t); err != nil {
			return fmt.Errorf("optim: setting learning rate: %w", err)
		}
		return nil
	})
}

// catch runs fn, turning a panic (GoMLX's way of reporting graph/context errors) into an error.
func catch(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("optim: %w", e)
			} else {
				err = fmt.Errorf("optim: %v", r)
			}
		}
	}()
	return fn()
}
