package cli

import "testing"

func TestAutoSampleBuckets(t *testing.T) {
	for _, tc := range []struct {
		n        int
		compiles bool
		want     int
	}{
		{1, false, 0},
		{100, false, 0},
		{1_000_000, false, 0},
		{1, true, 2},
		{100, true, 2},
		{200, true, 2},
		{201, true, 4},
		{1000, true, 4},
		{3000, true, 4},
		{3001, true, 8},
		{30000, true, 8},
		{30001, true, 0},
		{1_000_000, true, 0},
	} {
		if got := AutoSampleBuckets(tc.n, tc.compiles); got != tc.want {
			t.Errorf("AutoSampleBuckets(%d, compiles=%v) = %d, want %d", tc.n, tc.compiles, got, tc.want)
		}
	}
}

func TestResolveSampleBucketsKeepsExplicitValues(t *testing.T) {
	for _, flag := range []int{0, 1, 4, 17} {
		if got := resolveSampleBuckets(flag, 100, nil); got != flag {
			t.Errorf("resolveSampleBuckets(%d, 100, nil) = %d, want the flag", flag, got)
		}
	}
	if got := resolveSampleBuckets(AutoBuckets, 100, nil); got != 0 {
		t.Errorf("auto with no compiling engine = %d, want 0", got)
	}
}
