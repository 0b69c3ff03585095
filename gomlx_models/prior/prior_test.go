package prior

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/enflow/enflow/gomlx_models/backend"
)

// testBackend is the project backend (backend.New: $GOMLX_BACKEND or SimpleGo with sequential op
// scheduling, which avoids SimpleGo's worker-pool deadlock on gradient graphs).
var testBackend = sync.OnceValues(func() (backends.Backend, error) { return backend.New("") })

func backendT(t testing.TB) backends.Backend {
	t.Helper()
	b, err := testBackend()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// helmert returns an orthonormal basis (N−1 vectors of length N) of the mean-free subspace of R^N.
func helmert(n int) [][]float64 {
	var basis [][]float64
	for k := 1; k < n; k++ {
		v := make([]float64, n)
		norm := math.Sqrt(float64(k * (k + 1)))
		for i := range k {
			v[i] = 1 / norm
		}
		v[k] = -float64(k) / norm
		basis = append(basis, v)
	}
	return basis
}

func logProbs(t *testing.T, x, mask *tensors.Tensor) []float64 {
	t.Helper()
	b := backendT(t)
	var out *tensors.Tensor
	var err error
	if mask == nil {
		out, err = ExecOnce(b, func(x *Node) *Node { return CoGFreeLogProb(x, nil) }, x)
	} else {
		out, err = ExecOnce(b, CoGFreeLogProb, x, mask)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float64](out)
}

// TestCoGFreeNormalization integrates exp(log p) over the mean-free subspace, parametrized by
// coordinates u in an orthonormal (Helmert) basis, with a midpoint rule on [−L, L]^((N−1)·D). It
// must be 1: the density has (N−1)·D, not N·D, degrees of freedom.
func TestCoGFreeNormalization(t *testing.T) {
	for _, tc := range []struct{ n, d, grid int }{
		{2, 1, 400}, // 1-D subspace
		{3, 1, 120}, // 2-D subspace
		{2, 2, 120}, // 2-D subspace
	} {
		basis := helmert(tc.n)
		k := (tc.n - 1) * tc.d
		const L = 8.0
		h := 2 * L / float64(tc.grid)
		total := 1
		for range k {
			total *= tc.grid
		}
		data := make([]float64, total*tc.n*tc.d)
		for p := range total {
			idx := p
			for j := range k {
				u := -L + (float64(idx%tc.grid)+0.5)*h
				idx /= tc.grid
				// coordinate j ↔ (basis vector j / d, dimension j % d)
				bv, dim := basis[j/tc.d], j%tc.d
				for node := range tc.n {
					data[(p*tc.n+node)*tc.d+dim] += u * bv[node]
				}
			}
		}
		lp := logProbs(t, tensors.FromFlatDataAndDimensions(data, total, tc.n, tc.d), nil)
		integral := 0.0
		for _, v := range lp {
			integral += math.Exp(v)
		}
		integral *= math.Pow(h, float64(k))
		t.Logf("N=%d D=%d: ∫p = %.10f", tc.n, tc.d, integral)
		if math.Abs(integral-1) > 1e-6 {
			t.Errorf("N=%d D=%d: density integrates to %.10f", tc.n, tc.d, integral)
		}
	}
}

// TestCoGFreeMatchesExplicitGaussian compares with an explicit (N−1)·D-dimensional standard normal
// of the coordinates of x in an orthonormal basis of the mean-free subspace, with padding masks.
func TestCoGFreeMatchesExplicitGaussian(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const B, N, D = 3, 5, 3
	nReal := []int{5, 3, 2}
	mask := make([]float64, B*N)
	for b, nr := range nReal {
		for i := range nr {
			mask[b*N+i] = 1
		}
	}
	maskT := tensors.FromFlatDataAndDimensions(mask, B, N)
	x, err := SampleCoGFree(rng, dtypes.Float64, B, N, D, maskT)
	if err != nil {
		t.Fatal(err)
	}
	xv := tensors.MustCopyFlatData[float64](x)
	got := logProbs(t, x, maskT)
	for b, nr := range nReal {
		basis := helmert(nr)
		want := 0.0
		for _, v := range basis {
			for d := range D {
				u := 0.0
				for i := range nr {
					u += v[i] * xv[(b*N+i)*D+d]
				}
				want += -0.5*u*u - 0.5*Log2Pi
			}
		}
		if math.Abs(got[b]-want) > 1e-12 {
			t.Errorf("sample %d (N=%d): log p = %.15g, explicit Gaussian %.15g", b, nr, got[b], want)
		}
		for i := nr; i < N; i++ {
			for d := range D {
				if xv[(b*N+i)*D+d] != 0 {
					t.Errorf("masked node %d of sample %d is not zero", i, b)
				}
			}
		}
	}
}

// TestSampleStatistics: samples are mean-free and ‖x‖² ~ χ²((N−1)·D), so E‖x‖² = (N−1)·D and
// Var = 2(N−1)·D; the covariance of two nodes in the same dimension is −1/N.
func TestSampleStatistics(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const B, N, D = 20000, 4, 2
	x, err := SampleCoGFree(rng, dtypes.Float64, B, N, D, nil)
	if err != nil {
		t.Fatal(err)
	}
	xv := tensors.MustCopyFlatData[float64](x)
	var r2, cov01 float64
	for b := range B {
		for d := range D {
			s := 0.0
			for i := range N {
				v := xv[(b*N+i)*D+d]
				s += v
				r2 += v * v
			}
			if math.Abs(s) > 1e-12 {
				t.Fatalf("sample %d not mean-free: %g", b, s)
			}
			cov01 += xv[(b*N+0)*D+d] * xv[(b*N+1)*D+d]
		}
	}
	dof := float64((N - 1) * D)
	meanR2 := r2 / B
	if tol := 5 * math.Sqrt(2*dof/B); math.Abs(meanR2-dof) > tol {
		t.Errorf("E‖x‖² = %.4f, want %g ± %.3f", meanR2, dof, tol)
	}
	cov01 /= B * D
	if math.Abs(cov01+1.0/N) > 5/math.Sqrt(B*D) {
		t.Errorf("cov(x0, x1) = %.4f, want %g", cov01, -1.0/N)
	}
}

func TestRemoveMeanAndFeaturePrior(t *testing.T) {
	b := backendT(t)
	x := [][][]float64{{{1, 2}, {3, 6}, {0, 0}}}
	mask := [][]float64{{1, 1, 0}}
	out, err := ExecOnce(b, RemoveMean, x, mask)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{-1, -2, 1, 2, 0, 0}
	for i, v := range tensors.MustCopyFlatData[float64](out) {
		if math.Abs(v-want[i]) > 1e-15 {
			t.Fatalf("RemoveMean = %v, want %v", out, want)
		}
	}
	// Standard normal, masked: only the first two nodes count.
	lp, err := ExecOnce(b, StandardNormalLogProb, x, mask)
	if err != nil {
		t.Fatal(err)
	}
	wantLP := -0.5*(1+4+9+36) - 4*0.5*Log2Pi
	if v := tensors.MustCopyFlatData[float64](lp)[0]; math.Abs(v-wantLP) > 1e-12 {
		t.Errorf("StandardNormalLogProb = %v, want %v", v, wantLP)
	}
	// Position (channel 0, mean-free) + feature (channel 1) prior.
	z := [][][]float64{{{1, 0.5}, {-1, 2}, {0, 0}}}
	lpf, err := ExecOnce(b, func(z, m *Node) *Node { return PositionFeatureLogProb(z, m, 1) }, z, mask)
	if err != nil {
		t.Fatal(err)
	}
	wantF := (-0.5*2 - 0.5*1*Log2Pi) + (-0.5*(0.25+4) - 2*0.5*Log2Pi)
	if v := tensors.MustCopyFlatData[float64](lpf)[0]; math.Abs(v-wantF) > 1e-12 {
		t.Errorf("PositionFeatureLogProb = %v, want %v", v, wantF)
	}
}

func TestSampleFeaturesMaskedAndFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	mask := tensors.FromValue([][]float32{{1, 1, 0}})
	z, err := SamplePositionFeature(rng, dtypes.Float32, 1, 3, 4, 3, mask)
	if err != nil {
		t.Fatal(err)
	}
	v := tensors.MustCopyFlatData[float32](z)
	var s [3]float64
	for i := range 2 {
		for d := range 3 {
			s[d] += float64(v[i*4+d])
		}
	}
	for d := range 3 {
		if math.Abs(s[d]) > 1e-6 {
			t.Errorf("position channel %d not mean-free: %g", d, s[d])
		}
	}
	for c := range 4 {
		if v[2*4+c] != 0 {
			t.Errorf("masked node not zero: %v", v)
		}
	}
	if v[3] == 0 || v[4+3] == 0 {
		t.Errorf("feature channel should be non-zero: %v", v)
	}
	if _, err := SampleCoGFree(rng, dtypes.Float64, 2, 3, 3, mask); err == nil {
		t.Error("mask shape mismatch should fail")
	}
}

func TestCenterPositions(t *testing.T) {
	for _, tc := range []struct {
		name          string
		z             []float64
		n, c, posDims int
		want          []float64
	}{
		{"positions only", []float64{1, 2, 3, 6}, 2, 2, 2, []float64{-1, -2, 1, 2}},
		{"features untouched", []float64{1, 5, 3, 7}, 2, 2, 1, []float64{-1, 5, 1, 7}},
		{"one node", []float64{4, 9}, 1, 2, 2, []float64{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			CenterPositions(tc.z, tc.n, tc.c, tc.posDims)
			for i := range tc.want {
				if tc.z[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", tc.z, tc.want)
				}
			}
		})
	}
}
