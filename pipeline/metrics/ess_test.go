package metrics

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// gaussianSamples draws n points of N(0, s²·I_d) and returns u(x) = ½‖x‖² and log q(x).
func gaussianSamples(rng *rand.Rand, n, d int, s float64) (u, logQ []float64) {
	u, logQ = make([]float64, n), make([]float64, n)
	for i := range n {
		r2 := 0.0
		for range d {
			v := s * rng.NormFloat64()
			r2 += v * v
		}
		u[i] = 0.5 * r2
		logQ[i] = -r2/(2*s*s) - 0.5*float64(d)*math.Log(2*math.Pi*s*s)
	}
	return u, logQ
}

// essFraction is the exact Kish ESS fraction E_q[w]²/E_q[w²] of the proposal N(0, s²I_d)
// for the target N(0, T·I_d): per dimension √(2r−1)/r with r = s²/T (needs r > ½).
func essFraction(s, T float64, d int) float64 {
	r := s * s / T
	return math.Pow(math.Sqrt(2*r-1)/r, float64(d))
}

// TestReweightingRecoversTargetEnergy reweights samples of a deliberately wrong, wider
// proposal toward exp(−u/T) with u = ½‖x‖²: the target is N(0, T·I_d), whose mean energy is
// d·T/2. The estimate must be within 4 standard errors (and 3 %) of it, while the proposal's
// own mean is far off; the Kish and forward ESS fractions must match the closed form.
func TestReweightingRecoversTargetEnergy(t *testing.T) {
	tests := []struct {
		d    int
		s, T float64
	}{
		{1, 1.5, 1}, {3, 1.3, 1}, {6, 1.15, 1}, {3, 2.0, 2.5}, {2, 0.9, 1}, // 0.9: a too narrow proposal
	}
	for _, tc := range tests {
		rng := rand.New(rand.NewPCG(uint64(tc.d), 17))
		const n = 40000
		u, logQ := gaussianSamples(rng, n, tc.d, tc.s)
		logw, err := LogWeights(u, logQ, tc.T)
		if err != nil {
			t.Fatal(err)
		}
		want := float64(tc.d) * tc.T / 2
		mean, se, err := ReweightedMean(logw, u)
		if err != nil {
			t.Fatal(err)
		}
		plain := 0.0
		for _, v := range u {
			plain += v / n
		}
		ess, err := KishESS(logw)
		if err != nil {
			t.Fatal(err)
		}
		// Forward ESS on samples of the target itself.
		up, logQp := targetSamples(rng, n, tc.d, tc.s, tc.T)
		logwp, err := LogWeights(up, logQp, tc.T)
		if err != nil {
			t.Fatal(err)
		}
		fwd, err := ForwardESSFraction(logwp)
		if err != nil {
			t.Fatal(err)
		}
		exact := essFraction(tc.s, tc.T, tc.d)
		t.Logf("d=%d s=%g T=%g: reweighted mean energy %.4f ± %.4f (target %.4f, proposal mean %.4f); ESS/n %.4f, forward %.4f, exact %.4f",
			tc.d, tc.s, tc.T, mean, se, want, plain, ess/n, fwd, exact)
		if math.Abs(mean-want) > 4*se || math.Abs(mean-want) > 0.03*want {
			t.Errorf("d=%d s=%g: reweighted mean %.4f ± %.4f, want %.4f", tc.d, tc.s, mean, se, want)
		}
		if math.Abs(ess/n-exact) > 0.03 {
			t.Errorf("d=%d s=%g: ESS/n %.4f, exact %.4f", tc.d, tc.s, ess/n, exact)
		}
		if math.Abs(fwd-exact) > 0.03 {
			t.Errorf("d=%d s=%g: forward ESS %.4f, exact %.4f", tc.d, tc.s, fwd, exact)
		}
		// Reweighted histogram of the energy: its mean matches too, and it is normalised.
		h, err := ReweightedHistogram(logw, u, 0, 6*want+5, 400)
		if err != nil {
			t.Fatal(err)
		}
		total, hm := h.Under+h.Over, 0.0
		width := (h.Hi - h.Lo) / 400
		for b, m := range h.Mass {
			total += m
			hm += m * (h.Lo + (float64(b)+0.5)*width)
		}
		if math.Abs(total-1) > 1e-12 || math.Abs(hm-mean) > width+0.02*want {
			t.Errorf("d=%d: histogram mass %v, mean %v vs %v", tc.d, total, hm, mean)
		}
	}
}

// targetSamples draws from the target N(0, T·I_d) and evaluates the proposal N(0, s²I) on them.
func targetSamples(rng *rand.Rand, n, d int, s, T float64) (u, logQ []float64) {
	u, logQ = make([]float64, n), make([]float64, n)
	for i := range n {
		r2 := 0.0
		for range d {
			v := math.Sqrt(T) * rng.NormFloat64()
			r2 += v * v
		}
		u[i] = 0.5 * r2
		logQ[i] = -r2/(2*s*s) - 0.5*float64(d)*math.Log(2*math.Pi*s*s)
	}
	return u, logQ
}

// TestLogWeightSign pins the sign convention: the opposite sign (log w = u/T + log q)
// gives a reweighted energy that is far from the target's.
func TestLogWeightSign(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	u, logQ := gaussianSamples(rng, 20000, 3, 1.3)
	logw, err := LogWeights(u, logQ, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range logw {
		if want := -u[i] - logQ[i]; logw[i] != want {
			t.Fatalf("log w[%d] = %v, want −u − log q = %v", i, logw[i], want)
		}
	}
	flipped := make([]float64, len(logw))
	for i := range logw {
		flipped[i] = -logw[i]
	}
	good, se, _ := ReweightedMean(logw, u)
	bad, _, _ := ReweightedMean(flipped, u)
	t.Logf("mean energy: convention %.4f ± %.4f, flipped sign %.4f, target 1.5", good, se, bad)
	if math.Abs(good-1.5) > 4*se || math.Abs(bad-1.5) < 20*se {
		t.Errorf("sign test: %v (±%v) and flipped %v", good, se, bad)
	}
}

// TestESSProposalIsTarget: with q = p, every weight is the same and ESS = n (to rounding),
// also with an arbitrary constant in log q.
func TestESSProposalIsTarget(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	u, logQ := gaussianSamples(rng, 5000, 4, 1)
	for i := range logQ {
		logQ[i] += 1234.5 // unnormalised target: constants never matter
	}
	logw, err := LogWeights(u, logQ, 1)
	if err != nil {
		t.Fatal(err)
	}
	ess, err := KishESS(logw)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := ForwardESSFraction(logw)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ess/5000-1) > 1e-9 || math.Abs(fwd-1) > 1e-9 {
		t.Fatalf("ESS/n = %v, forward %v, want 1", ess/5000, fwd)
	}
}

// TestESSStableForLargeLogWeights: log-weights of ±1e4 (exp overflows) still work.
func TestESSStableForLargeLogWeights(t *testing.T) {
	logw := []float64{1e4, 1e4, 1e4 - math.Log(2), math.Inf(-1)}
	ess, err := KishESS(logw)
	if err != nil {
		t.Fatal(err)
	}
	// Weights ∝ 1, 1, ½, 0: (2.5)² / 2.25.
	if want := 2.5 * 2.5 / 2.25; math.Abs(ess-want) > 1e-9 {
		t.Fatalf("ESS = %v, want %v", ess, want)
	}
	m, _, err := ReweightedMean(logw, []float64{1, 3, 6, math.NaN()}) // NaN has zero weight
	if err != nil || math.Abs(m-(1+3+3)/2.5) > 1e-9 {
		t.Fatalf("mean = %v, %v", m, err)
	}
}

func TestESSErrors(t *testing.T) {
	tests := []struct {
		name    string
		run     func() error
		wantErr string
	}{
		{"length mismatch", func() error { _, err := LogWeights([]float64{1}, nil, 1); return err }, "1 energies but 0 log-densities"},
		{"zero temperature", func() error { _, err := LogWeights([]float64{1}, []float64{0}, 0); return err }, "temperature must be finite and > 0"},
		{"NaN energy", func() error { _, err := LogWeights([]float64{1, math.NaN()}, []float64{0, 0}, 1); return err }, "sample 1: energy NaN"},
		{"infinite log q", func() error { _, err := LogWeights([]float64{1}, []float64{math.Inf(-1)}, 1); return err }, "sample 0: log q -Inf"},
		{"empty", func() error { _, err := KishESS(nil); return err }, "no samples with a positive weight"},
		{"all zero weights", func() error { _, err := KishESS([]float64{math.Inf(-1)}); return err }, "all 1 log-weights are −Inf"},
		{"+Inf log-weight", func() error { _, err := KishESS([]float64{0, math.Inf(1)}); return err }, "log-weight 1 is +Inf"},
		{"forward −Inf", func() error { _, err := ForwardESSFraction([]float64{0, math.Inf(-1)}); return err }, "log-weight 1 is −Inf"},
		{"histogram bins", func() error { _, err := ReweightedHistogram([]float64{0}, []float64{1}, 0, 1, 0); return err }, "bins > 0"},
		{"mean NaN observation", func() error { _, _, err := ReweightedMean([]float64{0}, []float64{math.NaN()}); return err }, "observation 0 is NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := KishESS(nil); !errors.Is(err, ErrNoWeights) {
		t.Errorf("KishESS(nil): %v is not ErrNoWeights", err)
	}
}
