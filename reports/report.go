// Package reports rebuilds the paper's tables and figures from the job runner's results table
// (pipeline/jobs, schema results/v1): an HTML page with the paper's Tables 1–3 side by side
// with our numbers, training curves, energy histograms of particle samples, relative-distance
// histograms and stability bars for QM9 (all plots inline SVG, no scripts), and the same
// tables in Markdown. Cells without results show "–".
//
//	enflow report --results out/jobs/table1_dw4 --out report.html --md report.md
//
// When several units measured the same cell (same dataset, model, n_data and seed, e.g. after
// a code change), the most recently recorded one is used; cells average over seeds and show
// "mean ± std (k seeds)". Units a state directory's manifests no longer list (stale: their spec
// was edited and run again, see pipeline/jobs manifest.go) are left out unless
// Options.AllUnits, and the report says how many.
//
// The NLL cells of Tables 1 and 3 show both conventions (with the Gaussian prior's normaliser,
// as the paper, and without it, as bgflow-based work), the number of seeds and the epochs
// completed of the paper's schedule. A training unit of a state directory that has no result
// yet (interrupted mid-run by a budget, or still running) fills its cell from its
// run/metrics.csv — the test NLL at its best validation epoch so far — marked partial ("*").
package reports

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/pipeline/jobs"

	"gonum.org/v1/gonum/stat"
)

//go:embed templates/*.tmpl
var templatesFS embed.FS

// Options configures Build.
type Options struct {
	Title  string    // default "enflow results"
	Source string    // where the results came from (shown)
	Now    time.Time // generation time (default time.Now)
	// AllUnits makes Generate include stale units: units of a spec with a manifest in their
	// state directory that are not in it (see jobs.SplitStale). By default they are left out.
	AllUnits bool
}

// Cell is one "paper | ours" pair of a table.
type Cell struct {
	Paper  string // "–" when the paper has no number
	Ours   string // "–" when we have no result
	Mark   string // "*": a partial result (units without results yet, see nllCell), else ""
	Info   string // NLL cells: seeds and protocol fraction, e.g. "1 seed, 441/1000 ep."
	Title  string // tooltip: seeds, units
	Filled bool   // we have a result
	Class  string // "better" / "worse" than the paper (lower NLL, higher stability), or ""
}

// TableRow is a row of a table view.
type TableRow struct {
	Name  string
	Kind  string
	Extra bool // a model the paper does not have
	Cells []Cell
}

// TableView is a table: a caption, one or two header rows and rows of cells.
type TableView struct {
	ID      string
	Caption string
	Groups  []HeaderGroup // first header row (column groups)
	Columns []string      // second header row: one name per Cell column
	Rows    []TableRow
	Note    string
	// DataNotes say, per column group, which data the cells used and what was published
	// for those data.
	DataNotes []string
	// Restates is the ID of the table whose cells this one shows in another NLL convention
	// ("" for the paper's tables).
	Restates string
}

// FlatColumns are the column names prefixed by their group (for one-row headers).
func (t TableView) FlatColumns() []string {
	if len(t.Groups) == 0 {
		return t.Columns
	}
	out := make([]string, 0, len(t.Columns))
	i := 0
	for _, g := range t.Groups {
		for k := 0; k < g.Span && i < len(t.Columns); k++ {
			out = append(out, g.Name+" "+t.Columns[i])
			i++
		}
	}
	return append(out, t.Columns[i:]...)
}

// HeaderGroup spans Span cell columns; each cell is two table columns (paper, ours), so
// Cols = 2·Span.
type HeaderGroup struct {
	Name string
	Span int
	Cols int
}

// Figure is one inline SVG plot.
type Figure struct {
	Caption string
	SVG     template.HTML
}

// UnitRow is one line of the units table.
type UnitRow struct {
	Unit, Spec, Kind, Dataset, Model string
	NData, Seed                      string
	Main                             string
	WallS                            string
	Attempt                          int64
	Resumed                          bool
	Host, GitRev, Backend, Recorded  string
	Stale                            bool // a stale unit shown because of Options.AllUnits
	Partial                          bool // a training unit without results yet (see nllCell)
}

// Report is everything the templates render.
type Report struct {
	Title     string
	Source    string
	Generated string
	Rows      int
	Units     int
	// PartialUnits counts the training units without results shown from their run
	// directories (interrupted mid-run or still running).
	PartialUnits int
	Specs        []string
	GitRevs      []string
	Tables       []TableView
	Curves       []Figure
	Energy       []Figure
	Distances    []Figure
	Stability    []Figure
	Molecules    []Figure // grids of sampled molecules (stability units that kept samples.parquet)
	// BG is the Boltzmann-generator section (nil without such results).
	BG       *BGSection
	UnitRows []UnitRow
	// StaleUnits and StaleRows count the units (and their result rows) that are not in the
	// latest expansion of their spec: left out, or included when AllUnits (Generate).
	StaleUnits, StaleRows int
	AllUnits              bool
}

// FilledCells counts the table cells with our results (a table restating another's cells in
// the other NLL convention is not counted again).
func (r *Report) FilledCells() int {
	n := 0
	for _, t := range r.Tables {
		if t.Restates != "" {
			continue
		}
		for _, row := range t.Rows {
			for _, c := range row.Cells {
				if c.Filled {
					n++
				}
			}
		}
	}
	return n
}

// StaleNote is the report's sentence about stale units ("" when there are none).
func (r *Report) StaleNote() string {
	if r.StaleUnits == 0 {
		return ""
	}
	what := fmt.Sprintf("%d result rows of %d stale units (not in their spec's latest jobs run: the spec, its data or "+
		"the code changed since they ran)", r.StaleRows, r.StaleUnits)
	if r.AllUnits {
		return "Included with --all-units: " + what + "; they are marked stale under Units."
	}
	return "Left out: " + what + "; enflow report --all-units includes them, enflow jobs prune SPEC moves them aside."
}

// unitRec gathers one unit's rows.
type unitRec struct {
	first    jobs.Row
	metrics  map[string]jobs.Row
	recorded time.Time
	// variant tells units apart that share kind, dataset, model, n_data and seed but measure
	// something else: Boltzmann-generator training (objective, finetune stage, own data_dir)
	// and evaluations of such units, nll on another split. "" for the paper's protocol.
	variant string
	// partial marks a training unit without a results part, read from its run directory
	// (stateRuns): its metrics are the best validation epoch so far.
	partial bool
	// planned is the number of epochs the unit's run planned (run.json; 0 unknown).
	planned int
}

func (u *unitRec) value(metric string) float64 {
	if r, ok := u.metrics[metric]; ok {
		return r.Value
	}
	return math.NaN()
}

// cellKey identifies what a unit measures; the latest unit per key wins.
type cellKey struct {
	kind, dataset, model, label string
	nData, seed                 int64
	variant                     string
}

// index is the results organised for lookups.
type index struct {
	units  []*unitRec           // latest per cellKey, sorted
	byKey  map[cellKey]*unitRec // latest per cellKey
	models []string             // model kinds seen (train units), paper order first
}

// buildIndex organises rows and the partial training units (units without results, read
// from their run directories) for lookups; planned gives the epochs each run planned.
func buildIndex(rows []jobs.Row, runs stateRuns) *index {
	byUnit := map[string]*unitRec{}
	var order []string
	for _, u := range runs.partial {
		if _, dup := byUnit[u.first.Unit]; !dup {
			byUnit[u.first.Unit] = u
			order = append(order, u.first.Unit)
		}
	}
	for _, r := range rows {
		u, ok := byUnit[r.Unit]
		if !ok {
			u = &unitRec{first: r, metrics: map[string]jobs.Row{}}
			byUnit[r.Unit] = u
			order = append(order, r.Unit)
		}
		if prev, ok := u.metrics[r.Metric]; !ok || !r.RecordedAt.Before(prev.RecordedAt) {
			u.metrics[r.Metric] = r
		}
		if r.RecordedAt.After(u.recorded) {
			u.recorded = r.RecordedAt
		}
	}
	for id, u := range byUnit {
		u.planned = runs.planned[id]
	}
	for _, id := range order { // training units first: evaluations inherit their variant
		if u := byUnit[id]; u.first.UnitKind == jobs.KindTrain {
			u.variant = trainVariant(u.first.UnitSpec)
		}
	}
	for _, id := range order {
		if u := byUnit[id]; u.first.UnitKind != jobs.KindTrain {
			parent := ""
			if p, ok := byUnit[u.first.ParentUnit]; ok {
				parent = p.variant
			}
			u.variant = evalVariant(parent, u.first.UnitKind, u.first.UnitSpec)
		}
	}
	ix := &index{byKey: map[cellKey]*unitRec{}}
	for _, id := range order {
		u := byUnit[id]
		f := u.first
		k := cellKey{f.UnitKind, f.Dataset, f.Model, f.Label, f.NData, f.Seed, u.variant}
		if prev, ok := ix.byKey[k]; !ok || u.recorded.After(prev.recorded) {
			ix.byKey[k] = u
		}
	}
	for _, u := range ix.byKey {
		ix.units = append(ix.units, u)
	}
	sort.Slice(ix.units, func(i, j int) bool {
		a, b := ix.units[i].first, ix.units[j].first
		for _, c := range []int{
			strings.Compare(a.Dataset, b.Dataset), cmpInt(a.NData, b.NData), strings.Compare(modelOrder(a.Model), modelOrder(b.Model)),
			cmpInt(a.Seed, b.Seed), strings.Compare(kindOrder(a.UnitKind), kindOrder(b.UnitKind)), strings.Compare(a.Label, b.Label),
		} {
			if c != 0 {
				return c < 0
			}
		}
		return a.Unit < b.Unit
	})
	seen := map[string]bool{}
	for _, u := range ix.units {
		if m := u.first.Model; m != "" && !seen[m] {
			seen[m] = true
			ix.models = append(ix.models, m)
		}
	}
	sort.Slice(ix.models, func(i, j int) bool { return modelOrder(ix.models[i]) < modelOrder(ix.models[j]) })
	return ix
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func modelOrder(m string) string {
	for i, pm := range paperModels {
		if pm.Kind == m {
			return fmt.Sprintf("0%02d", i)
		}
	}
	return "1" + m
}

func kindOrder(k string) string {
	switch k {
	case jobs.KindTrain:
		return "0"
	case jobs.KindNLL:
		return "1"
	}
	return "2" + k
}

// modelName is the paper's name of a model kind (the kind itself otherwise).
func modelName(kind string) string {
	for _, m := range paperModels {
		if m.Kind == kind {
			return m.Name
		}
	}
	switch kind {
	case "gaussian":
		return "Gaussian (stand-in)"
	case "realnvp":
		return "RealNVP (nBG)"
	}
	return kind
}

// modelColor is a stable colour per model kind.
func modelColor(kind string, others []string) string {
	for _, m := range paperModels {
		if m.Kind == kind {
			return m.Color
		}
	}
	for i, o := range others {
		if o == kind {
			return otherColors[i%len(otherColors)]
		}
	}
	return "#333"
}

// sampleColor is the model's colour, or blue for data rows (the reference is grey).
func sampleColor(model string, others []string) string {
	if model == "" {
		return "#1f77b4"
	}
	return modelColor(model, others)
}

// agg is the mean, std and count of a metric over seeds for units matching the filter.
type agg struct {
	mean, std float64
	n         int
	seeds     []int64
	units     []string
	recs      []*unitRec
}

// aggregate averages metric over the finished units (not partial) of the paper's protocol
// matching kind, dataset, model, label and n_data (nData < 0: any).
func (ix *index) aggregate(kind, dataset, model, label string, nData int64, metric string) agg {
	return ix.aggregateOf(kind, dataset, model, label, nData, func(u *unitRec) float64 {
		if u.partial {
			return math.NaN()
		}
		return u.value(metric)
	})
}

// aggregateOf averages value over the units of the paper's protocol matching kind, dataset,
// model, label and n_data (nData < 0: any); units whose value is NaN are left out.
func (ix *index) aggregateOf(kind, dataset, model, label string, nData int64, value func(*unitRec) float64) agg {
	var a agg
	var vals []float64
	for _, u := range ix.units {
		f := u.first
		if u.variant != "" || f.UnitKind != kind || f.Dataset != dataset || f.Model != model || f.Label != label || (nData >= 0 && f.NData != nData) {
			continue
		}
		v := value(u)
		if math.IsNaN(v) {
			continue
		}
		vals = append(vals, v)
		a.seeds = append(a.seeds, f.Seed)
		a.units = append(a.units, f.Unit)
		a.recs = append(a.recs, u)
	}
	a.mean, a.std, a.n = meanStd(vals)
	return a
}

// meanStd is the sample mean and standard deviation (n−1; 0 for one value) of the values of
// xs that are not NaN, and how many there were (NaN, NaN, 0 for none).
func meanStd(xs []float64) (mean, std float64, n int) {
	vals := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			vals = append(vals, x)
		}
	}
	switch len(vals) {
	case 0:
		return math.NaN(), math.NaN(), 0
	case 1:
		return vals[0], 0, 1
	}
	mean, std = stat.MeanStdDev(vals, nil)
	return mean, std, len(vals)
}

// largestNData returns the largest n_data of matching units (−1: none; 0: standalone units).
func (ix *index) largestNData(kind, dataset, model, label string) int64 {
	best := int64(-1)
	for _, u := range ix.units {
		f := u.first
		if u.variant == "" && f.UnitKind == kind && f.Dataset == dataset && f.Model == model && f.Label == label && f.NData > best {
			best = f.NData
		}
	}
	return best
}

// Value formats.
type format int

const (
	fmtNLL  format = iota // 2 decimals (Table 1)
	fmtNLL1               // paper numbers of Tables 2 and 3: 1 decimal (ours keep 2)
	fmtPercent
	fmtJS
	fmtCount // integers
)

func formatValue(v float64, f format) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch f {
	case fmtPercent:
		return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
	case fmtCount:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case fmtJS:
		if math.Abs(v) >= 1e-3 {
			return strconv.FormatFloat(v, 'f', 3, 64)
		}
		return strconv.FormatFloat(v, 'e', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// formatPaper prints a paper number with the paper's own precision (shortest form).
func formatPaper(v float64, f format) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case f == fmtPercent:
		return strconv.FormatFloat(math.Round(v*1000)/10, 'f', -1, 64) + "%"
	case f == fmtJS:
		return formatValue(v, f)
	case f == fmtNLL1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// cell builds a paper/ours cell. lowerBetter decides the colouring.
func cell(paper float64, a agg, f format, lowerBetter bool) Cell {
	c := Cell{Paper: formatPaper(paper, f), Ours: formatValue(a.mean, f)}
	if f == fmtNLL1 {
		f = fmtNLL
		c.Ours = formatValue(a.mean, f)
	}
	if a.n == 0 {
		return c
	}
	c.Filled = true
	if a.n > 1 {
		c.Ours += " ± " + strings.TrimSuffix(formatValue(a.std, f), "%")
		c.Ours += fmt.Sprintf(" (%d)", a.n)
	}
	seeds := make([]string, len(a.seeds))
	for i, s := range a.seeds {
		seeds[i] = strconv.FormatInt(s, 10)
	}
	c.Title = fmt.Sprintf("seeds %s; units %s", strings.Join(seeds, ", "), strings.Join(a.units, ", "))
	if !math.IsNaN(paper) {
		if (a.mean < paper) == lowerBetter {
			c.Class = "better"
		} else {
			c.Class = "worse"
		}
	}
	return c
}

// Build organises rows into a Report.
func Build(rows []jobs.Row, o Options) *Report {
	return build(rows, stateRuns{}, o)
}

// build is Build with what the state directories' unit directories add (Generate).
func build(rows []jobs.Row, runs stateRuns, o Options) *Report {
	if o.Title == "" {
		o.Title = "enflow results"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	ix := buildIndex(rows, runs)
	r := &Report{Title: o.Title, Source: o.Source, Generated: o.Now.UTC().Format("2006-01-02 15:04 UTC"), Rows: len(rows)}
	specs, revs, units := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, row := range rows {
		specs[row.SpecName] = true
		units[row.Unit] = true
		if row.GitRev != "" {
			revs[shortRev(row.GitRev)] = true
		}
	}
	r.Units = len(units)
	r.Specs, r.GitRevs = sortedKeys(specs), sortedKeys(revs)
	var others []string
	for _, m := range ix.models {
		if modelOrder(m)[0] == '1' {
			others = append(others, m)
		}
	}
	r.Tables = []TableView{table1(ix, others, withNormaliser), table1(ix, others, withoutNormaliser), table2(ix, others), table3(ix, others)}
	r.Curves = curveFigures(ix, others)
	r.Energy = energyFigures(ix, others)
	r.BG = bgSection(ix, others)
	r.Distances = distanceFigures(ix, others)
	r.Stability = stabilityFigures(ix, others)
	for _, u := range ix.units {
		f := u.first
		row := UnitRow{Unit: f.Unit, Spec: f.SpecName, Kind: f.UnitKind, Dataset: datasetName(f.Dataset),
			Model: modelName(f.Model), NData: "–", Seed: "–", Main: mainValue(u), WallS: formatValue(f.WallS, fmtNLL),
			Attempt: f.Attempt, Resumed: f.Resumed, Host: f.Host, GitRev: shortRev(f.GitRev), Backend: f.Backend,
			Recorded: u.recorded.UTC().Format("2006-01-02 15:04")}
		if f.Model == "" {
			row.Model = f.Label
		}
		if u.partial {
			r.PartialUnits++
			row.Partial, row.WallS, row.Recorded = true, "–", u.recorded.UTC().Format("2006-01-02 15:04")+" (metrics.csv)"
			row.Main = "no result yet; best-validation " + row.Main
			if fr := fraction([]*unitRec{u}); fr != "" {
				row.Main += " after " + fr
			}
		}
		if f.NData > 0 {
			row.NData = strconv.FormatInt(f.NData, 10)
		}
		if f.Seed >= 0 {
			row.Seed = strconv.FormatInt(f.Seed, 10)
		}
		r.UnitRows = append(r.UnitRows, row)
	}
	return r
}

func shortRev(rev string) string {
	if len(rev) > 10 {
		return rev[:10]
	}
	return rev
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func mainValue(u *unitRec) string {
	pick := func(metric string, f format) string {
		v := u.value(metric)
		if math.IsNaN(v) {
			return ""
		}
		return metric + " " + formatValue(v, f)
	}
	switch u.first.UnitKind {
	case jobs.KindTrain:
		return pick("test_nll", fmtNLL)
	case jobs.KindNLL:
		return pick("nll", fmtNLL)
	case jobs.KindEnergy:
		s := pick("mean_energy", fmtNLL)
		if d := pick("data_mean_energy", fmtNLL); d != "" {
			s += " (data " + strings.TrimPrefix(d, "data_mean_energy ") + ")"
		}
		return s
	case jobs.KindStability:
		return strings.TrimSpace(pick("atom_stable", fmtPercent) + " " + pick("mol_stable", fmtPercent))
	case jobs.KindJS:
		return pick("js", fmtJS)
	case jobs.KindESS:
		return pick("ess_fraction", fmtPercent)
	case jobs.KindStates:
		return pick("metastable_states", fmtCount)
	}
	return ""
}

// table1 is the paper's Table 1 in an NLL convention: withNormaliser (the paper's) or
// withoutNormaliser, whose paper numbers are the paper's minus the normaliser.
func table1(ix *index, others []string, metric string) TableView {
	t := TableView{ID: "table1", Caption: "Table 1 — test NLL (nats) on DW4 and LJ13 by number of training samples",
		Note: "Ours: test NLL at the epoch of best validation NLL (REFERENCE §1.4), with the Gaussian prior's normaliser " +
			"as in the paper, mean ± std over seeds, then the number of seeds and the epochs completed of the " +
			"paper's schedule for that n_data (DW4 1000/300/50/6, LJ13 500/1000/300/50). Green: lower than the paper; " +
			"red: higher. The same numbers without the normaliser follow. Other training-set sizes are listed under Units."}
	if metric == withoutNormaliser {
		var offs []string
		for _, ds := range Table1Datasets {
			offs = append(offs, datasetName(ds)+" "+formatValue(gaussianNormaliser(ds), fmtNLL))
		}
		t.ID, t.Restates = "table1-without-normaliser", "table1"
		t.Caption = "Table 1 without the Gaussian normaliser — test NLL (nats) minus ½·(N−1)·D·ln 2π (the bgflow convention)"
		t.Note = "The convention of bgflow-based work (e.g. Köhler, Klein & Noé 2020): the NLL without the normaliser ½·(N−1)·D·ln 2π of " +
			"the mean-free Gaussian prior (" + strings.Join(offs, ", ") + " nats). The paper's numbers here are converted " +
			"by us: its Table 1 minus that constant, which is exact. Ours: test_nll_without_normaliser of the same " +
			"units as above; seeds, epochs, colours and data as there."
	}
	for _, ds := range Table1Datasets {
		t.Groups = append(t.Groups, HeaderGroup{Name: datasetName(ds), Span: len(Table1Sizes[ds]), Cols: 2 * len(Table1Sizes[ds])})
		for _, n := range Table1Sizes[ds] {
			t.Columns = append(t.Columns, sizeLabel(n))
		}
		if metric == withNormaliser {
			d := Table1Data[ds]
			t.DataNotes = append(t.DataNotes, datasetName(ds)+" data: "+d.Data+" "+d.Published)
		}
	}
	addRow := func(kind string, extra bool) {
		row := TableRow{Name: modelName(kind), Kind: kind, Extra: extra}
		for _, ds := range Table1Datasets {
			for i, n := range Table1Sizes[ds] {
				paper := math.NaN()
				if p, ok := Table1[kind][ds]; ok {
					paper = p[i]
					if metric == withoutNormaliser {
						paper -= gaussianNormaliser(ds)
					}
				}
				row.Cells = append(row.Cells, ix.nllCell(paper, jobs.KindTrain, ds, kind, "", n, metric, fmtNLL))
			}
		}
		t.Rows = append(t.Rows, row)
	}
	for _, m := range paperModels {
		addRow(m.Kind, false)
	}
	for _, m := range others {
		for _, ds := range Table1Datasets {
			if ix.largestNData(jobs.KindTrain, ds, m, "") > 0 {
				addRow(m, true)
				break
			}
		}
	}
	t.Note += partialNote(t)
	return t
}

func sizeLabel(n int64) string {
	switch n {
	case 10:
		return "10"
	case 100:
		return "10²"
	case 1000:
		return "10³"
	case 10000:
		return "10⁴"
	case 100000:
		return "10⁵"
	}
	return strconv.FormatInt(n, 10)
}

func table2(ix *index, others []string) TableView {
	t := TableView{ID: "table2", Caption: "Table 2 — QM9: NLL −log p(x, h, M), atom and molecule stability",
		Columns: []string{"NLL", "atom stable", "mol stable"},
		Note:    "Ours: NLL of the trained model; stability of its samples (REFERENCE §3.1); the Data row evaluates the QM9 test split."}
	add := func(kind, name string, p Table2Row, extra bool) {
		row := TableRow{Name: name, Kind: kind, Extra: extra}
		model, label := kind, ""
		if kind == "data" {
			model, label = "", "data"
		}
		nNLL := ix.largestNData(jobs.KindTrain, "qm9", model, label)
		nSt := ix.largestNData(jobs.KindStability, "qm9", model, label)
		row.Cells = []Cell{
			cell(p.NLL, ix.aggregate(jobs.KindTrain, "qm9", model, label, nNLL, "test_nll"), fmtNLL1, true),
			cell(p.AtomStable, ix.aggregate(jobs.KindStability, "qm9", model, label, nSt, "atom_stable"), fmtPercent, false),
			cell(p.MolStable, ix.aggregate(jobs.KindStability, "qm9", model, label, nSt, "mol_stable"), fmtPercent, false),
		}
		t.Rows = append(t.Rows, row)
	}
	for _, p := range Table2 {
		add(p.Kind, p.Name, p, false)
	}
	nan := Table2Row{NLL: math.NaN(), AtomStable: math.NaN(), MolStable: math.NaN()}
	for _, m := range others {
		if ix.largestNData(jobs.KindTrain, "qm9", m, "") >= 0 || ix.largestNData(jobs.KindStability, "qm9", m, "") >= 0 {
			add(m, modelName(m), nan, true)
		}
	}
	return t
}

func table3(ix *index, others []string) TableView {
	t := TableView{ID: "table3", Caption: "Table 3 — QM9 Positional: NLL and JS divergence of relative distances",
		Columns: []string{"NLL", "JS(rel. dist)", "NLL w/o normaliser"},
		Note: fmt.Sprintf("NLL: test NLL at the epoch of best validation NLL, with the Gaussian prior's normaliser as the "+
			"paper, then the number of seeds and the epochs completed of the paper's 1000. NLL w/o normaliser: "+
			"the same without ½·(N−1)·D·ln 2π = %s nats (the bgflow convention; the paper's number converted by us). "+
			"JS against analyzed_19 (REFERENCE §3.2). The Data row evaluates the real 19-atom test molecules "+
			"(reference value %s).", formatValue(gaussianNormaliser("qm9-positional"), fmtNLL), formatValue(ReferenceJSData, fmtJS))}
	ds := "qm9-positional"
	add := func(kind, name string, nll, js float64, extra bool) {
		row := TableRow{Name: name, Kind: kind, Extra: extra}
		model, label := kind, ""
		if kind == "data" {
			model, label = "", "data"
		}
		nNLL := ix.largestNData(jobs.KindTrain, ds, model, label)
		nJS := ix.largestNData(jobs.KindJS, ds, model, label)
		row.Cells = []Cell{
			ix.nllCell(nll, jobs.KindTrain, ds, model, label, nNLL, withNormaliser, fmtNLL1),
			cell(js, ix.aggregate(jobs.KindJS, ds, model, label, nJS, "js"), fmtJS, true),
			ix.nllCell(nll-gaussianNormaliser(ds), jobs.KindTrain, ds, model, label, nNLL, withoutNormaliser, fmtNLL1),
		}
		t.Rows = append(t.Rows, row)
	}
	for _, p := range Table3 {
		add(p.Kind, p.Name, p.NLL, p.JS, false)
	}
	for _, m := range others {
		if ix.largestNData(jobs.KindTrain, ds, m, "") >= 0 || ix.largestNData(jobs.KindJS, ds, m, "") >= 0 {
			add(m, modelName(m), math.NaN(), math.NaN(), true)
		}
	}
	if ix.largestNData(jobs.KindJS, ds, "", "data") >= 0 {
		add("data", "Data (test split)", math.NaN(), math.NaN(), true)
	}
	var small []string
	var kinds []string
	for _, pm := range paperModels {
		kinds = append(kinds, pm.Kind)
	}
	for _, m := range append(kinds, others...) {
		if n := ix.largestNData(jobs.KindTrain, ds, m, ""); n > 0 && n < Table3TrainMolecules {
			small = append(small, fmt.Sprintf("%s %d", modelName(m), n))
		}
	}
	if len(small) > 0 {
		t.DataNotes = append(t.DataNotes, fmt.Sprintf("QM9 Positional data: some of our cells were trained on fewer "+
			"molecules than the paper's %d (the 19-atom molecules of the full QM9 train split): %s training molecules, "+
			"e.g. the shipped test split carved into train/valid/test by `etl qm9 --positional-resplit` — not the "+
			"paper's split, so their NLL and JS are not comparable to the paper's numbers.",
			Table3TrainMolecules, strings.Join(small, ", ")))
	}
	t.Note += partialNote(t)
	return t
}

// Table3TrainMolecules is the size of the paper's QM9 Positional training set: the 19-atom
// molecules of the full QM9 train split (main_qm9_pos.py).
const Table3TrainMolecules = 13832

func detail[T any](u *unitRec, metric string) (*T, bool) {
	r, ok := u.metrics[metric]
	if !ok || r.Detail == "" {
		return nil, false
	}
	v := new(T)
	if err := json.Unmarshal([]byte(r.Detail), v); err != nil {
		return nil, false
	}
	return v, true
}

func ptrs(xs []*float64) []float64 {
	out := make([]float64, len(xs))
	for i, p := range xs {
		if p == nil {
			out[i] = math.NaN()
		} else {
			out[i] = *p
		}
	}
	return out
}

func curveFigures(ix *index, others []string) []Figure {
	bg := map[string]bool{}
	for _, b := range bgTrains(ix) {
		bg[b.u.first.Unit] = true
	}
	type group struct {
		ds    string
		nData int64
	}
	var order []group
	series := map[group][]Series{}
	seeds := map[group]map[string]int{}
	for _, u := range ix.units {
		f := u.first
		if f.UnitKind != jobs.KindTrain || bg[f.Unit] { // Boltzmann generators: their own section
			continue
		}
		c, ok := detail[jobs.Curve](u, "curve")
		if !ok || len(c.Epoch) == 0 {
			continue
		}
		g := group{f.Dataset, f.NData}
		if _, ok := series[g]; !ok {
			order = append(order, g)
			seeds[g] = map[string]int{}
		}
		seeds[g][f.Model]++
		x := make([]float64, len(c.Epoch))
		for i, e := range c.Epoch {
			x[i] = float64(e)
		}
		color := modelColor(f.Model, others)
		name := modelName(f.Model)
		if seeds[g][f.Model] > 1 {
			name = "" // one legend entry per model
		}
		// Validation runs every test-every epochs: connect the evaluated epochs only.
		var vx, vy []float64
		for i, v := range ptrs(c.ValNLL) {
			if !math.IsNaN(v) && i < len(x) {
				vx, vy = append(vx, x[i]), append(vy, v)
			}
		}
		series[g] = append(series[g],
			Series{Name: name, X: x, Y: ptrs(c.TrainNLL), Color: color},
			Series{X: vx, Y: vy, Color: color, Dash: true, Markers: true})
	}
	var figs []Figure
	for _, g := range order {
		ch := Chart{Title: fmt.Sprintf("%s, n_data = %d", datasetName(g.ds), g.nData), XLabel: "epoch", YLabel: "NLL (nats)",
			W: 410, H: 270, Series: series[g], Note: "solid: train NLL; dashed with dots: validation NLL"}
		figs = append(figs, Figure{Caption: ch.Title, SVG: ch.SVG()})
	}
	return figs
}

func energyFigures(ix *index, others []string) []Figure {
	bg := map[string]bool{} // Boltzmann-generator training units: their own section
	for _, b := range bgTrains(ix) {
		bg[b.u.first.Unit] = true
	}
	return energyFiguresOf(ix, others, func(u *unitRec) bool { return u.variant == "" && !bg[u.first.ParentUnit] }, nil)
}

// energyFiguresOf draws the energy histograms of the energy units keep accepts; suffix, if
// not nil, extends a figure's title.
func energyFiguresOf(ix *index, others []string, keep func(*unitRec) bool, suffix func(*unitRec) string) []Figure {
	var figs []Figure
	for _, u := range ix.units {
		f := u.first
		if f.UnitKind != jobs.KindEnergy || !keep(u) {
			continue
		}
		h, ok := detail[jobs.EnergyHistogram](u, "energy_hist")
		if !ok || h.Bins <= 0 || len(h.Samples) != h.Bins || len(h.Data) != h.Bins || !(h.Hi > h.Lo) {
			continue
		}
		width := (h.Hi - h.Lo) / float64(h.Bins)
		x := make([]float64, h.Bins)
		for i := range x {
			x[i] = h.Lo + float64(i)*width
		}
		density := func(c []int64, extra int64) []float64 {
			total := extra
			for _, v := range c {
				total += v
			}
			out := make([]float64, len(c))
			for i, v := range c {
				if total > 0 {
					out[i] = float64(v) / float64(total) / width
				}
			}
			return out
		}
		who := modelName(f.Model)
		if f.Model == "" {
			who = f.Label
		}
		title := fmt.Sprintf("%s · %s", datasetName(f.Dataset), who)
		if f.NData > 0 {
			title += fmt.Sprintf(" · n=%d", f.NData)
		}
		if f.Seed >= 0 {
			title += fmt.Sprintf(" · seed %d", f.Seed)
		}
		if suffix != nil {
			title += suffix(u)
		}
		ch := Chart{Title: title, XLabel: "energy", YLabel: "density", W: 410, H: 250, XMin: h.Lo, XMax: h.Hi, YMinZero: true,
			Note: fmt.Sprintf("samples outside the range: %d below, %d above, %d non-finite",
				h.SamplesUnder, h.SamplesOver, h.SamplesNonFinite),
			Series: []Series{
				{Name: "data (test)", X: x, Y: density(h.Data, h.DataUnder+h.DataOver), Color: "#555", Step: true, Fill: true},
				{Name: "samples", X: x, Y: density(h.Samples, h.SamplesUnder+h.SamplesOver+h.SamplesNonFinite),
					Color: sampleColor(f.Model, others), Step: true, Width: 2},
			}}
		figs = append(figs, Figure{Caption: title, SVG: ch.SVG()})
	}
	return figs
}

func distanceFigures(ix *index, others []string) []Figure {
	var figs []Figure
	for _, u := range ix.units {
		f := u.first
		if f.UnitKind != jobs.KindJS {
			continue
		}
		h, ok := detail[jobs.DistanceHistograms](u, "distance_hist")
		if !ok || h.Bins <= 0 || len(h.Samples) != h.Bins || len(h.Reference) != h.Bins {
			continue
		}
		width := h.Max / float64(h.Bins)
		x := make([]float64, h.Bins)
		for i := range x {
			x[i] = float64(i) * width
		}
		norm := func(c []int64) []float64 {
			var t int64
			for _, v := range c {
				t += v
			}
			out := make([]float64, len(c))
			for i, v := range c {
				if t > 0 {
					out[i] = float64(v) / float64(t) / width
				}
			}
			return out
		}
		who := modelName(f.Model)
		if f.Model == "" {
			who = f.Label
		}
		title := fmt.Sprintf("%s · %s", datasetName(f.Dataset), who)
		ch := Chart{Title: title, XLabel: "relative distance (Å)", YLabel: "density", W: 410, H: 250, XMin: 0, XMax: h.Max,
			YMinZero: true, Note: fmt.Sprintf("JS %s vs %s", formatValue(u.value("js"), fmtJS), h.RefName),
			Series: []Series{
				{Name: "reference", X: x, Y: norm(h.Reference), Color: "#555", Step: true, Fill: true},
				{Name: who, X: x, Y: norm(h.Samples), Color: sampleColor(f.Model, others), Step: true, Width: 2},
			}}
		figs = append(figs, Figure{Caption: title, SVG: ch.SVG()})
	}
	return figs
}

func stabilityFigures(ix *index, others []string) []Figure {
	var groups []BarGroup
	have := false
	kinds := []string{}
	names := map[string]string{}
	paper := map[string]Table2Row{}
	for _, p := range Table2 {
		kinds = append(kinds, p.Kind)
		names[p.Kind] = p.Name
		paper[p.Kind] = p
	}
	for _, m := range others {
		kinds = append(kinds, m)
		names[m] = modelName(m)
		paper[m] = Table2Row{AtomStable: math.NaN(), MolStable: math.NaN()}
	}
	for _, k := range kinds {
		model, label := k, ""
		if k == "data" {
			model, label = "", "data"
		}
		n := ix.largestNData(jobs.KindStability, "qm9", model, label)
		atom := ix.aggregate(jobs.KindStability, "qm9", model, label, n, "atom_stable")
		mol := ix.aggregate(jobs.KindStability, "qm9", model, label, n, "mol_stable")
		if atom.n > 0 {
			have = true
		}
		p := paper[k]
		if atom.n == 0 && math.IsNaN(p.AtomStable) {
			continue
		}
		name := names[k]
		if k == "data" {
			name = "Data"
		}
		groups = append(groups, BarGroup{Label: shortName(name), Bars: []Bar{
			{Name: "atom (paper)", Value: p.AtomStable, Color: "#1f77b4", Hatched: true},
			{Name: "atom (ours)", Value: atom.mean, Color: "#1f77b4"},
			{Name: "molecule (paper)", Value: p.MolStable, Color: "#ff7f0e", Hatched: true},
			{Name: "molecule (ours)", Value: mol.mean, Color: "#ff7f0e"},
		}})
	}
	if !have {
		return nil
	}
	ch := BarChart{Title: "QM9 stability: paper vs ours", YLabel: "stable", W: 620, H: 280, Groups: groups, YMax: 1, Percent: true}
	return []Figure{{Caption: ch.Title, SVG: ch.SVG()}}
}

func shortName(s string) string {
	s = strings.ReplaceAll(s, "GNF-attention-augmentation", "GNF-att-aug")
	return strings.ReplaceAll(s, "GNF-attention", "GNF-att")
}

// WriteHTML renders the report as a self-contained HTML page.
func WriteHTML(w io.Writer, r *Report) error {
	t, err := template.New("report.html.tmpl").Funcs(template.FuncMap{"inc": func(i int) int { return i + 1 }}).
		ParseFS(templatesFS, "templates/report.html.tmpl")
	if err != nil {
		return fmt.Errorf("reports: parsing the HTML template: %w", err)
	}
	if err := t.Execute(w, r); err != nil {
		return fmt.Errorf("reports: rendering HTML: %w", err)
	}
	return nil
}

// WriteMarkdown renders the tables (and the units) as GitHub-flavoured Markdown.
func WriteMarkdown(w io.Writer, r *Report) error {
	t, err := newTextTemplate().ParseFS(templatesFS, "templates/report.md.tmpl")
	if err != nil {
		return fmt.Errorf("reports: parsing the Markdown template: %w", err)
	}
	if err := t.Execute(w, r); err != nil {
		return fmt.Errorf("reports: rendering Markdown: %w", err)
	}
	return nil
}

func newTextTemplate() *texttemplate.Template {
	return texttemplate.New("report.md.tmpl").Funcs(texttemplate.FuncMap{
		"md": func(s string) string { return strings.ReplaceAll(s, "|", "\\|") },
		"repeat": func(s string, n int) string {
			return strings.Repeat(s, max(n, 0))
		},
	})
}

// Generate reads the results at srcs (state directories, results directories or results
// files, see jobs.ResolveResults; e.g. the state directories of table1_dw4 and table1_lj13
// together) and writes the HTML report to htmlOut and, if mdOut is not "", the Markdown to
// mdOut (both atomically). Units of a state directory that are not in the manifest of their
// spec (stale: the spec changed since they ran) are left out unless o.AllUnits; the report
// says how many (Report.StaleNote). State directories without manifests show every unit.
func Generate(srcs []string, htmlOut, mdOut string, o Options) (*Report, error) {
	if len(srcs) == 0 {
		return nil, fmt.Errorf("reports: no results given")
	}
	var rows, staleRows, all []jobs.Row
	for _, src := range srcs {
		cur, stale, err := jobs.ReadCurrentResults(src)
		if err != nil {
			return nil, fmt.Errorf("reports: %w", err)
		}
		rows = append(rows, cur...)
		staleRows = append(staleRows, stale...)
		all = append(all, cur...)
		all = append(all, stale...)
	}
	stale := jobs.StaleOf(staleRows)
	if o.AllUnits {
		rows = append(rows, staleRows...)
	}
	if o.Source == "" {
		o.Source = strings.Join(srcs, ", ")
	}
	finished := map[string]bool{}
	for _, row := range all {
		finished[row.Unit] = true
	}
	runs := stateRuns{planned: map[string]int{}}
	seenState := map[string]bool{}
	for _, src := range srcs {
		if state := jobs.StateDirOf(src); state != "" && !seenState[state] {
			seenState[state] = true
			if err := readStateRuns(state, finished, o.AllUnits, &runs); err != nil {
				return nil, err
			}
		}
	}
	r := build(rows, runs, o)
	r.StaleUnits, r.StaleRows, r.AllUnits = len(stale.Units), stale.Rows, o.AllUnits
	if o.AllUnits {
		isStale := map[string]bool{}
		for _, id := range stale.Units {
			isStale[id] = true
		}
		for i := range r.UnitRows {
			r.UnitRows[i].Stale = isStale[r.UnitRows[i].Unit]
		}
	}
	grids, err := sampleGrids(srcs, rows)
	if err != nil {
		return nil, err
	}
	r.Molecules = grids
	if r.BG != nil {
		if err := r.BG.loadFiles(srcs); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(htmlOut, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("reports: %w", err)
	}
	if mdOut != "" {
		buf.Reset()
		if err := WriteMarkdown(&buf, r); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(mdOut, buf.Bytes()); err != nil {
			return nil, fmt.Errorf("reports: %w", err)
		}
	}
	return r, nil
}
