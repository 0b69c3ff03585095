package reports

// The Boltzmann-generator figures drawn from the small files the evaluations write in their
// unit directories (Köhler, Klein & Noé 2020, Figure 1 b, d and f–h): the marginal of
// particle 1 (ess evaluations, jobs.MarginalFileName) and sampled configurations before and
// after minimisation (states evaluations, jobs.ConfigurationsFileName). Units whose detail
// names no such file (results written before it existed), or whose unit directory is not
// next to the results read (a results file on its own), have no such figure.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/enflow/enflow/pipeline/jobs"
)

// bgFile is a figure of the Boltzmann-generator section to draw from a file of a unit
// directory.
type bgFile struct {
	unit  string // unit ID
	name  string // file name in the unit directory
	kind  string // jobs.KindESS (marginal) or jobs.KindStates (configurations)
	title string // the unit: model, data, stage (captions)
	short string // model and stage (figure titles)
	model string
	color string
}

// bgFiles lists the file figures of the evaluations of trains and of the standalone states
// units data.
func bgFiles(trains []*bgTrain, data []*unitRec, others []string) []bgFile {
	var out []bgFile
	for _, b := range trains {
		f := b.u.first
		title := fmt.Sprintf("%s · %s · %s", modelName(f.Model), b.seedLabel(), b.finalStage())
		short := fmt.Sprintf("%s · %s", modelName(f.Model), b.finalStage())
		for _, c := range b.children[jobs.KindESS] {
			if d, ok := detail[jobs.ESSDetail](c, "ess_detail"); ok && d.Marginal != "" {
				out = append(out, bgFile{unit: c.first.Unit, name: d.Marginal, kind: jobs.KindESS, title: title, short: short,
					model: f.Model, color: sampleColor(f.Model, others)})
			}
		}
		for _, c := range b.children[jobs.KindStates] {
			if d, ok := detail[jobs.StatesDetail](c, "states_detail"); ok && d.Configurations != "" {
				out = append(out, bgFile{unit: c.first.Unit, name: d.Configurations, kind: jobs.KindStates, title: title, short: short,
					model: f.Model, color: sampleColor(f.Model, others)})
			}
		}
	}
	for _, u := range data {
		if d, ok := detail[jobs.StatesDetail](u, "states_detail"); ok && d.Configurations != "" {
			title := datasetName(u.first.Dataset) + " " + modelNameOr("data", u.first.Label)
			out = append(out, bgFile{unit: u.first.Unit, name: d.Configurations, kind: jobs.KindStates,
				title: title, short: title, color: sampleColor("", others)})
		}
	}
	return out
}

// unitFile finds a unit's file next to the results at one of srcs (a state directory, or its
// results directory): "" when there is none. Names other than a plain file name are refused.
func unitFile(srcs []string, unit, name string) string {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." || unit == "" || unit != filepath.Base(unit) {
		return ""
	}
	for _, src := range srcs {
		dirs := []string{src}
		if filepath.Base(filepath.Clean(src)) == jobs.ResultsDirName {
			dirs = append(dirs, filepath.Dir(filepath.Clean(src)))
		}
		for _, d := range dirs {
			p := filepath.Join(d, "units", unit, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return p
			}
		}
	}
	return ""
}

// loadFiles draws the section's file figures from the unit directories next to srcs.
func (s *BGSection) loadFiles(srcs []string) error {
	for _, f := range s.files {
		path := unitFile(srcs, f.unit, f.name)
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reports: %w", err)
		}
		switch f.kind {
		case jobs.KindESS:
			var m jobs.MarginalHistograms
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("reports: decoding %s: %w", path, err)
			}
			figs, err := marginalFigures(&m, f)
			if err != nil {
				return fmt.Errorf("reports: %s: %w", path, err)
			}
			s.Marginals = append(s.Marginals, figs...)
		case jobs.KindStates:
			var c jobs.StateConfigurations
			if err := json.Unmarshal(b, &c); err != nil {
				return fmt.Errorf("reports: decoding %s: %w", path, err)
			}
			fig, err := configurationFigure(&c, f)
			if err != nil {
				return fmt.Errorf("reports: %s: %w", path, err)
			}
			s.Configurations = append(s.Configurations, fig)
		}
	}
	return nil
}

// marginalStyle draws the training split blue and filled, the test split dashed and the
// samples in the model's colour.
func marginalStyle(name, color string) Series {
	switch name {
	case "train":
		return Series{Name: "training data", Color: "#1f77b4", Step: true, Fill: true}
	case "test":
		return Series{Name: "test data", Color: "#222", Step: true, Dash: true}
	}
	return Series{Name: "flow samples", Color: color, Step: true, Width: 2}
}

func marginalFigures(m *jobs.MarginalHistograms, f bgFile) ([]Figure, error) {
	var figs []Figure
	for _, c := range m.Coords {
		if c.Bins <= 0 || !(c.Hi > c.Lo) || math.IsInf(c.Lo, 0) || math.IsInf(c.Hi, 0) {
			return nil, fmt.Errorf("coordinate %q: bad bins %d over [%v, %v)", c.Name, c.Bins, c.Lo, c.Hi)
		}
		width := (c.Hi - c.Lo) / float64(c.Bins)
		x := make([]float64, c.Bins)
		for i := range x {
			x[i] = c.Lo + float64(i)*width
		}
		what, axis := "coordinate "+c.Name+" of x₁ − x̄", c.Name+"₁ − "+c.Name+"̄"
		if c.Name == "r" {
			what, axis = "distance ‖x₁ − x̄‖", "‖x₁ − x̄‖"
		}
		var series, samples []Series
		var outside []string
		for _, s := range c.Series {
			if len(s.Counts) != c.Bins {
				return nil, fmt.Errorf("coordinate %q, %s: %d counts for %d bins", c.Name, s.Name, len(s.Counts), c.Bins)
			}
			st := marginalStyle(s.Name, f.color)
			st.X, st.Y = x, make([]float64, c.Bins)
			for i, v := range s.Counts {
				if s.N > 0 {
					st.Y[i] = float64(v) / float64(s.N) / width
				}
			}
			if s.Name == "samples" {
				samples = append(samples, st) // drawn last, on top
			} else {
				series = append(series, st)
			}
			if out := s.Under + s.Over + s.NonFinite; out > 0 {
				outside = append(outside, fmt.Sprintf("%s %d of %d", strings.TrimSuffix(st.Name, " data"), out, s.N))
			}
		}
		note := "outside the range: none"
		if len(outside) > 0 {
			note = "outside the range: " + strings.Join(outside, ", ")
		}
		title := f.title + " — " + c.Name
		ch := Chart{Title: f.short + " — " + c.Name, XLabel: axis, YLabel: "density", W: 410, H: 250, XMin: c.Lo, XMax: c.Hi, YMinZero: true,
			Note: note, Series: append(series, samples...)}
		n := "the samples"
		for _, s := range c.Series {
			if s.Name == "samples" {
				n = strconv.FormatInt(s.N, 10) + " flow samples"
			}
		}
		caption := fmt.Sprintf("%s: marginal of the %s (particle 1 = the first particle of each row, centre of mass removed) "+
			"of %s vs the training and test splits; densities normalised by all configurations of each set", title, what, n)
		figs = append(figs, Figure{Caption: caption, SVG: ch.SVG()})
	}
	return figs, nil
}

// energyLabel formats an energy for a picture label ("–" for none).
func energyLabel(u *float64) string {
	if u == nil {
		return "u = –"
	}
	if a := math.Abs(*u); a >= 1e4 {
		return "u = " + strconv.FormatFloat(*u, 'e', 2, 64)
	}
	return "u = " + strconv.FormatFloat(*u, 'f', 2, 64)
}

// picture projects a flattened configuration on its first two coordinates.
func picture(pos []float64, dim int, label string) (ParticlePicture, error) {
	p := ParticlePicture{Label: label}
	if len(pos) == 0 {
		return p, nil
	}
	if dim < 2 || len(pos)%dim != 0 {
		return p, fmt.Errorf("%d coordinates are not configurations of dimension %d", len(pos), dim)
	}
	for i := 0; i < len(pos); i += dim {
		if math.IsNaN(pos[i]) || math.IsNaN(pos[i+1]) || math.IsInf(pos[i], 0) || math.IsInf(pos[i+1], 0) {
			return ParticlePicture{Label: label}, nil
		}
		p.X, p.Y = append(p.X, pos[i]), append(p.Y, pos[i+1])
	}
	return p, nil
}

func configurationFigure(c *jobs.StateConfigurations, f bgFile) (Figure, error) {
	var cols []string
	var top, bottom []ParticlePicture
	add := func(name string, p jobs.ConfigPair, isTraining bool) error {
		before, err := picture(p.Before, c.Dim, energyLabel(p.EnergyBefore))
		if err != nil {
			return err
		}
		label := energyLabel(p.EnergyAfter)
		switch {
		case len(p.After) == 0:
			label = "not minimised"
		case p.StateID >= 0 && p.IsMinimum:
			label += fmt.Sprintf(" · state %d", p.StateID)
		case p.StateID >= 0:
			label += fmt.Sprintf(" · state %d (saddle)", p.StateID)
		case isTraining && p.IsMinimum:
			label += " · minimum"
		}
		after, err := picture(p.After, c.Dim, label)
		if err != nil {
			return err
		}
		cols, top, bottom = append(cols, name), append(top, before), append(bottom, after)
		return nil
	}
	if c.Training != nil {
		if err := add("training data", *c.Training, true); err != nil {
			return Figure{}, err
		}
	}
	for i, p := range c.Samples {
		if err := add(fmt.Sprintf("sample %d", i+1), p, false); err != nil {
			return Figure{}, err
		}
	}
	if len(cols) == 0 {
		return Figure{}, errors.New("no configurations")
	}
	proj := ""
	if c.Dim > 2 {
		proj = fmt.Sprintf("; projected on the first two of the %d coordinates", c.Dim)
	}
	g := ParticleGrid{Title: f.short, Note: fmt.Sprintf("energy %s; particle 1 dark%s", c.Energy, proj),
		Columns: cols, Rows: []string{"sampled", "minimised"}, Cells: [][]ParticlePicture{top, bottom}, Cell: 118,
		Color: f.color, Highlight: 0}
	src := "samples"
	if c.Training != nil {
		src = "the first training configuration and samples"
	}
	caption := fmt.Sprintf("%s: %s (top, %d particles, centre of mass at the middle of each picture%s) and the same "+
		"configurations after minimisation (bottom, L-BFGS as in enflow minimize; state = the metastable state it reached), "+
		"each labelled with its energy u (%s). Samples: %s", f.title, src, c.Particles, proj, c.Energy, c.Selection)
	return Figure{Caption: caption, SVG: g.SVG()}, nil
}
