package reports

// The Boltzmann-generator section (Köhler, Klein & Noé 2020): the generalisation table (train
// and test NLL per training stage, their gap and the ESS of the final model), the metastable
// states found by minimising samples, training curves of both stages, importance-weight and
// energy histograms, the marginal of particle 1 and sampled configurations before and after
// minimisation (bgpictures.go). It is built from the units of jobs specs such as jobs/bg_*.toml:
// training units with an energy objective, a finetune stage or their own data_dir, and ess /
// states evaluations.

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/enflow/enflow/pipeline/jobs"
)

// BGSection is the "Boltzmann generators" section of the report.
type BGSection struct {
	Generalisation SimpleTable
	States         *SimpleTable // nil without states evaluations
	Curves         []Figure
	Energy         []Figure // energy histograms of samples vs data
	ESS            []Figure // energy histograms of samples, raw and importance-reweighted
	// Marginals are the marginals of particle 1 (centre of mass removed) of the samples vs the
	// training and test data; Configurations are sampled configurations before and after
	// minimisation. Both are drawn by Generate from files in the unit directories
	// (bgpictures.go); Build alone leaves them empty.
	Marginals      []Figure
	Configurations []Figure
	files          []bgFile
}

// SimpleTable is a plain table (one value per column, no paper/ours pairs).
type SimpleTable struct {
	ID      string
	Caption string
	Columns []string
	Rows    []SimpleRow
	Note    string
}

// SimpleRow is a row of a SimpleTable.
type SimpleRow struct {
	Kind  string // model kind (data-model attribute), "reference" for the source's numbers
	Ref   bool   // a reference row (numbers of the source paper)
	Cells []string
}

// KöhlerTable1 are the source's generalisation numbers (Köhler, Klein & Noé 2020, Table 1,
// DW4): train and test NLL of the non-equivariant (nBG) and the equivariant (eqBG) Boltzmann
// generator.
var KöhlerTable1 = []struct {
	Name              string
	TrainNLL, TestNLL float64
}{
	{"nBG (Köhler et al.)", -12.64, 372.69},
	{"eqBG (Köhler et al.)", 5.91, 6.72},
}

// bgTrainKeys are the keys of a training unit's spec that make it a Boltzmann-generator unit.
var bgTrainKeys = []string{"objective", "lambda", "energy", "temperature", "kl-samples", "energy-cut"}

// trainVariant is the variant of a training unit (see unitRec.variant) from its unit spec.
func trainVariant(unitSpec string) string {
	var spec map[string]any
	if json.Unmarshal([]byte(unitSpec), &spec) != nil {
		return ""
	}
	v := map[string]any{}
	for _, k := range []string{"finetune", "data_dir"} {
		if x, ok := spec[k]; ok {
			v[k] = x
		}
	}
	if tr, ok := spec["train"].(map[string]any); ok {
		for _, k := range bgTrainKeys {
			if x, ok := tr[k]; ok && !(k == "objective" && x == "ml") {
				v[k] = x
			}
		}
	}
	if len(v) == 0 {
		return ""
	}
	b, _ := json.Marshal(v) // sorted keys: canonical
	return string(b)
}

// evalVariant is the variant of an evaluation unit: its training unit's, plus the split of
// an nll evaluation on another split than test.
func evalVariant(parent, kind, unitSpec string) string {
	if kind != jobs.KindNLL {
		return parent
	}
	if split := specString(unitSpec, "split"); split != "" && split != "test" {
		return parent + "|split=" + split
	}
	return parent
}

func specString(unitSpec, key string) string {
	var spec map[string]any
	if json.Unmarshal([]byte(unitSpec), &spec) != nil {
		return ""
	}
	s, _ := spec[key].(string)
	return s
}

// stageLabel names an objective for the tables: ML, KL, ML+KL (λ …).
func stageLabel(objective, lambda string) string {
	s := strings.ToUpper(objective)
	if s == "" {
		s = "ML"
	}
	if lambda != "" && objective == "ml+kl" {
		s += " (λ " + lambda + ")"
	}
	return s
}

// bgTrain is a Boltzmann-generator training unit with its evaluations.
type bgTrain struct {
	u        *unitRec
	stages   []jobs.StageInfo // two-stage units; nil otherwise
	children map[string][]*unitRec
	dataDir  string
}

func (b *bgTrain) child(kind string, pick func(*unitRec) bool) *unitRec {
	for _, c := range b.children[kind] {
		if pick == nil || pick(c) {
			return c
		}
	}
	return nil
}

// finalStage is the label of the unit's last stage.
func (b *bgTrain) finalStage() string {
	if n := len(b.stages); n > 0 {
		return fmt.Sprintf("%d: %s", n, stageLabel(b.stages[n-1].Objective, b.stages[n-1].Lambda))
	}
	var spec map[string]any
	_ = json.Unmarshal([]byte(b.u.first.UnitSpec), &spec)
	tr, _ := spec["train"].(map[string]any)
	obj, _ := tr["objective"].(string)
	lam, _ := tr["lambda"].(string)
	return stageLabel(obj, lam)
}

func (b *bgTrain) dataLabel() string {
	f := b.u.first
	s := datasetName(f.Dataset)
	if b.dataDir != "" {
		s += " " + b.dataDir
	}
	return s + " · n=" + strconv.FormatInt(f.NData, 10)
}

// seedLabel is the data label with the seed, for tables that list every seed's unit.
func (b *bgTrain) seedLabel() string {
	return b.dataLabel() + " · seed " + strconv.FormatInt(b.u.first.Seed, 10)
}

// dimsLabel is the NLL dimension cell: the number, or "–" when unknown (NaN).
func dimsLabel(dims float64) string {
	if math.IsNaN(dims) {
		return "–"
	}
	return strconv.FormatFloat(dims, 'f', 0, 64)
}

// meanStdCell formats the mean ± std of the values of xs that are not NaN ("–" for none).
func meanStdCell(xs []float64, f format) string {
	m, sd, n := meanStd(xs)
	if n == 0 {
		return "–"
	}
	if n == 1 {
		return formatValue(m, f)
	}
	return formatValue(m, f) + " ± " + strings.TrimSuffix(formatValue(sd, f), "%")
}

func bgTrains(ix *index) []*bgTrain {
	children := map[string]map[string][]*unitRec{}
	for _, u := range ix.units {
		if p := u.first.ParentUnit; p != "" {
			if children[p] == nil {
				children[p] = map[string][]*unitRec{}
			}
			children[p][u.first.UnitKind] = append(children[p][u.first.UnitKind], u)
		}
	}
	var out []*bgTrain
	for _, u := range ix.units {
		f := u.first
		if f.UnitKind != jobs.KindTrain {
			continue
		}
		ch := children[f.Unit]
		if u.variant == "" && len(ch[jobs.KindESS]) == 0 && len(ch[jobs.KindStates]) == 0 {
			continue
		}
		b := &bgTrain{u: u, children: ch, dataDir: specString(f.UnitSpec, "data_dir")}
		if st, ok := detail[[]jobs.StageInfo](u, "stages"); ok {
			b.stages = *st
		}
		out = append(out, b)
	}
	return out
}

func bgSection(ix *index, others []string) *BGSection {
	trains := bgTrains(ix)
	var dataStates []*unitRec
	for _, u := range ix.units {
		if u.first.UnitKind == jobs.KindStates && u.first.ParentUnit == "" {
			dataStates = append(dataStates, u)
		}
	}
	if len(trains) == 0 && len(dataStates) == 0 {
		return nil
	}
	s := &BGSection{Generalisation: generalisationTable(trains)}
	if st := statesTable(trains, dataStates); len(st.Rows) > 0 {
		s.States = &st
	}
	s.Curves = bgCurves(trains, others)
	bgUnits := map[string]*bgTrain{}
	for _, b := range trains {
		bgUnits[b.u.first.Unit] = b
	}
	s.Energy = energyFiguresOf(ix, others, func(u *unitRec) bool { return bgUnits[u.first.ParentUnit] != nil },
		func(u *unitRec) string { return " · " + bgUnits[u.first.ParentUnit].finalStage() })
	s.ESS = essFigures(trains, others)
	s.files = bgFiles(trains, dataStates, others)
	return s
}

func nllCell(v float64) string { return formatValue(v, fmtNLL) }

func generalisationTable(trains []*bgTrain) SimpleTable {
	// The generalisation experiment (Köhler et al. Table 1) evaluates the NLL on the train
	// split; only then is the caption about generalisation and are the source's rows shown.
	generalisation := false
	for _, b := range trains {
		if b.child(jobs.KindNLL, func(c *unitRec) bool { return specString(c.first.UnitSpec, "split") == "train" }) != nil {
			generalisation = true
		}
	}
	caption := "Boltzmann generators — train and test NLL (nats) per training stage"
	if generalisation {
		caption = "Boltzmann generators — generalisation: train and test NLL (nats) per training stage"
	}
	t := SimpleTable{ID: "bg-generalisation", Caption: caption,
		Columns: []string{"Model", "Data", "Stage", "NLL dims", "Train NLL", "Test NLL", "Gap", "Train NLL − ½d·ln 2π", "Test NLL − ½d·ln 2π", "ESS"},
		Note: "NLLs of the non-equivariant RealNVP (nBG) are over N·D dimensions (8 for DW4), those of the mean-free " +
			"equivariant flows over (N−1)·D (6 for DW4), so the two are not directly comparable. Our NLLs include the Gaussian " +
			"prior's normaliser (E-NF convention); the columns “− ½d·ln 2π” drop it (bgflow's convention, as the source). " +
			"Final stage: train NLL from an nll evaluation on the train split, test NLL from one on the test split (else the " +
			"training unit's test NLL at the best validation epoch). Earlier stages (†): the mean training NLL of their last " +
			"epoch and their test NLL at the best validation epoch. ESS: Kish effective sample size of the importance weights " +
			"exp(−u/T)/q of the final model's samples, as a fraction of the samples drawn."}
	if generalisation {
		t.Note += " Reference rows: Köhler, Klein & Noé (2020), Table 1 (DW4)."
	}
	type finalGroup struct {
		seeds                 map[int64]int // units per seed
		dims                  float64
		train, test, gap, ess []float64
	}
	groups := map[[3]string]*finalGroup{}
	var order [][3]string
	for _, b := range trains {
		f := b.u.first
		dims := b.u.value("nll_dims")
		dimsCell := dimsLabel(dims)
		norm := func(v float64) float64 { return dropNormaliser(v, dims) }
		row := func(stage string, train, test float64, ess string, dagger bool) SimpleRow {
			tr := nllCell(train)
			if dagger && tr != "–" {
				tr += " †"
			}
			return SimpleRow{Kind: f.Model, Cells: []string{modelName(f.Model), b.seedLabel(), stage, dimsCell, tr, nllCell(test),
				nllCell(test - train), nllCell(norm(train)), nllCell(norm(test)), ess}}
		}
		for i := 0; i+1 < len(b.stages); i++ {
			st := b.stages[i]
			prefix := jobs.Stage1Prefix
			if i > 0 {
				prefix = fmt.Sprintf("stage%d_", i+1)
			}
			t.Rows = append(t.Rows, row(fmt.Sprintf("%d: %s", i+1, stageLabel(st.Objective, st.Lambda)),
				b.u.value(prefix+"last_train_nll"), b.u.value(prefix+"test_nll"), "–", true))
		}
		train, trainDagger := math.NaN(), false
		if c := b.child(jobs.KindNLL, func(c *unitRec) bool { return specString(c.first.UnitSpec, "split") == "train" }); c != nil {
			train = c.value("nll")
		} else if v := b.u.value("last_train_nll"); !math.IsNaN(v) {
			train, trainDagger = v, true
		}
		test := b.u.value("test_nll")
		if c := b.child(jobs.KindNLL, func(c *unitRec) bool {
			sp := specString(c.first.UnitSpec, "split")
			return sp == "" || sp == "test"
		}); c != nil && !math.IsNaN(c.value("nll")) {
			test = c.value("nll")
		}
		ess, essFrac := "–", math.NaN()
		if c := b.child(jobs.KindESS, nil); c != nil && !math.IsNaN(c.value("ess_fraction")) {
			essFrac = c.value("ess_fraction")
			ess = formatValue(essFrac, fmtPercent)
			if n := c.value("n_samples"); !math.IsNaN(n) {
				ess += fmt.Sprintf(" (%s of %s)", strconv.FormatFloat(c.value("ess"), 'f', 1, 64), strconv.FormatFloat(n, 'f', 0, 64))
			}
		}
		t.Rows = append(t.Rows, row(b.finalStage(), train, test, ess, trainDagger))
		key := [3]string{f.Model, b.dataLabel(), b.finalStage()}
		g, ok := groups[key]
		if !ok {
			g = &finalGroup{dims: dims, seeds: map[int64]int{}}
			groups[key] = g
			order = append(order, key)
		}
		g.seeds[f.Seed]++
		g.train, g.test, g.ess = append(g.train, train), append(g.test, test), append(g.ess, essFrac)
		g.gap = append(g.gap, test-train)
	}
	// One summary row per model, data and final stage trained with more than one seed, each
	// seed once (units of an older spec listed by --all-units are not averaged in).
	for _, key := range order {
		g := groups[key]
		once := len(g.seeds) > 1
		for _, k := range g.seeds {
			once = once && k == 1
		}
		if !once {
			continue
		}
		shift := func(xs []float64) []float64 {
			out := make([]float64, len(xs))
			for i, x := range xs {
				out[i] = dropNormaliser(x, g.dims)
			}
			return out
		}
		t.Rows = append(t.Rows, SimpleRow{Kind: key[0], Cells: []string{modelName(key[0]),
			fmt.Sprintf("%s · mean ± std over %d seeds", key[1], len(g.seeds)), key[2], dimsLabel(g.dims),
			meanStdCell(g.train, fmtNLL), meanStdCell(g.test, fmtNLL), meanStdCell(g.gap, fmtNLL),
			meanStdCell(shift(g.train), fmtNLL), meanStdCell(shift(g.test), fmtNLL), meanStdCell(g.ess, fmtPercent)}})
	}
	for _, k := range KöhlerTable1 {
		if !generalisation {
			break
		}
		t.Rows = append(t.Rows, SimpleRow{Kind: "reference", Ref: true, Cells: []string{k.Name, "DW4 (MCMC, cut in time)", "source",
			"–", formatPaper(k.TrainNLL, fmtNLL), formatPaper(k.TestNLL, fmtNLL), formatPaper(k.TestNLL-k.TrainNLL, fmtNLL), "–", "–", "–"}})
	}
	return t
}

func statesTable(trains []*bgTrain, data []*unitRec) SimpleTable {
	t := SimpleTable{ID: "bg-states", Caption: "Boltzmann generators — metastable states found by minimising samples",
		Columns: []string{"Model", "Data", "Stage", "Samples", "Converged", "Metastable states", "Stationary points", "Energies of the metastable states (count)"},
		Note: "Each sample is minimised (L-BFGS, enflow minimize); converged stationary points are clustered by sorted pair " +
			"distances and energy; a state is metastable when every non-rigid Hessian eigenvalue is positive. The data row " +
			"evaluates the training set."}
	add := func(u *unitRec, model, data, stage string) {
		energies := "–"
		if d, ok := detail[jobs.StatesDetail](u, "states_detail"); ok {
			states := append([]jobs.State(nil), d.States...)
			sort.Slice(states, func(i, j int) bool { return states[i].Energy < states[j].Energy })
			var parts []string
			for _, st := range states {
				if st.IsMinimum {
					parts = append(parts, fmt.Sprintf("%.2f (%d)", st.Energy, st.Count))
				}
			}
			if len(parts) > 0 {
				energies = strings.Join(parts, ", ")
			}
		}
		t.Rows = append(t.Rows, SimpleRow{Kind: model, Cells: []string{modelNameOr(model, u.first.Label), data, stage,
			formatValue(u.value("n_samples"), fmtCount), formatValue(u.value("converged"), fmtCount),
			formatValue(u.value("metastable_states"), fmtCount), formatValue(u.value("n_states"), fmtCount), energies}})
	}
	for _, b := range trains {
		for _, c := range b.children[jobs.KindStates] {
			add(c, b.u.first.Model, b.seedLabel(), b.finalStage())
		}
	}
	for _, u := range data {
		add(u, "data", datasetName(u.first.Dataset)+" "+u.first.Label, "–")
	}
	return t
}

func modelNameOr(model, label string) string {
	if model == "data" || model == "" {
		if label != "" {
			return label
		}
		return "data"
	}
	return modelName(model)
}

// bgCurves draws each training unit's stages one after the other (train NLL solid,
// validation NLL dashed; stage 2 continues the epoch axis).
func bgCurves(trains []*bgTrain, others []string) []Figure {
	var figs []Figure
	for _, b := range trains {
		f := b.u.first
		color := modelColor(f.Model, others)
		var series []Series
		offset := 0.0
		add := func(c *jobs.Curve, name string, dash bool) {
			x := make([]float64, len(c.Epoch))
			for i, e := range c.Epoch {
				x[i] = float64(e) + offset
			}
			var vx, vy []float64
			for i, v := range ptrs(c.ValNLL) {
				if !math.IsNaN(v) && i < len(x) {
					vx, vy = append(vx, x[i]), append(vy, v)
				}
			}
			w := 1.5
			if dash {
				w = 2.5
			}
			series = append(series, Series{Name: name, X: x, Y: ptrs(c.TrainNLL), Color: color, Width: w},
				Series{X: vx, Y: vy, Color: color, Dash: true, Markers: true})
			if len(x) > 0 {
				offset = x[len(x)-1] + 1
			}
		}
		stages := []string{jobs.Stage1Prefix + "curve", "curve"}
		if len(b.stages) == 0 {
			stages = []string{"curve"}
		}
		for i, m := range stages {
			c, ok := detail[jobs.Curve](b.u, m)
			if !ok || len(c.Epoch) == 0 {
				continue
			}
			name := b.finalStage()
			if i < len(b.stages) {
				name = fmt.Sprintf("%d: %s", i+1, stageLabel(b.stages[i].Objective, b.stages[i].Lambda))
			}
			add(c, name, i > 0)
		}
		if len(series) == 0 {
			continue
		}
		title := fmt.Sprintf("%s · %s · seed %d", modelName(f.Model), b.dataLabel(), f.Seed)
		ch := Chart{Title: title, XLabel: "epoch (stages in sequence)", YLabel: "NLL (nats)", W: 410, H: 270, Series: series,
			Note: "thin: stage 1, thick: stage 2 (train NLL); dashed with dots: validation NLL"}
		figs = append(figs, Figure{Caption: title, SVG: ch.SVG()})
	}
	return figs
}

// essHistogram is the u_histogram of enflow metrics ess (in ess_detail).
type essHistogram struct {
	Lo         float64   `json:"lo"`
	Hi         float64   `json:"hi"`
	Samples    []float64 `json:"mass_samples"`
	Reweighted []float64 `json:"mass_reweighted"`
}

func essFigures(trains []*bgTrain, others []string) []Figure {
	var figs []Figure
	for _, b := range trains {
		for _, c := range b.children[jobs.KindESS] {
			d, ok := detail[struct {
				Temperature float64       `json:"temperature"`
				Histogram   *essHistogram `json:"u_histogram"`
			}](c, "ess_detail")
			if !ok || d.Histogram == nil {
				continue
			}
			h := d.Histogram
			n := len(h.Samples)
			if n == 0 || len(h.Reweighted) != n || !(h.Hi > h.Lo) {
				continue
			}
			width := (h.Hi - h.Lo) / float64(n)
			x := make([]float64, n)
			dens := func(m []float64) []float64 {
				out := make([]float64, n)
				for i, v := range m {
					out[i] = v / width
				}
				return out
			}
			for i := range x {
				x[i] = h.Lo + float64(i)*width
			}
			f := b.u.first
			title := fmt.Sprintf("%s · %s · %s", modelName(f.Model), b.seedLabel(), b.finalStage())
			ch := Chart{Title: title, XLabel: "energy u", YLabel: "density", W: 410, H: 250, XMin: h.Lo, XMax: h.Hi, YMinZero: true,
				Note: fmt.Sprintf("ESS %s; reweighted by exp(−u/T)/q, T = %g", formatValue(c.value("ess_fraction"), fmtPercent), d.Temperature),
				Series: []Series{
					{Name: "reweighted", X: x, Y: dens(h.Reweighted), Color: "#555", Step: true, Fill: true},
					{Name: "samples", X: x, Y: dens(h.Samples), Color: sampleColor(f.Model, others), Step: true, Width: 2},
				}}
			figs = append(figs, Figure{Caption: title, SVG: ch.SVG()})
		}
	}
	return figs
}
