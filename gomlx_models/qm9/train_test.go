package qm9

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// tinyModel is a small float64 molecule E-NF (random initialisation) with a fixed-step solver
// and the exact trace, so that its loss is a deterministic function of the parameters and the
// seed.
func tinyModel(t *testing.T, grad string) *Model {
	t.Helper()
	cfg := DefaultConfig(dtypes.Float64)
	cfg.Flow.Hidden, cfg.Flow.Layers = 8, 2
	cfg.Dequantizer.Hidden, cfg.Dequantizer.Layers = 8, 2
	cfg.CNF.Solver, cfg.CNF.Steps, cfg.CNF.Trace, cfg.CNF.Grad, cfg.CNF.RegWeight = "rk4", 3, "exact", grad, 1e-3
	ctx := seededContext()
	ctx.SetParam(context.ParamInitialSeed, int64(7))
	m, err := New(getBackend(t), ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func twoMolecules(t *testing.T) *Batch {
	t.Helper()
	b, err := NewBatch([]molecule.Molecule{moleculeByID(t, 11), moleculeByID(t, 14)}) // 7 and 6 atoms: padding
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func varValues(t *testing.T, v *context.Variable) []float64 {
	t.Helper()
	val, err := v.Value()
	if err != nil {
		t.Fatal(err)
	}
	return floats(val)
}

func setVar(t *testing.T, v *context.Variable, data []float64) {
	t.Helper()
	if err := v.SetValue(tensors.FromFlatDataAndDimensions(append([]float64(nil), data...), v.Shape().Dimensions...)); err != nil {
		t.Fatal(err)
	}
}

// TestEncoderGradientsMatchFiniteDifferences: the gradients of the training loss with respect
// to the dequantizer's, ActNorm's and the dynamics' parameters (flow adjoint/backprop + encoder
// VJP) equal central finite differences of the loss, for a padded batch of two real molecules.
func TestEncoderGradientsMatchFiniteDifferences(t *testing.T) {
	m := tinyModel(t, "backprop")
	b := twoMolecules(t)
	if err := m.InitVariables(b); err != nil {
		t.Fatal(err)
	}
	if err := m.InitActNorm(b, 3); err != nil {
		t.Fatal(err)
	}
	const seed = 11
	loss := func() float64 {
		l, _, grads, _, err := m.LossAndGrad(b, seed)
		if err != nil {
			t.Fatal(err)
		}
		freeAll(grads)
		return l
	}
	_, _, grads, _, err := m.LossAndGrad(b, seed)
	if err != nil {
		t.Fatal(err)
	}
	vars := m.Variables()
	if len(grads) != len(vars) {
		t.Fatalf("%d gradients for %d variables", len(grads), len(vars))
	}
	checked := map[string]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, v := range vars {
		var part string
		switch {
		case inScope(v, ScopeDequantizer):
			part = "dequantizer"
		case inScope(v, ScopeActNorm):
			part = "actnorm"
		default:
			part = "flow"
		}
		if checked[part] >= 2 {
			continue
		}
		g := floats(grads[i])
		orig := varValues(t, v)
		k := rng.IntN(len(orig))
		const h = 1e-5
		p := append([]float64(nil), orig...)
		p[k] += h
		setVar(t, v, p)
		lp := loss()
		p[k] -= 2 * h
		setVar(t, v, p)
		lm := loss()
		setVar(t, v, orig)
		fd := (lp - lm) / (2 * h)
		if math.Abs(fd-g[k]) > 1e-5*math.Max(1, math.Abs(fd)) {
			t.Errorf("%s %s[%d]: gradient %.9g, finite difference %.9g", part, v.ScopeAndName(), k, g[k], fd)
		}
		checked[part]++
	}
	freeAll(grads)
	for _, part := range []string{"dequantizer", "actnorm", "flow"} {
		if checked[part] == 0 {
			t.Errorf("no %s variable checked", part)
		}
	}
}

// TestAdjointMatchesBackpropForEncoder: the adjoint's a_x(0) gives the encoder gradients that
// backpropagation through the solver gives (same fixed-step grid; they differ only by the
// adjoint's own discretisation).
func TestAdjointMatchesBackpropForEncoder(t *testing.T) {
	b := twoMolecules(t)
	var gs [2][]float64
	for i, grad := range []string{"backprop", "adjoint"} {
		m := tinyModel(t, grad)
		_, _, grads, _, err := m.LossAndGrad(b, 5)
		if err != nil {
			t.Fatal(err)
		}
		nFlow := len(m.Flow().Variables())
		for _, g := range grads[nFlow:] { // encoder part
			gs[i] = append(gs[i], floats(g)...)
		}
		freeAll(grads)
	}
	num, den := 0.0, 0.0
	for k := range gs[0] {
		num += (gs[0][k] - gs[1][k]) * (gs[0][k] - gs[1][k])
		den += gs[0][k] * gs[0][k]
	}
	if rel := math.Sqrt(num / den); rel > 1e-3 || den == 0 {
		t.Errorf("encoder gradients: adjoint vs backprop relative difference %.3g (|g|² %.3g)", rel, den)
	}
}

// transform applies x ↦ R·x·s + shift to every atom and permutes the atoms by perm.
func transform(m molecule.Molecule, r [3][3]float64, shift [3]float64, perm []int) molecule.Molecule {
	out := molecule.Molecule{ID: m.ID, Z: make([]int, m.NAtoms()), Positions: make([][3]float64, m.NAtoms())}
	for i := range m.Z {
		src := i
		if perm != nil {
			src = perm[i]
		}
		out.Z[i] = m.Z[src]
		p := m.Positions[src]
		for a := range 3 {
			out.Positions[i][a] = r[a][0]*p[0] + r[a][1]*p[1] + r[a][2]*p[2] + shift[a]
		}
	}
	return out
}

// TestBoundInvariance: the full bound −log p(x, h, M) (float64, fixed noise, exact trace) does
// not change under rotation, reflection, translation and (with zero dequantizer noise, which is
// then trivially permuted along) atom permutation.
func TestBoundInvariance(t *testing.T) {
	m := tinyModel(t, "adjoint")
	mol := moleculeByID(t, 22)
	c, s := math.Cos(0.7), math.Sin(0.7)
	rot := [3][3]float64{{c, -s, 0}, {s * 0.6, c * 0.6, -0.8}, {s * 0.8, c * 0.8, 0.6}}
	refl := [3][3]float64{{-1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
	id := [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
	perm := rand.New(rand.NewPCG(3, 4)).Perm(mol.NAtoms())
	bound := func(x molecule.Molecule, o EvalOptions) float64 {
		b, err := NewBatch([]molecule.Molecule{x})
		if err != nil {
			t.Fatal(err)
		}
		terms, _, err := m.LogLikelihood(b, o)
		if err != nil {
			t.Fatal(err)
		}
		return terms[0].LogP
	}
	for _, tc := range []struct {
		name  string
		r     [3][3]float64
		shift [3]float64
		perm  []int
		o     EvalOptions
	}{
		{"rotation", rot, [3]float64{}, nil, EvalOptions{Seed: 9}},
		{"reflection", refl, [3]float64{}, nil, EvalOptions{Seed: 9}},
		{"translation", id, [3]float64{3, -2, 7}, nil, EvalOptions{Seed: 9}},
		{"permutation", rot, [3]float64{1, 1, 1}, perm, EvalOptions{Deterministic: true, Seed: 9}},
	} {
		ref := bound(mol, tc.o)
		got := bound(transform(mol, tc.r, tc.shift, tc.perm), tc.o)
		if math.Abs(got-ref) > 1e-8*math.Max(1, math.Abs(ref)) {
			t.Errorf("%s: bound %.12g, original %.12g", tc.name, got, ref)
		}
	}
	// The test can fail: a non-rigid distortion changes the bound.
	d := mol
	d.Positions = append([][3]float64(nil), mol.Positions...)
	d.Positions[0][0] += 0.3
	if math.Abs(bound(d, EvalOptions{Seed: 9})-bound(mol, EvalOptions{Seed: 9})) < 1e-6 {
		t.Error("moving one atom did not change the bound")
	}
}

// TestActNormInitialisation: InitActNorm gives the dequantised features zero mean and unit
// (masked) standard deviation per channel, as ActNormPositionAndFeatures.initialize.
func TestActNormInitialisation(t *testing.T) {
	m := tinyModel(t, "adjoint")
	b := twoMolecules(t)
	if err := m.InitActNorm(b, 3); err != nil {
		t.Fatal(err)
	}
	inter, err := m.Encode(b, EvalOptions{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	y := floats(inter.Y)
	freeAll([]*tensors.Tensor{inter.Y})
	ch, nf := m.cfg.Channels(), m.cfg.Features()
	atoms := 0.0
	sum, sq := make([]float64, nf), make([]float64, nf)
	for node, w := range b.Mask {
		if w == 0 {
			continue
		}
		atoms++
		for f := range nf {
			v := y[node*ch+PosDims+f]
			sum[f] += v
			sq[f] += v * v
		}
	}
	for f := range nf {
		mean := sum[f] / atoms
		sd := math.Sqrt(sq[f]/atoms - mean*mean)
		if math.Abs(mean) > 1e-9 {
			t.Errorf("feature %d: mean %.3g after ActNorm", f, mean)
		}
		// sd of a constant channel (F is absent: its one-hot is 0) is ≈ 0, others ≈ 1 (the
		// +1e-5 inside the square root makes it slightly below 1).
		if sd > 1e-6 && math.Abs(sd-1) > 1e-3 {
			t.Errorf("feature %d: standard deviation %.6f after ActNorm", f, sd)
		}
	}
}

// TestOtherElements: a model of 6 elements (with S) has one-hot width 6 and refuses an atom of
// an element it does not know.
func TestOtherElements(t *testing.T) {
	cfg := DefaultConfig(dtypes.Float64)
	cfg.Flow.Hidden, cfg.Flow.Layers, cfg.Dequantizer.Hidden, cfg.Dequantizer.Layers = 8, 1, 8, 1
	cfg.Elements = []int{1, 6, 7, 8, 16, 17}
	cfg.CNF.Solver, cfg.CNF.Steps, cfg.CNF.Trace = "rk4", 2, "exact"
	m, err := New(getBackend(t), seededContext(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mol := molecule.Molecule{ID: 1, Z: []int{16, 1, 1}, Positions: [][3]float64{{0, 0, 0}, {1.34, 0, 0}, {0, 1.34, 0}}}
	b, err := NewBatchOf([]molecule.Molecule{mol}, cfg.Elements)
	if err != nil {
		t.Fatal(err)
	}
	if b.K != 6 {
		t.Fatalf("one-hot width %d", b.K)
	}
	cfg2 := m.Config()
	if cfg2.Channels() != 3+7 {
		t.Errorf("channels %d", cfg2.Channels())
	}
	if _, _, err := m.LogLikelihood(b, EvalOptions{Deterministic: true}); err == nil {
		// H2S has 3 atoms; QM9's p(M) has one 3-atom molecule, so log p(M) exists.
	} else {
		t.Fatal(err)
	}
	mol.Z[0] = 9
	if _, err := NewBatchOf([]molecule.Molecule{mol}, cfg.Elements); err == nil {
		t.Error("an F atom was accepted by a model without F")
	}
}
