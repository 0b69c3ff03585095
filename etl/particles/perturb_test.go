package particles

import (
	"math"
	"slices"
	"testing"
)

func TestPerturb(t *testing.T) {
	// A DW4 square of side 4 (each side at the pair minimum region), not mean-free on purpose.
	center := []float64{0, 0, 4, 0, 4, 4, 0, 4}
	cs, err := Perturb(DW4, center, PerturbOptions{N: 4000, Std: 0.05, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ref := slices.Clone(center)
	RemoveMean(ref, DW4.Dim)
	var sum, sumSq float64
	for k, c := range cs {
		if c.ID != int64(k) || c.System != "dw4" || len(c.Positions) != 8 {
			t.Fatalf("sample %d: %+v", k, c)
		}
		var mx, my float64
		for i := 0; i < 4; i++ {
			mx += c.Positions[2*i]
			my += c.Positions[2*i+1]
		}
		if math.Abs(mx) > 1e-12 || math.Abs(my) > 1e-12 {
			t.Fatalf("sample %d not mean-free: %v %v", k, mx, my)
		}
		if e, _ := DW4.Energy(c.Positions); e != c.Energy {
			t.Fatalf("sample %d: energy %v, recomputed %v", k, c.Energy, e)
		}
		for i, v := range c.Positions {
			d := v - ref[i]
			sum += d
			sumSq += d * d
		}
	}
	// The mean-free projection keeps (N−1)/N of the variance per coordinate: 0.05²·3/4.
	n := float64(len(cs) * 8)
	if v := sumSq / n; math.Abs(v-0.0025*0.75) > 0.0025*0.75*0.05 || math.Abs(sum/n) > 1e-3 {
		t.Fatalf("noise variance %v (want %v), mean %v", v, 0.0025*0.75, sum/n)
	}
	again, _ := Perturb(DW4, center, PerturbOptions{N: 4000, Std: 0.05, Seed: 3})
	other, _ := Perturb(DW4, center, PerturbOptions{N: 4000, Std: 0.05, Seed: 4})
	if !slices.Equal(again[17].Positions, cs[17].Positions) || slices.Equal(other[17].Positions, cs[17].Positions) {
		t.Fatal("Perturb is not a function of its seed")
	}
	for _, tc := range []struct {
		name   string
		center []float64
		opt    PerturbOptions
	}{
		{"wrong length", center[:6], PerturbOptions{N: 1, Std: 0.1}},
		{"zero n", center, PerturbOptions{N: 0, Std: 0.1}},
		{"negative std", center, PerturbOptions{N: 1, Std: -1}},
		{"NaN std", center, PerturbOptions{N: 1, Std: math.NaN()}},
		{"NaN coordinate", []float64{0, 0, 4, 0, 4, math.NaN(), 0, 4}, PerturbOptions{N: 1, Std: 0.1}},
	} {
		if _, err := Perturb(DW4, tc.center, tc.opt); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
