package train

import (
	"context"
	"math"
	"testing"
)

func TestParseLambda(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Lambda
		wantErr bool
	}{
		{"0.5", Lambda{0.5, 0.5}, false},
		{"1.0:0.5", Lambda{1, 0.5}, false},
		{"1:0", Lambda{1, 0}, false},
		{"1.5", Lambda{}, true},
		{"a:b", Lambda{}, true},
		{"", Lambda{}, true},
		{"1:0.5:0", Lambda{}, true},
	} {
		got, err := ParseLambda(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseLambda(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	l := Lambda{1, 0.5}
	if l.At(0, 11) != 1 || math.Abs(l.At(10, 11)-0.5) > 1e-15 || math.Abs(l.At(5, 11)-0.75) > 1e-15 {
		t.Errorf("linear schedule: %g %g %g", l.At(0, 11), l.At(5, 11), l.At(10, 11))
	}
}

// TestTrainKLRealNVP trains the RealNVP by energy (KL) and by ML+KL on DW4 for a few steps: the
// KL falls, the metrics carry the KL columns and λ, and the gaussian stand-in (no energy
// training) is refused.
func TestTrainKLRealNVP(t *testing.T) {
	b := testBackend(t)
	dir := t.TempDir()
	writeTinyDW4(t, dir, map[string]int{"train": 64, "val": 16, "test": 16})
	s := loadTiny(t, dir, 64)
	for _, obj := range []string{ObjectiveKL, ObjectiveMLKL} {
		o := baseOptions(b, s, t.TempDir())
		o.Spec.Kind = RealNVPKind
		o.Spec.RealNVP = &RealNVPSpec{Layers: 4, Hidden: 16}
		o.Schedule = Schedule{Epochs: 6, TestEvery: 5, Batch: 16}
		o.LearningRate = 5e-3
		o.Energy = EnergyOptions{Objective: obj, KLSamples: 32, Lambda: &Lambda{1, 0.5}}
		o.Recovery = RecoveryOptions{Disable: true}
		if _, err := Run(context.Background(), o); err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		rows, err := ReadMetricsCSV(o.OutDir)
		if err != nil {
			t.Fatal(err)
		}
		first, last := rows[0], rows[len(rows)-1]
		if !(last.TrainKL < first.TrainKL) || math.IsNaN(last.TrainKLPrior) || math.IsNaN(last.TrainEnergy) {
			t.Errorf("%s: KL %g → %g (prior term %g, energy %g): want a decrease", obj, first.TrainKL, last.TrainKL, last.TrainKLPrior, last.TrainEnergy)
		}
		if obj == ObjectiveMLKL {
			if first.Lambda != 1 || math.Abs(last.Lambda-0.5) > 1e-12 || math.IsNaN(last.TrainNLL) {
				t.Errorf("ml+kl: λ %g → %g, train NLL %g", first.Lambda, last.Lambda, last.TrainNLL)
			}
		} else if !math.IsNaN(last.Lambda) || !math.IsNaN(last.TrainNLL) {
			t.Errorf("kl: λ %g and train NLL %g should be absent", last.Lambda, last.TrainNLL)
		}
	}
	o := baseOptions(b, s, t.TempDir())
	o.Schedule = Schedule{Epochs: 1, TestEvery: 1, Batch: 16}
	o.Energy = EnergyOptions{Objective: ObjectiveKL}
	if _, err := Run(context.Background(), o); err == nil {
		t.Error("energy training of the gaussian stand-in accepted")
	}
}

func TestDensityDimsAndNormaliser(t *testing.T) {
	for _, tc := range []struct {
		kind, system string
		nodes, dim   int
		dims         int
		norm         float64 // ½·dims·ln 2π, BOLTZMANN.md's offsets for the mean-free subspaces
	}{
		{"enf", "dw4", 4, 2, 6, 5.5136},
		{"kernel", "dw4", 4, 2, 6, 5.5136},
		{RealNVPKind, "dw4", 4, 2, 8, 7.3515},
		{"enf", "lj13", 13, 3, 36, 33.0818},
		{RealNVPKind, "lj13", 13, 3, 39, 35.8386},
		{"qm9", SystemQM9, 29, 3, 0, 0},
	} {
		s := ModelSpec{Kind: tc.kind, System: tc.system, Nodes: tc.nodes, Dim: tc.dim}
		if got := s.DensityDims(); got != tc.dims {
			t.Errorf("%s/%s: DensityDims %d, want %d", tc.kind, tc.system, got, tc.dims)
		}
		if got := s.GaussianNormaliser(); math.Abs(got-tc.norm) > 1e-4 {
			t.Errorf("%s/%s: GaussianNormaliser %.5f, want %.4f", tc.kind, tc.system, got, tc.norm)
		}
	}
}

func TestKLSeedRetries(t *testing.T) {
	if got := klSeed(12345, 0); got != 12345^klSeedMix {
		t.Fatalf("klSeed without retries = %#x, want the step seed mixed only with klSeedMix", got)
	}
	seen := map[uint64]int{}
	for r := 0; r < 6; r++ {
		s := klSeed(12345, r)
		if prev, ok := seen[s]; ok {
			t.Fatalf("retries %d and %d draw the same KL samples (seed %#x)", prev, r, s)
		}
		seen[s] = r
	}
}
