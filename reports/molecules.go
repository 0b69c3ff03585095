package reports

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/jobs"
	"github.com/enflow/enflow/pipeline/metrics"
	"github.com/enflow/enflow/pipeline/molview"
)

// Pictures of molecules: a page with a grid of molecules drawn by pipeline/molview (the
// first Max of a molecule table, e.g. `enflow sample` output), the stability of all of them,
// and their size and atom-type distributions against a data table and, for QM9 elements, the
// QM9 training histograms p(M) and atom types.
//
//	enflow report molecules --in qm9_samples.parquet --data data/qm9_test.parquet --out page.html

// MoleculeOptions configures GenerateMolecules.
type MoleculeOptions struct {
	Title   string    // default "enflow molecules"
	Data    string    // optional molecule table whose sizes and atom types are compared
	Max     int       // molecules drawn (default 24)
	IDs     []int64   // draw only the molecules with these ids (in table order), up to Max
	Columns int       // grid columns (default 6)
	Now     time.Time // generation time (default time.Now)
}

// MoleculePage is what the molecules template renders (and the command summarises).
type MoleculePage struct {
	Title, Source, DataSource, Generated string

	Molecules, Atoms int // in the table
	Shown            int // drawn
	DataMolecules    int

	// Stability of all molecules of the table (the pooled metric).
	StableMolecules, JudgedMolecules int64
	StableAtoms, JudgedAtoms         int64
	UncoveredMolecules               int64
	StabilityLine                    string

	Selection string // "Selected" with --ids, else "" (the first molecules)
	Grid      template.HTML
	Figures   []Figure
}

// distribution counts molecule sizes and atoms per element.
type distribution struct {
	molecules int
	sizes     map[int]int
	elements  map[int]int
	atoms     int
}

func newDistribution() *distribution {
	return &distribution{sizes: map[int]int{}, elements: map[int]int{}}
}

func (d *distribution) add(m *molecule.Molecule) {
	d.molecules++
	d.sizes[len(m.Z)]++
	for _, z := range m.Z {
		d.elements[z]++
	}
	d.atoms += len(m.Z)
}

// qm9Only reports whether every element seen is one of QM9's.
func (d *distribution) qm9Only() bool {
	for z := range d.elements {
		if molecule.TypeIndex(z) < 0 {
			return false
		}
	}
	return true
}

const scanRows = 1024

// GenerateMolecules reads the molecule table in (.parquet or .arrow, molecule/v1), and
// o.Data when set, and writes the self-contained HTML page to out (atomically).
func GenerateMolecules(ctx context.Context, in, out string, o MoleculeOptions) (*MoleculePage, error) {
	if o.Max <= 0 {
		o.Max = 24
	}
	if o.Columns <= 0 {
		o.Columns = 6
	}
	if o.Title == "" {
		o.Title = "enflow molecules"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	p := &MoleculePage{Title: o.Title, Source: in, DataSource: o.Data, Generated: o.Now.UTC().Format("2006-01-02 15:04 UTC")}
	samples := newDistribution()
	var st metrics.Stability
	var views []molview.Molecule
	want := map[int64]bool{}
	for _, id := range o.IDs {
		want[id] = true
	}
	row := 0
	err := table.ScanMolecules(in, scanRows, func(ms []molecule.Molecule) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range ms {
			m := &ms[i]
			if _, err := st.AddMolecule(m); err != nil {
				return fmt.Errorf("%s: row %d (id %d): %w", in, row, m.ID, err)
			}
			samples.add(m)
			if len(views) < o.Max && (len(o.IDs) == 0 || want[m.ID]) {
				delete(want, m.ID) // a repeated id is drawn once
				v, err := molview.FromRecord(m)
				if err != nil {
					return fmt.Errorf("%s: row %d (id %d): %w", in, row, m.ID, err)
				}
				views = append(views, v)
			}
			row++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reports: molecules: %w", err)
	}
	if samples.molecules == 0 {
		return nil, fmt.Errorf("reports: molecules: %s: no molecules", in)
	}
	if len(want) > 0 && len(views) < o.Max {
		missing := make([]int64, 0, len(want))
		for id := range want {
			missing = append(missing, id)
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("reports: molecules: %s: no molecule with id %v", in, missing)
	}
	var data *distribution
	if o.Data != "" {
		data = newDistribution()
		err := table.ScanMolecules(o.Data, scanRows, func(ms []molecule.Molecule) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := range ms {
				data.add(&ms[i])
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reports: molecules: --data: %w", err)
		}
		if data.molecules == 0 {
			return nil, fmt.Errorf("reports: molecules: %s: no molecules", o.Data)
		}
		p.DataMolecules = data.molecules
	}
	p.Molecules, p.Atoms, p.Shown = samples.molecules, samples.atoms, len(views)
	p.StableMolecules, p.JudgedMolecules = st.StableMolecules, st.Molecules
	p.StableAtoms, p.JudgedAtoms = st.StableAtoms, st.Atoms
	p.UncoveredMolecules = st.UncoveredMolecules
	p.StabilityLine = stabilityLine(&st)
	p.Grid = template.HTML(molview.Grid(views, molview.GridOptions{Columns: o.Columns, Legend: true,
		Title: fmt.Sprintf("%d molecules of %s", len(views), in)}))
	if len(o.IDs) > 0 {
		p.Selection = "Selected"
	}
	p.Figures = moleculeFigures(samples, data)

	var buf bytes.Buffer
	if err := WriteMoleculesHTML(&buf, p); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(out, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("reports: molecules: %w", err)
	}
	return p, nil
}

func stabilityLine(st *metrics.Stability) string {
	s := "no molecule could be judged (elements without valence data)"
	if st.Molecules > 0 {
		s = fmt.Sprintf("molecule stability %d/%d = %.1f%%, atom stability %d/%d = %.1f%%",
			st.StableMolecules, st.Molecules, 100*st.MolStable(), st.StableAtoms, st.Atoms, 100*st.AtomStable())
	}
	if st.UncoveredMolecules > 0 {
		s += fmt.Sprintf("; %d molecules with elements the metric does not cover were not judged", st.UncoveredMolecules)
	}
	return s
}

// moleculeFigures returns the size histogram and the atom-type bars of the samples against
// the data and, for QM9 elements, the QM9 training histograms.
func moleculeFigures(samples, data *distribution) []Figure {
	qm9 := samples.qm9Only() && (data == nil || data.qm9Only())
	lo, hi := math.MaxInt, 0
	for _, d := range []*distribution{samples, data} {
		if d == nil {
			continue
		}
		for n := range d.sizes {
			lo, hi = min(lo, n), max(hi, n)
		}
	}
	if qm9 {
		lo, hi = min(lo, 1), max(hi, molecule.MaxAtoms)
	}
	sizeSeries := func(name string, counts func(n int) float64, total float64, color string, dash, fill bool) Series {
		s := Series{Name: name, Color: color, Dash: dash, Step: true, Fill: fill, Width: 1.8}
		for n := lo; n <= hi; n++ {
			s.X = append(s.X, float64(n)-0.5)
			s.Y = append(s.Y, counts(n)/total)
		}
		return s
	}
	var series []Series
	if qm9 {
		series = append(series, sizeSeries("QM9 train p(M)", func(n int) float64 { return float64(metrics.QM9NNodes[n]) },
			metrics.QM9NNodesTotal, "#7f7f7f", true, false))
	}
	if data != nil {
		series = append(series, sizeSeries(fmt.Sprintf("data (%d)", data.molecules), func(n int) float64 { return float64(data.sizes[n]) },
			float64(data.molecules), "#1f77b4", false, false))
	}
	series = append(series, sizeSeries(fmt.Sprintf("molecules (%d)", samples.molecules), func(n int) float64 { return float64(samples.sizes[n]) },
		float64(samples.molecules), "#d62728", false, true))
	sizes := Chart{Title: "Molecule size M", XLabel: "number of atoms M", YLabel: "fraction of molecules", W: 520, H: 280,
		Series: series, XMin: float64(lo) - 0.5, XMax: float64(hi) + 0.5, YMinZero: true}

	// Atom types: the union of elements, ascending Z.
	var zs []int
	for _, d := range []*distribution{samples, data} {
		if d == nil {
			continue
		}
		for z := range d.elements {
			if !slices.Contains(zs, z) {
				zs = append(zs, z)
			}
		}
	}
	sort.Ints(zs)
	ymax := 0.0
	var groups []BarGroup
	for _, z := range zs {
		g := BarGroup{Label: molecule.Symbol(z)}
		add := func(name string, v float64, color string, hatched bool) {
			g.Bars = append(g.Bars, Bar{Name: name, Value: v, Color: color, Hatched: hatched})
			ymax = math.Max(ymax, v)
		}
		if qm9 {
			var total int64
			for _, c := range metrics.QM9AtomTypes {
				total += c
			}
			add("QM9 train", float64(metrics.QM9AtomTypes[molecule.TypeIndex(z)])/float64(total), "#7f7f7f", true)
		}
		if data != nil {
			add("data", float64(data.elements[z])/float64(data.atoms), "#1f77b4", false)
		}
		add("molecules", float64(samples.elements[z])/float64(samples.atoms), "#d62728", false)
		groups = append(groups, g)
	}
	types := BarChart{Title: "Atom types (fraction of atoms)", YLabel: "fraction of atoms", W: max(360, 90*len(zs)+80), H: 280,
		Groups: groups, YMax: math.Min(1, math.Ceil(ymax*10+1e-9)/10), Percent: true}
	return []Figure{
		{Caption: sizes.Title, SVG: sizes.SVG()},
		{Caption: types.Title, SVG: types.SVG()},
	}
}

// WriteMoleculesHTML renders the molecules page.
func WriteMoleculesHTML(w io.Writer, p *MoleculePage) error {
	t, err := template.ParseFS(templatesFS, "templates/molecules.html.tmpl")
	if err != nil {
		return fmt.Errorf("reports: parsing the molecules template: %w", err)
	}
	if err := t.Execute(w, p); err != nil {
		return fmt.Errorf("reports: rendering the molecules page: %w", err)
	}
	return nil
}

// sampleGridMax is the number of sampled molecules drawn per stability unit in the results
// report.
const sampleGridMax = 12

// errEnough stops a table scan early.
var errEnough = errors.New("enough molecules")

// sampleGrids draws the first molecules of the samples.parquet that each molecule stability
// unit of the results left in its state directory (STATE/units/<unit>/samples.parquet).
// Sources that are not state directories, and units without samples, are skipped; a samples
// file that cannot be read is an error naming it.
func sampleGrids(srcs []string, rows []jobs.Row) ([]Figure, error) {
	type unit struct{ id, dataset, model string }
	var units []unit
	seen := map[string]bool{}
	for _, r := range rows {
		if r.UnitKind != jobs.KindStability || seen[r.Unit] {
			continue
		}
		seen[r.Unit] = true
		units = append(units, unit{r.Unit, r.Dataset, r.Model})
	}
	sort.Slice(units, func(a, b int) bool { return units[a].id < units[b].id })
	var figs []Figure
	for _, src := range srcs {
		for _, u := range units {
			path := filepath.Join(src, "units", u.id, "samples.parquet")
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			var views []molview.Molecule
			row := 0
			err := table.ScanMolecules(path, sampleGridMax, func(ms []molecule.Molecule) error {
				for i := range ms {
					v, err := molview.FromRecord(&ms[i])
					if err != nil {
						return fmt.Errorf("%s: row %d (id %d): %w", path, row, ms[i].ID, err)
					}
					views = append(views, v)
					row++
					if len(views) == sampleGridMax {
						return errEnough
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, errEnough) {
				return nil, fmt.Errorf("reports: samples of unit %s: %w", u.id, err)
			}
			if len(views) == 0 {
				continue
			}
			who := modelName(u.model)
			if u.model == "" {
				who = "data"
			}
			caption := fmt.Sprintf("%s samples of %s (unit %s): the first %d", who, datasetName(u.dataset), u.id[:min(len(u.id), 12)], len(views))
			figs = append(figs, Figure{Caption: caption,
				SVG: template.HTML(molview.Grid(views, molview.GridOptions{Columns: 6, Legend: true, Title: caption}))})
		}
	}
	return figs, nil
}
