package train

import (
	"fmt"
	"math"
)

// Schedule is the per-run training schedule.
type Schedule struct {
	Epochs    int // epochs to train
	TestEvery int // evaluate val/test after epoch e (0-based) when e % TestEvery == 0 (en_flows)
	Batch     int // training batch size
}

// sweep is en_flows main_dw4_lj13.py --sweep_n_data (REFERENCE §1.4).
var sweep = map[string][]struct {
	nData int
	Schedule
}{
	"dw4": {
		{100, Schedule{1000, 20, 100}},
		{1000, Schedule{300, 5, 100}},
		{10000, Schedule{50, 1, 100}},
		{100000, Schedule{6, 1, 100}},
	},
	"lj13": {
		{10, Schedule{500, 10, 10}},
		{100, Schedule{1000, 25, 100}},
		{1000, Schedule{300, 5, 100}},
		{10000, Schedule{50, 1, 100}},
	},
	// main_qm9_pos.py: the whole 19-atom train split, 1000 epochs, batch 128, tested every epoch.
	"qm9_positional": {
		{0, Schedule{1000, 1, 128}},
	},
}

// DefaultSchedule returns the paper's schedule for system and n_data. exact reports whether
// n_data is one of the sweep's values; otherwise the entry nearest in log10(n_data) is used.
func DefaultSchedule(system string, nData int) (s Schedule, exact bool, err error) {
	rows, ok := sweep[system]
	if !ok {
		return Schedule{}, false, fmt.Errorf("train: no default schedule for system %q", system)
	}
	if len(rows) == 1 && rows[0].nData == 0 { // one schedule whatever the training-set size
		return rows[0].Schedule, true, nil
	}
	if nData <= 0 {
		return Schedule{}, false, fmt.Errorf("train: n_data %d must be positive", nData)
	}
	best, bestDist := 0, math.Inf(1)
	for i, r := range rows {
		if r.nData == nData {
			return r.Schedule, true, nil
		}
		if d := math.Abs(math.Log10(float64(r.nData)) - math.Log10(float64(nData))); d < bestDist {
			best, bestDist = i, d
		}
	}
	return rows[best].Schedule, false, nil
}
