package metrics

import (
	"math"
	"strings"
	"testing"
)

func TestDistanceBin(t *testing.T) {
	tests := []struct {
		e      float64
		want   int
		wantOK bool
	}{
		{0, 0, false},
		{1e-8, 0, false}, // ignored: the reference keeps only e > 1e-8
		{-1, 0, false},
		{math.NaN(), 0, false},
		{1.5e-8, 0, true},
		{0.5, 3, true},    // 0.5/13·100 = 3.85
		{1.0, 7, true},    // 7.69
		{1.09, 8, true},   // 8.38: C–H bonds land in bin 8
		{6.5, 50, true},   // exactly 50
		{12.86, 98, true}, // 98.92
		{12.88, 99, true},
		{13, 99, true},
		{100, 99, true}, // clamped to the last bin
		{math.Inf(1), 99, true},
	}
	for _, tc := range tests {
		b, ok := DistanceBin(tc.e)
		if b != tc.want || ok != tc.wantOK {
			t.Errorf("DistanceBin(%v) = %d, %v; want %d, %v", tc.e, b, ok, tc.want, tc.wantOK)
		}
	}
}

func TestDistanceHistogramAddPositions(t *testing.T) {
	var h DistanceHistogram
	// Equilateral triangle of side 1 Å plus an atom on top of atom 0 (its zero distance to
	// atom 0 is ignored; its distances to atoms 1 and 2 are 1 Å).
	h.AddPositions([][3]float64{{0, 0, 0}, {1, 0, 0}, {0.5, math.Sqrt(3) / 2, 0}, {0, 0, 0}})
	if h.Total() != 10 || h.Bins[7] != 10 {
		t.Errorf("total %d, bin 7 %d; want 10 ordered pairs in bin 7", h.Total(), h.Bins[7])
	}
	var g DistanceHistogram
	g.Add(0.5)
	g.Add(0)
	h.Merge(&g)
	if h.Total() != 11 || h.Bins[3] != 1 {
		t.Errorf("after merge: total %d, bin 3 %d", h.Total(), h.Bins[3])
	}
}

func TestAnalyzed19(t *testing.T) {
	var h DistanceHistogram
	h.Bins = Analyzed19Distances
	if got, want := h.Total(), int64(13832*19*18); got != want {
		t.Errorf("analyzed_19 holds %d pairs, want %d", got, want)
	}
	var atoms int64
	for _, c := range Analyzed19AtomTypes {
		atoms += c
	}
	// The reference's own atom-type counts sum to 5 less than 13,832·19 = 262,808; keep them
	// verbatim (this guards against typos only).
	if atoms != 262803 {
		t.Errorf("analyzed_19 atom types sum to %d, want 262803", atoms)
	}
}

func TestDivergences(t *testing.T) {
	a19 := Analyzed19Histogram()
	rev := make([]float64, len(a19))
	for i, v := range a19 {
		rev[len(a19)-1-i] = v
	}
	tests := []struct {
		name      string
		h1, h2    []float64
		js, symKL float64
		tol       float64
	}{
		{"identical", a19, a19, 0, 0, 0},
		{"scale-invariant", []float64{1, 2, 3}, []float64{2, 4, 6}, 0, 0, 1e-15},
		// Disjoint supports: JS → ln 2, symmetric KL → ln(1/1e-10) (ε = 1e-10 keeps it finite).
		{"disjoint", []float64{1, 0}, []float64{0, 5}, math.Ln2, 10 * math.Ln10, 1e-8},
		// p1 = (½, ½), p2 = (1, 0): closed forms in jsHalf and symKLHalf.
		{"half", []float64{1, 1}, []float64{3, 0}, jsHalf(), symKLHalf(), 1e-8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js, err := JSDivergence(tc.h1, tc.h2)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(js-tc.js) > tc.tol {
				t.Errorf("JS = %.12g, want %.12g", js, tc.js)
			}
			js2, _ := JSDivergence(tc.h2, tc.h1)
			if js2 != js && math.Abs(js2-js) > 1e-15 {
				t.Errorf("JS not symmetric: %v vs %v", js, js2)
			}
			kl, err := SymmetricKL(tc.h1, tc.h2)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(kl-tc.symKL) > tc.tol*math.Max(1, tc.symKL) {
				t.Errorf("symmetric KL = %.12g, want %.12g", kl, tc.symKL)
			}
		})
	}
	// A histogram against its mirror image is clearly different.
	if js, _ := JSDivergence(a19, rev); !(js > 0.3) {
		t.Errorf("JS(analyzed_19, reversed) = %v, want > 0.3", js)
	}
}

// jsHalf is JS((½,½), (1,0)) with p += 1e-10, in closed form.
func jsHalf() float64 {
	const e = 1e-10
	p := [2]float64{0.5 + e, 0.5 + e}
	q := [2]float64{1 + e, e}
	var s float64
	for i := range 2 {
		m := (p[i] + q[i]) / 2
		s += p[i]*math.Log(p[i]/m) + q[i]*math.Log(q[i]/m)
	}
	return s / 2
}

func symKLHalf() float64 {
	const e = 1e-10
	p := [2]float64{0.5 + e, 0.5 + e}
	q := [2]float64{1 + e, e}
	var s float64
	for i := range 2 {
		s += p[i]*math.Log(p[i]/q[i]) + q[i]*math.Log(q[i]/p[i])
	}
	return s / 2
}

func TestDivergenceErrors(t *testing.T) {
	tests := []struct {
		name    string
		h1, h2  []float64
		wantErr string
	}{
		{"length", []float64{1, 2}, []float64{1}, "2 and 1 bins"},
		{"no bins", nil, nil, "no bins"},
		{"empty first", []float64{0, 0}, []float64{1, 1}, "first histogram: histogram is empty"},
		{"negative", []float64{1, 1}, []float64{1, -1}, "second histogram: bin 1 is -1"},
		{"NaN", []float64{math.NaN(), 1}, []float64{1, 1}, "bin 0 is NaN"},
		{"Inf", []float64{math.Inf(1), 1}, []float64{1, 1}, "bin 0 is +Inf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for fname, f := range map[string]func(a, b []float64) (float64, error){"JS": JSDivergence, "SymKL": SymmetricKL} {
				if _, err := f(tc.h1, tc.h2); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("%s error %v, want %q", fname, err, tc.wantErr)
				}
			}
		})
	}
}

// TestPairwiseSum checks numpy's summation order on values where the order matters.
func TestPairwiseSum(t *testing.T) {
	big := 1e17 // spacing 16: adding 1 to ±big is lost
	tests := []struct {
		name string
		a    []float64
		want float64
	}{
		{"empty", nil, 0},
		{"short sequential", []float64{big, 1, 1, -big}, 0}, // ((big+1)+1)-big: each +1 is lost
		// 8 accumulators: a[0] and a[8] share r[0], so the two 1s meet and survive, while
		// −big and big cancel in r[1]; a sequential sum would give 0.
		{"eight accumulators", []float64{1, -big, 0, 0, 0, 0, 0, 0, 1, big, 0, 0, 0, 0, 0, 0}, 2},
		{"remainder sequential", []float64{0, 0, 0, 0, 0, 0, 0, 0, big, 1, 1, -big}, 0},
	}
	for _, tc := range tests {
		if got := pairwiseSum(tc.a); got != tc.want {
			t.Errorf("%s: pairwiseSum = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Large inputs split recursively; the sum of 1..1000 is exact either way.
	a := make([]float64, 1000)
	for i := range a {
		a[i] = float64(i + 1)
	}
	if got := pairwiseSum(a); got != 500500 {
		t.Errorf("sum 1..1000 = %v", got)
	}
}

// TestJSTestSplit19 reproduces REFERENCE §3.2: the histogram of the 1,813 real 19-atom test
// molecules against analyzed_19 has JS = 3.6e-5.
func TestJSTestSplit19(t *testing.T) {
	mols := loadTestSplit(t)
	var h DistanceHistogram
	n := 0
	for i := range mols {
		if mols[i].NAtoms() == 19 {
			h.AddPositions(mols[i].Centered())
			n++
		}
	}
	if n != 1813 {
		t.Fatalf("%d molecules with 19 atoms, want 1813", n)
	}
	if got, want := h.Total(), int64(n*19*18); got != want {
		t.Errorf("%d pairs, want %d", got, want)
	}
	js, err := JSDivergence(h.Floats(), Analyzed19Histogram())
	if err != nil {
		t.Fatal(err)
	}
	kl, err := SymmetricKL(h.Floats(), Analyzed19Histogram())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("JS = %.6e, symmetric KL = %.6e over %d molecules, %d pairs", js, kl, n, h.Total())
	if got := math.Round(js * 1e6); got != 36 { // 2 significant figures
		t.Errorf("JS = %.6e, want 3.6e-05 to 2 significant figures", js)
	}
}
