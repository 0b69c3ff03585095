package cnf

import (
	"testing"

	"github.com/enflow/enflow/gomlx_models/baselines"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// TestKernelAdjointDopri5 is a regression test: the adjoint solve of kernel dynamics with
// dopri5 failed at its first step (|dt| = NaN). The initial-step graph evaluates f at
// t0 + h with h computed from norms of f(t0, y0); the gradient a·∂f/∂θ taken inside f flowed
// into h and through √ of the all-zero a_θ(1) part of the state, giving NaN. Bind now detaches
// the time as well as the state. Adjoint and backprop gradients must agree.
func TestKernelAdjointDopri5(t *testing.T) {
	b := backendT(t)
	ctx := seededContext()
	cfg := baselines.KernelConfigDW4()
	cfg.DType = dtypes.Float64
	x := particleData(t, 4, 4, 2, dtypes.Float64, 11)
	grads := map[string][]float64{}
	for _, grad := range []string{"adjoint", "backprop"} {
		m, err := New(b, ctx, baselines.Kernel(cfg), Config{
			Trace: "hutchinson", Noise: "rademacher", Grad: grad, RTol: 1e-7, ATol: 1e-7, DType: dtypes.Float64})
		if err != nil {
			t.Fatal(err)
		}
		loss, _, g, st, err := m.LossAndGrad(x, nil, 3)
		if err != nil {
			t.Fatalf("%s: %v", grad, err)
		}
		grads[grad] = flatGrads(g)
		t.Logf("%s: loss %.9f, forward %+v, backward %+v", grad, loss, st.Forward, st.Backward)
	}
	rel := relErr(grads["adjoint"], grads["backprop"])
	t.Logf("relative difference adjoint vs backprop: %.3g", rel)
	if rel > 1e-3 {
		t.Errorf("adjoint and backprop gradients differ by %.3g", rel)
	}
}
