package metrics

import (
	"fmt"
	"math"
	"testing"
)

func TestQM9NNodes(t *testing.T) {
	var total int64
	for _, c := range QM9NNodes {
		total += c
	}
	if total != QM9NNodesTotal {
		t.Errorf("histogram sums to %d, want %d", total, QM9NNodesTotal)
	}
	var types int64
	for _, c := range QM9AtomTypes {
		types += c
	}
	if types != 1803097 {
		t.Errorf("atom types sum to %d, want 1803097", types)
	}
	if h := QM9NNodesEntropy(); math.Round(h*1e4) != 24757 {
		t.Errorf("entropy %.6f, want 2.4757", h)
	}
}

// TestLogPN checks every entry against the ln p column of REFERENCE §3.4 and the sizes the
// reference rejects.
func TestLogPN(t *testing.T) {
	want := map[int]float64{
		3: -11.5129, 4: -10.1266, 5: -9.9035, 6: -9.3157, 7: -8.7403, 8: -7.6211, 9: -6.6926,
		10: -5.6213, 11: -4.8196, 12: -4.0810, 13: -3.4868, 14: -2.9689, 15: -2.5516,
		16: -2.2402, 17: -2.0383, 18: -2.0126, 19: -1.9782, 20: -2.3558, 21: -2.3056,
		22: -3.3835, 23: -3.0266, 24: -5.2232, 25: -4.1957, 26: -7.6417, 27: -5.9294, 29: -8.2940,
	}
	for n := -1; n <= 31; n++ {
		t.Run(fmt.Sprint("N=", n), func(t *testing.T) {
			got, err := LogPN(n)
			w, ok := want[n]
			switch {
			case !ok && err == nil:
				t.Errorf("LogPN(%d) = %v, want an error", n, got)
			case ok && err != nil:
				t.Errorf("LogPN(%d): %v", n, err)
			case ok && math.Abs(got-w) > 5e-5:
				t.Errorf("LogPN(%d) = %.6f, want %.4f", n, got, w)
			}
		})
	}
}

func TestNodeSampler(t *testing.T) {
	a, b, c := NewNodeSampler(7), NewNodeSampler(7), NewNodeSampler(8)
	sa, sb, sc := a.SampleN(1000), b.SampleN(1000), c.SampleN(1000)
	if fmt.Sprint(sa) != fmt.Sprint(sb) {
		t.Errorf("same seed, different draws")
	}
	if fmt.Sprint(sa) == fmt.Sprint(sc) {
		t.Errorf("different seeds, same draws")
	}
	if got := a.SampleN(0); got != nil {
		t.Errorf("SampleN(0) = %v", got)
	}
	// Frequencies over many draws match p(N) within 5 standard deviations; impossible sizes
	// never appear.
	const draws = 400000
	var counts [len(QM9NNodes)]int
	for _, n := range NewNodeSampler(1).SampleN(draws) {
		if n < 0 || n >= len(counts) {
			t.Fatalf("drew N = %d", n)
		}
		counts[n]++
	}
	for n, c := range counts {
		p := float64(QM9NNodes[n]) / QM9NNodesTotal
		if p == 0 {
			if c != 0 {
				t.Errorf("N=%d has p = 0 but was drawn %d times", n, c)
			}
			continue
		}
		sd := math.Sqrt(draws * p * (1 - p))
		if d := math.Abs(float64(c) - draws*p); d > 5*sd+1 {
			t.Errorf("N=%d drawn %d times, expected %.0f ± %.0f", n, c, draws*p, sd)
		}
	}
}

// TestNNodesTestSplit checks the molecule sizes of the real test split against REFERENCE §3.4.
func TestNNodesTestSplit(t *testing.T) {
	want := map[int]int{7: 2, 8: 5, 9: 21, 10: 47, 11: 119, 12: 246, 13: 397, 14: 694, 15: 1009,
		16: 1347, 17: 1664, 18: 1730, 19: 1813, 20: 1235, 21: 1348, 22: 455, 23: 672, 24: 73,
		25: 159, 26: 6, 27: 38, 29: 3}
	got := map[int]int{}
	for _, m := range loadTestSplit(t) {
		got[m.NAtoms()]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("test-split sizes\n got %v\nwant %v", got, want)
	}
}
