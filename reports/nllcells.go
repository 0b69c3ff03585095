package reports

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// NLL conventions of the training NLL cells (Tables 1 and 3). Papers differ: E-NF (and DEM)
// include the normaliser ½·d·ln 2π of the d-dimensional Gaussian prior, bgflow-based work
// (Köhler et al.) drops it.
const (
	withNormaliser    = "test_nll"                    // the paper's convention
	withoutNormaliser = "test_nll_without_normaliser" // the bgflow convention
)

// nll is the unit's test NLL in the convention metric (withNormaliser or withoutNormaliser).
// Rows recorded before both conventions were stored have nll_dims at most: the value without
// the normaliser is then derived from it (NaN when neither is there).
func (u *unitRec) nll(metric string) float64 {
	v := u.value(metric)
	if metric != withoutNormaliser || !math.IsNaN(v) {
		return v
	}
	if d := u.value("nll_dims"); d > 0 {
		return dropNormaliser(u.value(withNormaliser), d)
	}
	return math.NaN()
}

// dropNormaliser drops the Gaussian normaliser ½·d·ln 2π of a d-dimensional prior from an
// NLL (NaN when d is unknown).
func dropNormaliser(nll, dims float64) float64 {
	if math.IsNaN(dims) {
		return math.NaN()
	}
	return nll - 0.5*dims*math.Log(2*math.Pi)
}

// epochs returns the epochs the unit completed (NaN unknown) and the epochs of the paper's
// schedule for its dataset and n_data — the run's own plan (run.json) when the paper has none.
func (u *unitRec) epochs() (done float64, protocol int) {
	protocol = protocolEpochs(u.first.Dataset, u.first.NData)
	if protocol == 0 {
		protocol = u.planned
	}
	return u.value("epochs"), protocol
}

// nllCell is a training-NLL cell of Tables 1 and 3 in the convention metric: ours is the
// mean ± std over the finished units' seeds, or, when no unit of the cell has finished, over
// its partial ones (interrupted mid-run or still running: the test NLL at their best
// validation epoch so far), marked "*". Info always gives the number of seeds and the epochs
// completed of the paper's schedule, e.g. "1 seed, 441/1000 ep.".
func (ix *index) nllCell(paper float64, kind, dataset, model, label string, nData int64, metric string, f format) Cell {
	of := func(partial bool) agg {
		return ix.aggregateOf(kind, dataset, model, label, nData, func(u *unitRec) float64 {
			if u.partial != partial {
				return math.NaN()
			}
			return u.nll(metric)
		})
	}
	done, part := of(false), of(true)
	a := done
	if a.n == 0 {
		a = part
	}
	c := cell(paper, a, f, true)
	if a.n == 0 {
		return c
	}
	c.Ours = formatValue(a.mean, fmtNLL)
	if a.n > 1 {
		c.Ours += " ± " + formatValue(a.std, fmtNLL)
	}
	info := plural(a.n, "seed")
	if done.n > 0 && part.n > 0 {
		info += fmt.Sprintf(" + %d partial", part.n)
	}
	if done.n == 0 {
		c.Mark = "*"
	}
	if fr := fraction(a.recs); fr != "" {
		info += ", " + fr
	}
	c.Info = info
	c.Title += "; " + unitEpochs(a.recs)
	if done.n > 0 && part.n > 0 {
		c.Title += "; not in the mean, without results yet: " + unitEpochs(part.recs)
	}
	return c
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// fraction is "c/p ep." for the units' completed and protocol epochs ("c1/p, c2/p ep." when
// they differ; "c ep." without a protocol; "" when no unit knows its epochs).
func fraction(recs []*unitRec) string {
	var parts []string
	known := false
	for _, u := range recs {
		done, protocol := u.epochs()
		s := "?"
		if !math.IsNaN(done) {
			s, known = strconv.FormatFloat(done, 'f', 0, 64), true
		}
		if protocol > 0 {
			s += "/" + strconv.Itoa(protocol)
		}
		parts = append(parts, s)
	}
	if !known {
		return ""
	}
	same := true
	for _, p := range parts[1:] {
		same = same && p == parts[0]
	}
	if same {
		return parts[0] + " ep."
	}
	return strings.Join(parts, ", ") + " ep."
}

// unitEpochs describes each unit's progress for a tooltip: "unit U: 441 of 1000 epochs
// (partial, best validation epoch 440)".
func unitEpochs(recs []*unitRec) string {
	var out []string
	for _, u := range recs {
		done, protocol := u.epochs()
		s := "unit " + u.first.Unit + ": "
		if math.IsNaN(done) {
			s += "epochs unknown"
		} else {
			s += strconv.FormatFloat(done, 'f', 0, 64) + " epochs"
		}
		if protocol > 0 {
			s += fmt.Sprintf(" of the paper's %d", protocol)
		}
		if u.planned > 0 && u.planned != protocol {
			s += fmt.Sprintf(" (the run planned %d)", u.planned)
		}
		if u.partial {
			s += ", partial: no results yet"
			if b := u.value("best_epoch"); !math.IsNaN(b) {
				s += fmt.Sprintf(", best validation epoch %.0f so far", b)
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// partialNote is the table-note sentence on partial cells ("" when the table has none).
func partialNote(t TableView) string {
	for _, r := range t.Rows {
		for _, c := range r.Cells {
			if c.Mark != "" {
				return " * partial: no unit of the cell has finished; the number is the test NLL at the best " +
					"validation epoch so far of a run interrupted mid-run (or still running), read from its " +
					"run/metrics.csv, with the epochs it has completed."
			}
		}
	}
	return ""
}
