package particles

import (
	"math/rand/v2"
	"testing"
)

func BenchmarkEnergyGrad(b *testing.B) {
	for _, tc := range []struct {
		name string
		sys  System
		pot  Potential
	}{{"dw4", DW4, DW4Potential}, {"lj13", LJ13, LJ13SamplingPotential}} {
		x := randomConfig(rand.New(rand.NewPCG(1, 1)), tc.sys, 1.2, 0.9)
		g := make([]float64, len(x))
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				tc.pot.EnergyGrad(x, tc.sys.Dim, g)
			}
		})
	}
}
