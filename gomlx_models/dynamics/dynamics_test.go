package dynamics

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

var testBackend backends.Backend

func getBackend(t testing.TB) backends.Backend {
	t.Helper()
	if testBackend == nil {
		testBackend = backend.MustNew("")
	}
	return testBackend
}

func f64(cfg egnn.Config) egnn.Config {
	cfg.DType = dtypes.Float64
	return cfg
}

// tinyParticle is a small particle config (same structure as E-NF's: attention, tanh).
func tinyParticle() egnn.Config {
	c := egnn.ParticleConfig()
	c.Hidden, c.Layers = 6, 2
	return f64(c)
}

func tinyQM9() egnn.Config {
	c := egnn.QM9Config()
	c.Hidden, c.Layers = 6, 2
	return f64(c)
}

func randVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * rng.NormFloat64()
	}
	return v
}

// run evaluates fn on (t, state, mask); mask may be nil.
func run(t testing.TB, ctx *context.Context, fn Func, tv float64, state, mask *tensors.Tensor) []float64 {
	t.Helper()
	var exec *context.Exec
	var err error
	if mask == nil {
		exec, err = context.NewExec(getBackend(t), ctx, func(ctx *context.Context, tt, s *Node) *Node {
			return fn(ctx, tt, s, nil)
		})
	} else {
		exec, err = context.NewExec(getBackend(t), ctx, func(ctx *context.Context, tt, s, m *Node) *Node {
			return fn(ctx, tt, s, m)
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	args := []any{tv, state}
	if mask != nil {
		args = append(args, mask)
	}
	out, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float64](out[0])
}

// randomizeVariables replaces every trainable float variable of ctx with U(−scale, scale) values,
// so that tests exercise non-trivial coordinate updates (the PyTorch init of the last coordinate
// layer, gain 0.001, makes them tiny).
func randomizeVariables(ctx *context.Context, rng *rand.Rand, scale float64) {
	for v := range ctx.IterVariables() {
		if !v.Trainable || !v.Shape().DType.IsFloat() {
			continue
		}
		data := make([]float64, v.Shape().Size())
		for i := range data {
			data[i] = scale * (2*rng.Float64() - 1)
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(data, v.Shape().Dimensions...))
	}
}

// newModel builds fn's variables for a state of the given dims and randomises them.
func newModel(t testing.TB, fn Func, rng *rand.Rand, dims ...int) *context.Context {
	ctx := seededContext()
	run(t, ctx, fn, 0.3, tensors.FromFlatDataAndDimensions(randVec(rng, dims[0]*dims[1]*dims[2], 1), dims...), nil)
	randomizeVariables(ctx, rng, 0.6)
	return ctx
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

func randomOrthogonal(rng *rand.Rand, d int, reflect bool) [][]float64 {
	for {
		q := make([][]float64, d)
		for i := range d {
			v := randVec(rng, d, 1)
			for k := range i {
				p := 0.0
				for c := range d {
					p += v[c] * q[k][c]
				}
				for c := range d {
					v[c] -= p * q[k][c]
				}
			}
			n := 0.0
			for _, a := range v {
				n += a * a
			}
			for c := range v {
				v[c] /= math.Sqrt(n)
			}
			q[i] = v
		}
		var det float64
		if d == 2 {
			det = q[0][0]*q[1][1] - q[0][1]*q[1][0]
		} else {
			det = q[0][0]*(q[1][1]*q[2][2]-q[1][2]*q[2][1]) - q[0][1]*(q[1][0]*q[2][2]-q[1][2]*q[2][0]) +
				q[0][2]*(q[1][0]*q[2][1]-q[1][1]*q[2][0])
		}
		if (det < 0) != reflect {
			for c := range d {
				q[0][c] = -q[0][c]
			}
		}
		return q
	}
}

type transform struct {
	name                      string
	rotate, refl, shift, perm bool
}

var transforms = []transform{
	{name: "rotation", rotate: true},
	{name: "reflection", rotate: true, refl: true},
	{name: "translation", shift: true},
	{name: "permutation", perm: true},
	{name: "all", rotate: true, refl: true, shift: true, perm: true},
}

// apply transforms a (B,N,C) state whose first d channels are coordinates: x ↦ Q·x + t on the
// coordinates (translation only if withShift), features unchanged, then node k ← node perm[k].
func apply(state []float64, b, n, c, d int, q [][]float64, shift []float64, perm []int, withShift bool) []float64 {
	out := make([]float64, len(state))
	for bi := range b {
		for k := range n {
			src := state[(bi*n+perm[k])*c : (bi*n+perm[k]+1)*c]
			dst := out[(bi*n+k)*c : (bi*n+k+1)*c]
			copy(dst, src)
			for i := range d {
				s := 0.0
				if withShift {
					s = shift[i]
				}
				for j := range d {
					s += q[i][j] * src[j]
				}
				dst[i] = s
			}
		}
	}
	return out
}

func permuteMask(mask []float64, b, n int, perm []int) []float64 {
	out := make([]float64, len(mask))
	for bi := range b {
		for k := range n {
			out[bi*n+k] = mask[bi*n+perm[k]]
		}
	}
	return out
}

// TestEquivariance checks f(g·z) = g·f(z) for rotations, reflections, permutations and
// translation invariance of the velocity, for the particle dynamics (DW4-like 2D and
// LJ13-like 3D) and the QM9 dynamics (coordinates equivariant, features invariant), with and
// without masks. It also checks that velocities are mean-free over (real) nodes.
func TestEquivariance(t *testing.T) {
	type model struct {
		name    string
		fn      Func
		d, c, n int
		masked  bool
	}
	models := []model{
		{"particle_dw4", Particle(tinyParticle()), 2, 2, 4, false},
		{"particle_lj", Particle(tinyParticle()), 3, 3, 5, false},
		{"particle_masked", Particle(tinyParticle()), 3, 3, 5, true},
		{"qm9", QM9(tinyQM9()), 3, 9, 5, false},
		{"qm9_masked", QM9(tinyQM9()), 3, 9, 5, true},
	}
	for mi, m := range models {
		for ti, tr := range transforms {
			t.Run(m.name+"/"+tr.name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(mi), uint64(ti)))
				const B = 2
				ctx := newModel(t, m.fn, rng, B, m.n, m.c)
				state := randVec(rng, B*m.n*m.c, 1.5)
				var mask []float64
				var maskT, mask2T *tensors.Tensor
				if m.masked {
					mask = []float64{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}
				}
				q := make([][]float64, m.d)
				for i := range q {
					q[i] = make([]float64, m.d)
					q[i][i] = 1
				}
				if tr.rotate {
					q = randomOrthogonal(rng, m.d, tr.refl)
				}
				shift := make([]float64, m.d)
				if tr.shift {
					shift = randVec(rng, m.d, 3)
				}
				perm := make([]int, m.n)
				for i := range perm {
					perm[i] = i
				}
				if tr.perm {
					rng.Shuffle(m.n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
				}
				if m.masked {
					maskT = tensors.FromFlatDataAndDimensions(mask, B, m.n)
					mask2T = tensors.FromFlatDataAndDimensions(permuteMask(mask, B, m.n, perm), B, m.n)
				}
				s1 := tensors.FromFlatDataAndDimensions(state, B, m.n, m.c)
				s2 := tensors.FromFlatDataAndDimensions(apply(state, B, m.n, m.c, m.d, q, shift, perm, true), B, m.n, m.c)
				v1 := run(t, ctx, m.fn, 0.37, s1, maskT)
				v2 := run(t, ctx, m.fn, 0.37, s2, mask2T)
				want := apply(v1, B, m.n, m.c, m.d, q, shift, perm, false)
				if e := relErr(v2, want); e > 1e-8 {
					t.Errorf("velocity not equivariant: rel err %g", e)
				}
				// Mean-free coordinates over real nodes; zero on padding.
				for bi := range B {
					sum := make([]float64, m.d)
					scale := 0.0
					for k := range m.n {
						real := !m.masked || mask[bi*m.n+k] == 1
						for i := range m.d {
							v := v1[(bi*m.n+k)*m.c+i]
							if !real && v != 0 {
								t.Fatalf("padded node %d has velocity %g", k, v)
							}
							sum[i] += v
							scale = math.Max(scale, math.Abs(v))
						}
					}
					for i := range m.d {
						if math.Abs(sum[i]) > 1e-12*math.Max(scale, 1) {
							t.Errorf("sample %d: velocity mean %g ≠ 0", bi, sum[i])
						}
					}
					if scale < 1e-3 {
						t.Errorf("velocities tiny (%g): test not sensitive", scale)
					}
				}
			})
		}
	}
}

// TestPaddingInvariance: padding a system with masked nodes holding garbage does not change the
// velocity of the real nodes.
func TestPaddingInvariance(t *testing.T) {
	for mi, m := range []struct {
		name string
		fn   Func
		c    int
	}{{"particle", Particle(tinyParticle()), 3}, {"qm9", QM9(tinyQM9()), 9}} {
		t.Run(m.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(99, uint64(mi)))
			const real, pad = 4, 3
			n := real + pad
			ctx := newModel(t, m.fn, rng, 1, n, m.c)
			padded := randVec(rng, n*m.c, 1.5)
			mask := make([]float64, n)
			for i := range real {
				mask[i] = 1
			}
			vU := run(t, ctx, m.fn, 0.6, tensors.FromFlatDataAndDimensions(append([]float64(nil), padded[:real*m.c]...), 1, real, m.c), nil)
			vP := run(t, ctx, m.fn, 0.6, tensors.FromFlatDataAndDimensions(padded, 1, n, m.c),
				tensors.FromFlatDataAndDimensions(mask, 1, n))
			if e := relErr(vP[:real*m.c], vU); e > 1e-12 {
				t.Errorf("real-node velocities changed by padding: rel err %g", e)
			}
			for i, v := range vP[real*m.c:] {
				if v != 0 {
					t.Fatalf("padded velocity #%d = %g, want 0", i, v)
				}
			}
		})
	}
}

// hutchinsonLoss builds what FFJORD training with the Hutchinson estimator differentiates:
// f = dynamics(t, z); tr ≈ εᵀ(∂f/∂z)ε via one VJP; loss = Σ tr + ½ Σ f².
func hutchinsonLoss(ctx *context.Context, fn Func, tt, z, eps *Node) *Node {
	f := fn(ctx, tt, z, nil)
	vjp := Gradient(ReduceAllSum(Mul(f, eps)), z)[0]
	tr := ReduceAllSum(Mul(vjp, eps))
	return Add(tr, MulScalar(ReduceAllSum(Square(f)), 0.5))
}

// TestSecondOrderAutodiff builds the gradient of a loss containing a VJP of the dynamics with
// respect to all trainable variables (second-order autodiff) on SimpleGo, and checks it against
// central finite differences along a random direction in parameter space.
func TestSecondOrderAutodiff(t *testing.T) {
	for mi, m := range []struct {
		name string
		fn   Func
		n, c int
	}{{"particle", Particle(tinyParticle()), 4, 2}, {"qm9", QM9(tinyQM9()), 3, 9}} {
		t.Run(m.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, uint64(mi)))
			const B = 2
			ctx := newModel(t, m.fn, rng, B, m.n, m.c)
			z := tensors.FromFlatDataAndDimensions(randVec(rng, B*m.n*m.c, 1), B, m.n, m.c)
			eps := tensors.FromFlatDataAndDimensions(randVec(rng, B*m.n*m.c, 1), B, m.n, m.c)
			var vars []*context.Variable
			for v := range ctx.IterVariables() {
				if v.Trainable && v.Shape().DType.IsFloat() {
					vars = append(vars, v)
				}
			}
			gradExec, err := context.NewExec(getBackend(t), ctx, func(ctx *context.Context, tt, z, eps *Node) []*Node {
				loss := hutchinsonLoss(ctx, m.fn, tt, z, eps)
				var params []*Node
				for _, v := range vars {
					params = append(params, v.ValueGraph(loss.Graph()))
				}
				return append([]*Node{loss}, Gradient(loss, params...)...)
			})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := gradExec.Exec(0.4, z, eps)
			if err != nil {
				t.Fatal(err)
			}
			// Directional derivative along a random U vs central finite difference.
			dirs := make([][]float64, len(vars))
			orig := make([][]float64, len(vars))
			analytic := 0.0
			for i, v := range vars {
				orig[i] = tensors.MustCopyFlatData[float64](v.MustValue())
				dirs[i] = randVec(rng, len(orig[i]), 1)
				g := tensors.MustCopyFlatData[float64](outs[1+i])
				for k := range g {
					analytic += g[k] * dirs[i][k]
				}
			}
			lossExec, err := context.NewExec(getBackend(t), ctx, func(ctx *context.Context, tt, z, eps *Node) *Node {
				return hutchinsonLoss(ctx, m.fn, tt, z, eps)
			})
			if err != nil {
				t.Fatal(err)
			}
			lossAt := func(h float64) float64 {
				for i, v := range vars {
					d := make([]float64, len(orig[i]))
					for k := range d {
						d[k] = orig[i][k] + h*dirs[i][k]
					}
					v.MustSetValue(tensors.FromFlatDataAndDimensions(d, v.Shape().Dimensions...))
				}
				out, err := lossExec.Exec(0.4, z, eps)
				if err != nil {
					t.Fatal(err)
				}
				return tensors.MustCopyFlatData[float64](out[0])[0]
			}
			const h = 1e-5
			fd := (lossAt(h) - lossAt(-h)) / (2 * h)
			t.Logf("directional derivative: analytic %.12g, finite difference %.12g", analytic, fd)
			if math.Abs(fd-analytic) > 1e-6*math.Max(1, math.Abs(analytic)) {
				t.Fatalf("second-order gradient: analytic directional derivative %.10g vs finite difference %.10g", analytic, fd)
			}
		})
	}
}
