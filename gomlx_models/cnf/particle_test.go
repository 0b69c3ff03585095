package cnf

import (
	"math"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/graphutil"
)

// smallParticle is dynamics.Particle with a reduced EGNN (same architecture, narrower and
// shallower) so that float64 tests stay fast.
func smallParticle(dtype dtypes.DType) dynamics.Func {
	cfg := egnn.ParticleConfig()
	cfg.Hidden, cfg.Layers, cfg.DType = 8, 2, dtype
	return dynamics.Particle(cfg)
}

// energize initializes the variables of m on x and scales the last coordinate-MLP layers of the
// EGNN (initialized with xavier gain 0.001, so that the flow starts near the identity) by factor,
// so that tests exercise a flow that moves the data.
func energize(t testing.TB, m *Model, x *tensors.Tensor, factor float64) {
	t.Helper()
	if err := m.InitVariables(x, nil); err != nil {
		t.Fatal(err)
	}
	scaled := 0
	for _, v := range m.Variables() {
		if !strings.HasSuffix(v.Scope(), egnn.ScopeCoordMLP2) || v.Name() != "w" {
			continue
		}
		val := f64(v.MustValue())
		for i := range val {
			val[i] *= factor
		}
		nv, err := prior.FromFloat64(v.DType(), val, v.Shape().Dimensions...)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.SetValue(nv); err != nil {
			t.Fatal(err)
		}
		scaled++
	}
	if scaled == 0 {
		t.Fatal("no coordinate-MLP output layer found to scale")
	}
}

// particleData returns DW4-shaped (B, 4, 2) mean-free data at the DW4 scale (σ ≈ 2).
func particleData(t testing.TB, b, n, d int, dtype dtypes.DType, seed uint64) *tensors.Tensor {
	t.Helper()
	x, err := prior.SampleCoGFree(rand.New(rand.NewPCG(seed, 1)), dtypes.Float64, b, n, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := f64(x)
	for i := range v {
		v[i] *= 2
	}
	out, err := prior.FromFloat64(dtype, v, b, n, d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParticleExactTraceMatchesFiniteDifferences(t *testing.T) {
	b := backendT(t)
	m, err := New(b, seededContext(), smallParticle(dtypes.Float64), Config{Trace: "exact", DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	x := particleData(t, 2, 4, 2, dtypes.Float64, 3)
	energize(t, m, x, 300)
	jac := fdJacobian(t, m, x, nil, 0.4)
	negTr := f64(evalAug(t, m, x, nil, 0.4, 0)[1])
	for bi := range jac {
		tr := 0.0
		for k := range jac[bi] {
			tr += jac[bi][k][k]
		}
		t.Logf("sample %d: exact trace %.10f, finite differences %.10f", bi, -negTr[bi], tr)
		if math.Abs(-negTr[bi]-tr) > 1e-6*max(1, math.Abs(tr)) {
			t.Errorf("sample %d: trace %.10g, finite differences %.10g", bi, -negTr[bi], tr)
		}
	}
}

// TestParticleAdjointMatchesBackprop: DW4-shaped EGNN dynamics, Rademacher Hutchinson, dopri5 at
// rtol=atol=1e-8; adjoint vs backprop gradients, and finite differences for two parameters.
func TestParticleAdjointMatchesBackprop(t *testing.T) {
	b := backendT(t)
	ctx := seededContext()
	x := particleData(t, 2, 4, 2, dtypes.Float64, 5)
	grads := map[string][]float64{}
	var adj *Model
	for _, grad := range []string{"adjoint", "backprop"} {
		m, err := New(b, ctx, smallParticle(dtypes.Float64), Config{
			Trace: "hutchinson", Noise: "rademacher", Grad: grad, RTol: 1e-8, ATol: 1e-8, DType: dtypes.Float64})
		if err != nil {
			t.Fatal(err)
		}
		if grad == "adjoint" {
			energize(t, m, x, 300) // shared ctx: also used by the backprop model
		}
		loss, _, g, st, err := m.LossAndGrad(x, nil, 9)
		if err != nil {
			t.Fatal(err)
		}
		grads[grad] = flatGrads(g)
		t.Logf("%s: loss %.9f, %d variables, forward %+v, backward %+v", grad, loss, len(g), st.Forward, st.Backward)
		if grad == "adjoint" {
			adj = m
		}
	}
	rel := relErr(grads["adjoint"], grads["backprop"])
	t.Logf("relative difference adjoint vs backprop: %.3g", rel)
	if rel > 1e-3 {
		t.Errorf("adjoint and backprop gradients differ by %.3g", rel)
	}
	// Finite differences on the two largest-gradient entries.
	vars := adj.Variables()
	type probe struct{ v, i, off int }
	var best [2]probe
	var bestAbs [2]float64
	off := 0
	for vi, v := range vars {
		for i := range v.Shape().Size() {
			a := math.Abs(grads["adjoint"][off+i])
			if a > bestAbs[0] {
				best[1], bestAbs[1] = best[0], bestAbs[0]
				best[0], bestAbs[0] = probe{vi, i, off}, a
			} else if a > bestAbs[1] {
				best[1], bestAbs[1] = probe{vi, i, off}, a
			}
		}
		off += v.Shape().Size()
	}
	for _, p := range best {
		want := fdGrad(t, adj, vars[p.v], p.i, x, nil, 9, 1e-4)
		for _, grad := range []string{"adjoint", "backprop"} {
			got := grads[grad][p.off+p.i]
			t.Logf("∂L/∂%s[%d]: %s %.7f, finite differences %.7f", vars[p.v].Name(), p.i, grad, got, want)
			if math.Abs(got-want) > 1e-3*max(1, math.Abs(want)) {
				t.Errorf("%s: ∂L/∂%s[%d] = %.7g, finite differences %.7g", grad, vars[p.v].Name(), p.i, got, want)
			}
		}
	}
}

func TestParticleInvertibility(t *testing.T) {
	b := backendT(t)
	m, err := New(b, seededContext(), smallParticle(dtypes.Float64), Config{RTol: 1e-7, ATol: 1e-7, DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	x := particleData(t, 3, 4, 2, dtypes.Float64, 6)
	energize(t, m, x, 100)
	z, _, _, err := m.Encode(x, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	xr, _, err := m.Decode(z, nil)
	if err != nil {
		t.Fatal(err)
	}
	moved, d := maxAbsDiff(f64(z), f64(x)), maxAbsDiff(f64(xr), f64(x))
	t.Logf("|z−x|∞ = %.3g, round trip error %.3g", moved, d)
	if moved < 1e-2 {
		t.Errorf("the flow barely moves the data (%.3g)", moved)
	}
	if d > 1e-5 {
		t.Errorf("round trip error %.3g > 1e-5", d)
	}
}

// BenchmarkDW4TrainingIteration times one E-NF DW4 training iteration (loss and gradients; the
// optimizer step is negligible): B=100, 4×2, dynamics.Particle(egnn.ParticleConfig()) in float32,
// dopri5 rtol=atol=1e-4, Rademacher Hutchinson, on the backend of $GOMLX_BACKEND (default
// SimpleGo). Reference PyTorch (docs/reference-timings.md): 1.52 s per iteration, 20 + 20 NFE.
//
//	go test -run '^$' -bench DW4 -benchtime 5x ./gomlx_models/cnf/
func BenchmarkDW4TrainingIteration(b *testing.B) {
	for _, grad := range []string{"adjoint", "backprop"} {
		b.Run(grad, func(b *testing.B) {
			benchTraining(b, 100, 4, 2, Config{Trace: "hutchinson", Noise: "rademacher", Grad: grad, RTol: 1e-4, ATol: 1e-4})
		})
	}
}

// BenchmarkLJ13TrainingIteration is the LJ13 analogue (B=100, 13×3); PyTorch reference 9.0 s,
// 20 + 20–26 NFE.
func BenchmarkLJ13TrainingIteration(b *testing.B) {
	benchTraining(b, 100, 13, 3, Config{Trace: "hutchinson", Noise: "rademacher", Grad: "adjoint", RTol: 1e-4, ATol: 1e-4})
}

func benchTraining(b *testing.B, batch, n, d int, cfg Config) {
	be := backendT(b)
	cfg.DType = dtypes.Float32
	m, err := New(be, seededContext(), dynamics.Particle(egnn.ParticleConfig()), cfg)
	if err != nil {
		b.Fatal(err)
	}
	x := particleData(b, batch, n, d, dtypes.Float32, 1)
	// Warm-up: compiles every graph (the adjoint step graph, or one replay graph per step count).
	if _, _, g, _, err := m.LossAndGrad(x, nil, 0); err != nil {
		b.Fatal(err)
	} else {
		graphutil.Free(g...)
	}
	var nfeF, nfeB, iters int
	var wallF, wallB float64
	var loss float64
	cpu0 := cpuSeconds()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l, _, g, st, err := m.LossAndGrad(x, nil, uint64(i+1))
		if err != nil {
			b.Fatal(err)
		}
		graphutil.Free(g...)
		nfeF += st.Forward.NFE
		nfeB += st.Backward.NFE
		wallF += st.Forward.Wall.Seconds()
		wallB += st.Backward.Wall.Seconds()
		loss = l
		iters++
	}
	// CPU time of the whole process (all goroutines) per iteration: less sensitive than wall time
	// to other jobs sharing the machine.
	b.ReportMetric((cpuSeconds()-cpu0)/float64(iters), "cpu_s/op")
	b.ReportMetric(wallF/float64(iters), "fwd_s/op")
	b.ReportMetric(wallB/float64(iters), "bwd_s/op")
	b.ReportMetric(float64(nfeF)/float64(iters), "nfe_fwd/op")
	b.ReportMetric(float64(nfeB)/float64(iters), "nfe_bwd/op")
	b.ReportMetric(loss, "loss")
}

// cpuSeconds is the user+system CPU time consumed by the process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)*1e-6
}
