package baselines

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/internal/graphutil"
)

var sharedBackend backends.Backend

func testBackend(t testing.TB) backends.Backend {
	t.Helper()
	if sharedBackend == nil {
		b, err := backend.New("")
		if err != nil {
			t.Fatalf("backend: %v", err)
		}
		sharedBackend = b
	}
	return sharedBackend
}

func randVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * rng.NormFloat64()
	}
	return v
}

func relErr(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(a[i]-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	if den == 0 {
		return num
	}
	return num / den
}

// smallSimple is the en_flows simple-dynamics structure with a narrower MLP.
func smallSimple() SimpleConfig {
	c := DefaultSimpleConfig()
	c.Hidden = []int{8, 6}
	c.DType = dtypes.Float64
	return c
}

func kernelF64(c KernelConfig) KernelConfig {
	c.DType = dtypes.Float64
	return c
}

func smallGNN(attention bool) GNNConfig {
	c := GNFConfig(attention)
	c.Hidden, c.Layers, c.DType = 8, 2, dtypes.Float64
	return c
}

// exec evaluates graph function fn(ctx, t, state[, mask]) → outputs; mask may be nil.
func exec(t testing.TB, ctx *context.Context, tv float64, state, mask []float64, dims []int,
	fn func(ctx *context.Context, tt, s, m *Node) []*Node) [][]float64 {
	t.Helper()
	b := testBackend(t)
	args := []any{tv, tensors.FromFlatDataAndDimensions(append([]float64(nil), state...), dims...)}
	var e *context.Exec
	var err error
	if mask == nil {
		e, err = context.NewExec(b, ctx, func(ctx *context.Context, tt, s *Node) []*Node { return fn(ctx, tt, s, nil) })
	} else {
		e, err = context.NewExec(b, ctx, fn)
		args = append(args, tensors.FromFlatDataAndDimensions(append([]float64(nil), mask...), dims[0], dims[1]))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	out, err := e.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]float64, len(out))
	for i, o := range out {
		res[i] = tensors.MustCopyFlatData[float64](o)
	}
	return res
}

func velocity(t testing.TB, ctx *context.Context, f dynamics.Func, tv float64, state, mask []float64, dims ...int) []float64 {
	return exec(t, ctx, tv, state, mask, dims, func(ctx *context.Context, tt, s, m *Node) []*Node {
		return []*Node{f(ctx, tt, s, m)}
	})[0]
}

// randomizeVariables sets every float variable of ctx to U(−scale, scale), keeping widths (the
// kernel's −log γ) within ±0.3 of their initial value so the RBFs stay well conditioned.
func randomizeVariables(t testing.TB, ctx *context.Context, rng *rand.Rand, scale float64) {
	t.Helper()
	for v := range ctx.IterVariables() {
		if !v.Trainable || !v.Shape().DType.IsFloat() {
			continue
		}
		cur, err := v.Value()
		if err != nil {
			t.Fatal(err)
		}
		data := tensors.MustCopyFlatData[float64](cur)
		for i := range data {
			switch v.Name() {
			case VarNegLogGammas, VarNegLogGammasTime:
				data[i] += 0.3 * (2*rng.Float64() - 1)
			default:
				data[i] = scale * (2*rng.Float64() - 1)
			}
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(data, v.Shape().Dimensions...))
	}
}

type model struct {
	name string
	f    dynamics.Func
}

func equivariantModels() []model {
	return []model{
		{"simple", Simple(smallSimple())},
		{"kernel_dw4", Kernel(kernelF64(KernelConfigDW4()))},
		{"kernel_lj13", Kernel(kernelF64(KernelConfigLJ13()))},
	}
}

// newCtx builds f's variables on a state of dims and randomises them.
func newCtx(t testing.TB, f dynamics.Func, rng *rand.Rand, dims ...int) *context.Context {
	ctx := context.New()
	ctx.SetParam(context.ParamInitialSeed, int64(rng.Uint64()>>2))
	velocity(t, ctx, f, 0.3, randVec(rng, dims[0]*dims[1]*dims[2], 1), nil, dims...)
	randomizeVariables(t, ctx, rng, 0.5)
	return ctx
}

// orthogonal returns a random orthogonal d×d matrix with determinant −1 if reflect, else +1.
func orthogonal(rng *rand.Rand, d int, reflect bool) []float64 {
	q := RandomRotation(rng, d)
	if reflect {
		for c := range d {
			q[c] = -q[c]
		}
	}
	return q
}

// transform applies x ↦ Q·x + shift to every node and then node k ← node perm[k].
func transform(x []float64, b, n, d int, q, shift []float64, perm []int) []float64 {
	out := make([]float64, len(x))
	for bi := range b {
		for k := range n {
			src := x[(bi*n+perm[k])*d : (bi*n+perm[k]+1)*d]
			dst := out[(bi*n+k)*d : (bi*n+k+1)*d]
			for r := range d {
				s := shift[r]
				for c := range d {
					s += q[r*d+c] * src[c]
				}
				dst[r] = s
			}
		}
	}
	return out
}

type symmetry struct {
	name                      string
	rotate, refl, shift, perm bool
}

var symmetries = []symmetry{
	{name: "rotation", rotate: true},
	{name: "reflection", rotate: true, refl: true},
	{name: "translation", shift: true},
	{name: "permutation", perm: true},
	{name: "all", rotate: true, refl: true, shift: true, perm: true},
}

// makeSymmetry draws the group element of s: matrix, shift and permutation.
func makeSymmetry(rng *rand.Rand, s symmetry, n, d int) (q, shift []float64, perm []int) {
	q = make([]float64, d*d)
	for i := range d {
		q[i*d+i] = 1
	}
	if s.rotate {
		q = orthogonal(rng, d, s.refl)
	}
	shift = make([]float64, d)
	if s.shift {
		shift = randVec(rng, d, 3)
	}
	perm = make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	if s.perm {
		perm = rng.Perm(n)
	}
	return q, shift, perm
}

func checkMeanFree(t *testing.T, v []float64, b, n, d int) {
	t.Helper()
	for bi := range b {
		for c := range d {
			s, scale := 0.0, 0.0
			for i := range n {
				s += v[(bi*n+i)*d+c]
				scale = math.Max(scale, math.Abs(v[(bi*n+i)*d+c]))
			}
			if math.Abs(s) > 1e-10*math.Max(scale, 1) {
				t.Errorf("sample %d axis %d: Σ_i v_i = %g, not mean-free", bi, c, s)
			}
		}
	}
}

// TestEquivariance checks f(g·x) = g·f(x) (translations: f(x + c) = f(x)) for the simple and
// kernel dynamics on 2D (DW4-like) and 3D (LJ13-like) systems, to 1e-8 relative, and that the
// velocities are mean-free and non-trivial.
func TestEquivariance(t *testing.T) {
	const b = 2
	for mi, m := range equivariantModels() {
		for _, geom := range []struct{ n, d int }{{4, 2}, {5, 3}} {
			for si, s := range symmetries {
				t.Run(m.name+"/"+string(rune('0'+geom.d))+"d/"+s.name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(mi), uint64(si*10+geom.d)))
					n, d := geom.n, geom.d
					ctx := newCtx(t, m.f, rng, b, n, d)
					x := randVec(rng, b*n*d, 1.5)
					q, shift, perm := makeSymmetry(rng, s, n, d)
					zero := make([]float64, d)
					v := velocity(t, ctx, m.f, 0.37, x, nil, b, n, d)
					vg := velocity(t, ctx, m.f, 0.37, transform(x, b, n, d, q, shift, perm), nil, b, n, d)
					want := transform(v, b, n, d, q, zero, perm)
					if e := relErr(vg, want); e > 1e-8 {
						t.Errorf("f(g·x) vs g·f(x): relative error %.3g > 1e-8", e)
					}
					checkMeanFree(t, v, b, n, d)
					if relErr(v, make([]float64, len(v))) < 1e-6 {
						t.Errorf("velocity is (nearly) zero: %v", v)
					}
				})
			}
		}
	}
}

// TestMaskedPaddingIsInert checks that, with a node mask, padded nodes get zero velocity and do
// not influence the real ones (the real-node velocities equal those of the unpadded system).
func TestMaskedPaddingIsInert(t *testing.T) {
	models := append(equivariantModels(), model{"gnn_att", GNN(smallGNN(true))})
	for mi, m := range models {
		t.Run(m.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(mi), 99))
			const n, pad, d = 4, 2, 3
			ctx := newCtx(t, m.f, rng, 1, n, d)
			x := randVec(rng, n*d, 1.5)
			v := velocity(t, ctx, m.f, 0.6, x, nil, 1, n, d)
			xp := append(append([]float64(nil), x...), randVec(rng, pad*d, 5)...)
			mask := []float64{1, 1, 1, 1, 0, 0}
			vp := velocity(t, ctx, m.f, 0.6, xp, mask, 1, n+pad, d)
			if e := relErr(vp[:n*d], v); e > 1e-12 {
				t.Errorf("real nodes changed by padding: relative error %.3g", e)
			}
			for i, a := range vp[n*d:] {
				if a != 0 {
					t.Fatalf("padded entry %d has velocity %g", i, a)
				}
			}
		})
	}
}

// TestGNNIsNotRotationEquivariant asserts a clear violation of rotation equivariance by the GNF
// dynamics (so the -aug variant has something to fix) while permutation equivariance and
// mean-freeness hold.
func TestGNNIsNotRotationEquivariant(t *testing.T) {
	const b, n, d = 2, 4, 2
	for ai, att := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(5, uint64(ai)))
		f := GNN(smallGNN(att))
		ctx := newCtx(t, f, rng, b, n, d)
		x := randVec(rng, b*n*d, 1.5)
		v := velocity(t, ctx, f, 0.4, x, nil, b, n, d)
		checkMeanFree(t, v, b, n, d)
		zero := make([]float64, d)
		q, _, _ := makeSymmetry(rng, symmetry{rotate: true}, n, d)
		ident := []int{0, 1, 2, 3}
		vr := velocity(t, ctx, f, 0.4, transform(x, b, n, d, q, zero, ident), nil, b, n, d)
		e := relErr(vr, transform(v, b, n, d, q, zero, ident))
		if e < 0.05 {
			t.Errorf("attention=%v: GNN looks rotation equivariant (relative error %.3g < 0.05)", att, e)
		}
		t.Logf("attention=%v: rotation-equivariance error %.3g", att, e)
		perm := []int{2, 0, 3, 1}
		eye := []float64{1, 0, 0, 1}
		vp := velocity(t, ctx, f, 0.4, transform(x, b, n, d, eye, zero, perm), nil, b, n, d)
		if e := relErr(vp, transform(v, b, n, d, eye, zero, perm)); e > 1e-10 {
			t.Errorf("attention=%v: GNN not permutation equivariant: relative error %.3g", att, e)
		}
	}
}

// autodiffTrace returns tr(∂f/∂x) per sample by one vector–Jacobian product per coordinate.
func autodiffTrace(f func(ctx *context.Context, tt, s, m *Node) *Node) func(ctx *context.Context, tt, s, m *Node) *Node {
	return func(ctx *context.Context, tt, s, m *Node) *Node {
		dims := s.Shape().Dimensions
		b, k := dims[0], dims[1]*dims[2]
		v := f(ctx, tt, s, m)
		var tr *Node
		for i := range k {
			e := make([]float64, k)
			e[i] = 1
			ek := Reshape(ConstAsDType(s.Graph(), s.DType(), e), 1, dims[1], dims[2])
			row := Gradient(ReduceAllSum(Mul(v, ek)), s)[0] // e_kᵀ J per sample
			diag := ReduceSum(Reshape(Mul(row, ek), b, k), 1)
			if tr == nil {
				tr = diag
			} else {
				tr = Add(tr, diag)
			}
		}
		return tr
	}
}

// TestKernelDivergenceMatchesAutodiff compares the analytic divergence of the kernel dynamics
// with the exact trace of its Jacobian computed by autodiff (and its velocity with Kernel's).
func TestKernelDivergenceMatchesAutodiff(t *testing.T) {
	cases := []struct {
		name   string
		cfg    KernelConfig
		n, d   int
		masked bool
	}{
		{"dw4", KernelConfigDW4(), 4, 2, false},
		{"lj13", KernelConfigLJ13(), 5, 3, false},
		{"dw4_masked", KernelConfigDW4(), 5, 2, true},
		{"no_time", KernelConfig{Mus: linspace(0, 6, 12), Gammas: constant(0.7, 12)}, 4, 3, false},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, uint64(ci)))
			const b = 3
			cfg := kernelF64(c.cfg)
			fd := KernelWithDivergence(cfg)
			fv := Kernel(cfg)
			ctx := newCtx(t, fv, rng, b, c.n, c.d)
			x := randVec(rng, b*c.n*c.d, 1.5)
			var mask []float64
			if c.masked {
				mask = []float64{1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1}
			}
			for _, tv := range []float64{0, 0.31, 1} {
				out := exec(t, ctx, tv, x, mask, []int{b, c.n, c.d}, func(ctx *context.Context, tt, s, m *Node) []*Node {
					v, div := fd(ctx, tt, s, m)
					return []*Node{v, div, fv(ctx, tt, s, m), autodiffTrace(fv)(ctx, tt, s, m)}
				})
				if e := relErr(out[0], out[2]); e > 1e-14 {
					t.Errorf("t=%g: KernelWithDivergence and Kernel velocities differ by %.3g", tv, e)
				}
				if e := relErr(out[1], out[3]); e > 1e-10 {
					t.Errorf("t=%g: analytic divergence %v vs autodiff trace %v (relative error %.3g)", tv, out[1], out[3], e)
				}
				if relErr(out[3], make([]float64, b)) < 1e-8 {
					t.Errorf("t=%g: trivial divergence %v", tv, out[3])
				}
			}
		})
	}
}

// TestSimpleIsGradientOfPotential checks the closed-form g′ of the simple dynamics: the velocity
// must equal −∇_x Σ_{i≠j} g(d_ij) computed by autodiff.
func TestSimpleIsGradientOfPotential(t *testing.T) {
	cfg := smallSimple()
	f := Simple(cfg)
	rng := rand.New(rand.NewPCG(3, 4))
	const b, n, d = 2, 5, 3
	ctx := newCtx(t, f, rng, b, n, d)
	x := randVec(rng, b*n*d, 1.5)
	out := exec(t, ctx, 0.2, x, nil, []int{b, n, d}, func(ctx *context.Context, tt, s, m *Node) []*Node {
		_, _, dist := pairGeometry(s)
		gv, _ := SimplePotential(ctx, cfg, dist)
		u := ReduceAllSum(Mul(gv, graphutil.PairMask(s.Graph(), cfg.DType, n, nil)))
		return []*Node{f(ctx, tt, s, m), Neg(Gradient(u, s)[0])}
	})
	if e := relErr(out[0], out[1]); e > 1e-10 {
		t.Errorf("simple dynamics vs −∇U: relative error %.3g", e)
	}
}

// TestRandomRotation checks that RandomRotation returns proper rotations and that RotateBatch
// keeps pairwise distances and the zero mean.
func TestRandomRotation(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range []int{2, 3} {
		for range 20 {
			q := RandomRotation(rng, d)
			for i := range d {
				for j := range d {
					s := 0.0
					for c := range d {
						s += q[i*d+c] * q[j*d+c]
					}
					want := 0.0
					if i == j {
						want = 1
					}
					if math.Abs(s-want) > 1e-12 {
						t.Fatalf("d=%d: QQᵀ[%d,%d] = %g", d, i, j, s)
					}
				}
			}
			if dt := det(q, d); math.Abs(dt-1) > 1e-12 {
				t.Fatalf("d=%d: det = %g, want 1", d, dt)
			}
		}
		const b, n = 3, 4
		x := randVec(rng, b*n*d, 2)
		for bi := range b { // centre
			for c := range d {
				m := 0.0
				for i := range n {
					m += x[(bi*n+i)*d+c] / n
				}
				for i := range n {
					x[(bi*n+i)*d+c] -= m
				}
			}
		}
		y := append([]float64(nil), x...)
		if err := RotateBatch(rng, y, b, n, d); err != nil {
			t.Fatal(err)
		}
		dist := func(z []float64, bi, i, j int) float64 {
			s := 0.0
			for c := range d {
				a := z[(bi*n+i)*d+c] - z[(bi*n+j)*d+c]
				s += a * a
			}
			return s
		}
		changed := false
		for bi := range b {
			for i := range n {
				for j := range n {
					if math.Abs(dist(x, bi, i, j)-dist(y, bi, i, j)) > 1e-10 {
						t.Fatalf("d=%d: rotation changed a distance", d)
					}
				}
			}
		}
		if relErr(x, y) > 1e-3 {
			changed = true
		}
		if !changed {
			t.Errorf("d=%d: RotateBatch left the batch unchanged", d)
		}
		checkMeanFree(t, y, b, n, d)
	}
	if err := RotateBatch(rng, make([]float64, 5), 1, 2, 2); err == nil {
		t.Error("RotateBatch accepted a wrong length")
	}
}

// TestConfigValidate checks the configuration errors.
func TestConfigValidate(t *testing.T) {
	bad := []struct {
		name string
		err  error
	}{
		{"simple_no_mus", SimpleConfig{Gamma: 1}.Validate()},
		{"simple_gamma", SimpleConfig{Mus: []float64{1}}.Validate()},
		{"simple_hidden", SimpleConfig{Mus: []float64{1}, Gamma: 1, Hidden: []int{0}}.Validate()},
		{"kernel_len", KernelConfig{Mus: []float64{1, 2}, Gammas: []float64{1}}.Validate()},
		{"kernel_time_len", KernelConfig{Mus: []float64{1}, Gammas: []float64{1}, MusTime: []float64{0}}.Validate()},
		{"kernel_width", KernelConfig{Mus: []float64{1}, Gammas: []float64{0}}.Validate()},
		{"gnn", GNNConfig{Hidden: 0, Layers: 1}.Validate()},
		{"dtype", GNNConfig{Hidden: 1, Layers: 1, DType: dtypes.Int32}.Validate()},
	}
	for _, c := range bad {
		if c.err == nil {
			t.Errorf("%s: invalid config accepted", c.name)
		}
	}
	for _, err := range []error{DefaultSimpleConfig().Validate(), KernelConfigDW4().Validate(), KernelConfigLJ13().Validate(),
		GNFConfig(true).Validate()} {
		if err != nil {
			t.Errorf("preset rejected: %v", err)
		}
	}
	if _, err := KernelPreset("qm9"); err == nil {
		t.Error("KernelPreset accepted an unknown system")
	}
}

// TestKernelAnalyticTraceInCNF checks the CNF's "analytic" trace hook: the log-likelihood with
// the kernel dynamics' closed-form divergence equals the one with the autodiff exact trace.
func TestKernelAnalyticTraceInCNF(t *testing.T) {
	b := testBackend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	const bs, n, d = 4, 4, 2
	cfg := kernelF64(KernelConfigDW4())
	ctx := newCtx(t, Kernel(cfg), rng, bs, n, d)
	x := randVec(rng, bs*n*d, 1.5)
	for s := 0; s < bs; s++ { // mean-free configurations
		for k := 0; k < d; k++ {
			var m float64
			for i := 0; i < n; i++ {
				m += x[(s*n+i)*d+k]
			}
			for i := 0; i < n; i++ {
				x[(s*n+i)*d+k] -= m / n
			}
		}
	}
	logp := map[string][]float64{}
	for _, trace := range []string{"exact", "analytic"} {
		ccfg := cnf.Config{Solver: "rk4", Steps: 4, Trace: trace, DType: dtypes.Float64}
		if trace == "analytic" {
			ccfg.Divergence = KernelWithDivergence(cfg)
		}
		m, err := cnf.New(b, ctx, Kernel(cfg), ccfg)
		if err != nil {
			t.Fatal(err)
		}
		lp, _, err := m.LogLikelihood(tensors.FromFlatDataAndDimensions(append([]float64(nil), x...), bs, n, d), nil, 1)
		if err != nil {
			t.Fatalf("%s: %v", trace, err)
		}
		logp[trace] = lp
	}
	if e := relErr(logp["analytic"], logp["exact"]); e > 1e-9 {
		t.Fatalf("analytic-trace log p %v differs from exact-trace log p %v (relative %.3g)", logp["analytic"], logp["exact"], e)
	}
	if _, err := cnf.New(b, ctx, Kernel(cfg), cnf.Config{Trace: "analytic"}); err == nil {
		t.Fatal("Trace analytic without Divergence was accepted")
	}
}
