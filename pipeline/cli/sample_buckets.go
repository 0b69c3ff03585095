package cli

import (
	"github.com/gomlx/gomlx/backends"

	"github.com/enflow/enflow/gomlx_models/backend"
)

// AutoBuckets is the --buckets value of enflow sample that lets the engine and the number of
// molecules decide (see AutoSampleBuckets).
const AutoBuckets = -1

// AutoSampleBuckets returns how many padded size ranges (qm9.SampleOptions.Buckets; 0 = one
// group per size, no padding) enflow sample uses for n molecules when --buckets is -1.
//
// compiles says whether the engine compiles one graph per (molecules, atoms) shape (XLA, on CPU
// or GPU). Then a fresh run pays ≈2.7 s per shape on an idle 2-core machine (3.5–10 s on a busy
// one) and exact sizes need 15 shapes for 100 QM9 molecules, 24 for 1000 and 40 for 20,000
// (batches of 100: large size groups add a shape for their remainder), while padding costs
// compute in proportion to Σ N_pad² (with the QM9 size distribution: +36–45 % with 2 ranges,
// +12–16 % with 4, +4–5 % with 8). The thresholds minimise compile + padded compute at the
// ≈17 molecules/s of XLA CPU:
//
//	n ≤ 200:            2 ranges (100 molecules, XLA CPU, fresh process: 14.0 s; 4 ranges
//	                    20.5 s; exact sizes 55.4 s; measured 2026-12-05, load ≈ 1.8)
//	200 < n ≤ 3000:     4 ranges
//	3000 < n ≤ 30,000:  8 ranges
//	n > 30,000:         0 (compilation is amortised; exact sizes avoid the padding)
//
// An engine that does not compile (SimpleGo) gets 0: padding would only add compute.
func AutoSampleBuckets(n int, compiles bool) int {
	switch {
	case !compiles:
		return 0
	case n <= 200:
		return 2
	case n <= 3000:
		return 4
	case n <= 30000:
		return 8
	default:
		return 0
	}
}

// resolveSampleBuckets maps the --buckets flag to the number of ranges used on backend b.
func resolveSampleBuckets(flag, n int, b backends.Backend) int {
	if flag != AutoBuckets {
		return flag
	}
	return AutoSampleBuckets(n, backend.Compiles(b))
}
