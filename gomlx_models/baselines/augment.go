package baselines

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// AugmentRotation is the name of the random-rotation training augmentation of GNF-att-aug.
const AugmentRotation = "rotation"

// RandomRotation returns a random rotation Q ∈ SO(d), row-major d×d, drawn from the Haar
// (uniform) measure: Gram–Schmidt on Gaussian vectors gives a Haar-distributed orthogonal
// matrix; if its determinant is −1 the first row is negated, which maps Haar(O(d)) restricted to
// the reflections onto Haar(SO(d)).
//
// en_flows (utils.py::random_rotation) draws a uniform angle in 2D — the same distribution — and,
// in 3D, the product Rx·Ry·Rz of rotations by independent uniform angles, which is a rotation but
// not Haar-uniform; here both dimensions use the uniform measure.
func RandomRotation(rng *rand.Rand, d int) []float64 {
	if d <= 0 {
		panic(fmt.Sprintf("baselines.RandomRotation: dimension %d", d))
	}
	for {
		q := make([]float64, d*d)
		ok := true
		for i := range d {
			row := q[i*d : (i+1)*d]
			for c := range row {
				row[c] = rng.NormFloat64()
			}
			for k := range i {
				prev := q[k*d : (k+1)*d]
				p := 0.0
				for c := range row {
					p += row[c] * prev[c]
				}
				for c := range row {
					row[c] -= p * prev[c]
				}
			}
			norm := 0.0
			for _, v := range row {
				norm += v * v
			}
			norm = math.Sqrt(norm)
			if norm < 1e-8 { // degenerate draw (probability ~0): start again
				ok = false
				break
			}
			for c := range row {
				row[c] /= norm
			}
		}
		if !ok {
			continue
		}
		if det(q, d) < 0 {
			for c := range d {
				q[c] = -q[c]
			}
		}
		return q
	}
}

// det is the determinant of the row-major d×d matrix a (Gaussian elimination, partial pivoting).
func det(a []float64, d int) float64 {
	m := append([]float64(nil), a...)
	s := 1.0
	for col := range d {
		p := col
		for r := col + 1; r < d; r++ {
			if math.Abs(m[r*d+col]) > math.Abs(m[p*d+col]) {
				p = r
			}
		}
		if m[p*d+col] == 0 {
			return 0
		}
		if p != col {
			for c := range d {
				m[p*d+c], m[col*d+c] = m[col*d+c], m[p*d+c]
			}
			s = -s
		}
		s *= m[col*d+col]
		for r := col + 1; r < d; r++ {
			f := m[r*d+col] / m[col*d+col]
			for c := col; c < d; c++ {
				m[r*d+c] -= f * m[col*d+c]
			}
		}
	}
	return s
}

// RotateBatch rotates each of the b configurations of x (flat, b×n×d, node-major) in place by
// its own random rotation from RandomRotation: x_bi ← Q_b·x_bi for every node i. Rotations about
// the origin keep mean-free configurations mean-free.
func RotateBatch(rng *rand.Rand, x []float64, b, n, d int) error {
	if len(x) != b*n*d {
		return fmt.Errorf("baselines: RotateBatch: %d values for %d×%d×%d", len(x), b, n, d)
	}
	tmp := make([]float64, d)
	for bi := range b {
		q := RandomRotation(rng, d)
		for i := range n {
			p := x[(bi*n+i)*d : (bi*n+i+1)*d]
			for r := range d {
				s := 0.0
				for c := range d {
					s += q[r*d+c] * p[c]
				}
				tmp[r] = s
			}
			copy(p, tmp)
		}
	}
	return nil
}
