package jobs

// Small figure data the Boltzmann-generator evaluations write next to their results, for the
// report's pictures (Köhler, Klein & Noé 2020, Figure 1): the ess evaluation's marginal of
// the first particle's position (samples vs the training and test splits) and the states
// evaluation's few sampled configurations before and after minimisation. Both are small JSON
// files in the unit directory (histogram counts and a handful of configurations, never the
// samples themselves), named in the evaluation's detail metric; result folders without them
// (older runs) simply have no such figure.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/pipeline/minimize"
)

// File names in a unit directory.
const (
	// MarginalFileName is the ess evaluation's marginal of particle 1 (a MarginalHistograms).
	MarginalFileName = "marginal_x1.json"
	// ConfigurationsFileName is the states evaluation's pictured configurations (a
	// StateConfigurations).
	ConfigurationsFileName = "configurations.json"
)

// defaultMarginalBins is the number of bins of the marginal histograms when the evaluation
// sets no bins.
const defaultMarginalBins = 40

// MarginalCentring says what the marginal histograms bin.
const MarginalCentring = "x_1 − x̄: the first particle's position minus the centre of mass (1/N)·Σ_i x_i"

// MarginalHistograms is the content of MarginalFileName: histograms of the first particle's
// position relative to the centre of mass, x_1 − x̄ (each Cartesian coordinate and its
// length r = ‖x_1 − x̄‖), of the flow samples and of the training and test splits over the
// same bins. Removing the centre of mass makes the marginals of the non-equivariant flow
// (on all N·D coordinates) and of the mean-free flows comparable.
type MarginalHistograms struct {
	System    string               `json:"system"`
	Particles int                  `json:"particles"`
	Dim       int                  `json:"dim"`
	Particle  int                  `json:"particle"` // 0: the first particle of each row
	Centring  string               `json:"centring"`
	Coords    []MarginalCoordinate `json:"coordinates"`
}

// MarginalCoordinate is the histogram of one coordinate of x_1 − x̄ ("x", "y", "z") or of its
// length ("r") over the bins [Lo, Hi).
type MarginalCoordinate struct {
	Name   string           `json:"name"`
	Lo     float64          `json:"lo"`
	Hi     float64          `json:"hi"`
	Bins   int              `json:"bins"`
	Series []MarginalSeries `json:"series"`
}

// MarginalSeries is the histogram of one set of configurations: N = Σ Counts + Under + Over
// + NonFinite.
type MarginalSeries struct {
	Name      string  `json:"name"`   // samples, train, test
	Source    string  `json:"source"` // the table's file name
	N         int64   `json:"n"`
	Counts    []int64 `json:"counts"`
	Under     int64   `json:"under"`
	Over      int64   `json:"over"`
	NonFinite int64   `json:"non_finite"`
}

// particle1Values returns, for every configuration of the table at path (its first limit rows
// when limit > 0), the coordinates of x_1 − x̄ followed by ‖x_1 − x̄‖ (NaN when a
// coordinate is not finite).
func particle1Values(ctx context.Context, sys particles.System, path string, limit int) ([][]float64, error) {
	d, np := sys.Dim, sys.Particles
	vals := make([][]float64, d+1)
	rows := 0
	errEnough := errors.New("enough")
	err := table.ScanConfigs(path, 0, func(cs []particles.Config) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range cs {
			c := &cs[i]
			if c.System != "" && c.System != sys.Name {
				return fmt.Errorf("row %d (id %d) is %s, want %s", rows, c.ID, c.System, sys.Name)
			}
			if len(c.Positions) != sys.Flat() {
				return fmt.Errorf("row %d (id %d) has %d coordinates, want %d", rows, c.ID, len(c.Positions), sys.Flat())
			}
			r2 := 0.0
			for k := range d {
				mean := 0.0
				for p := range np {
					mean += c.Positions[p*d+k]
				}
				v := c.Positions[k] - mean/float64(np)
				vals[k] = append(vals[k], v)
				r2 += v * v
			}
			vals[d] = append(vals[d], math.Sqrt(r2))
			rows++
			if limit > 0 && rows >= limit {
				return errEnough
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("jobs: positions of %s: %w", path, err)
	}
	if rows == 0 {
		return nil, fmt.Errorf("jobs: %s has no configurations", path)
	}
	return vals, nil
}

// coordNames names the coordinates of x_1 − x̄ and its length.
func coordNames(dim int) []string {
	names := []string{"x", "y", "z"}
	if dim > len(names) {
		names = nil
		for k := range dim {
			names = append(names, fmt.Sprintf("x%d", k+1))
		}
	}
	return append(names[:dim:dim], "r")
}

// marginalRange is the binned range of one coordinate: the central 99 % of the reference
// values (the samples' when there are none) widened by 10 % on each side, symmetric about 0
// for a Cartesian coordinate (the mean-free marginals are centred) and from 0 for the length.
func marginalRange(ref []float64, radial bool) (lo, hi float64) {
	fin, _ := finite(ref)
	if len(fin) == 0 {
		return -1, 1
	}
	sort.Float64s(fin)
	lo, hi = quantile(fin, 0.005), quantile(fin, 0.995)
	pad := 0.1 * (hi - lo)
	lo, hi = lo-pad, hi+pad
	if radial {
		lo = 0
	} else {
		a := math.Max(math.Abs(lo), math.Abs(hi))
		lo, hi = -a, a
	}
	if !(hi > lo) {
		lo, hi = lo-1, hi+1
	}
	return lo, hi
}

func histogramSeries(name, source string, xs []float64, lo, hi float64, bins int) MarginalSeries {
	s := MarginalSeries{Name: name, Source: source, N: int64(len(xs)), Counts: make([]int64, bins)}
	for _, x := range xs {
		switch {
		case math.IsNaN(x) || math.IsInf(x, 0):
			s.NonFinite++
		case x < lo:
			s.Under++
		case x >= hi:
			s.Over++
		default:
			s.Counts[min(int((x-lo)/(hi-lo)*float64(bins)), bins-1)]++
		}
	}
	return s
}

// Particle1Marginal histograms x_1 − x̄ of the configurations in samplesPath (its first limit
// rows when limit > 0) and of the training and test splits in dataDir (those of the splits
// that exist; a missing split is left out) with bins bins per coordinate.
func Particle1Marginal(ctx context.Context, ds, samplesPath, dataDir string, limit, bins int) (*MarginalHistograms, error) {
	sys, err := particles.SystemByName(ds)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if bins <= 0 {
		bins = defaultMarginalBins
	}
	type set struct {
		name, path string
		vals       [][]float64
	}
	samples, err := particle1Values(ctx, sys, samplesPath, limit)
	if err != nil {
		return nil, err
	}
	sets := []set{{"samples", samplesPath, samples}}
	for _, split := range []string{"train", "test"} {
		if dataDir == "" {
			break
		}
		path := filepath.Join(dataDir, ds+"_"+split+".parquet")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		v, err := particle1Values(ctx, sys, path, 0)
		if err != nil {
			return nil, err
		}
		sets = append(sets, set{split, path, v})
	}
	m := &MarginalHistograms{System: sys.Name, Particles: sys.Particles, Dim: sys.Dim, Centring: MarginalCentring}
	for k, name := range coordNames(sys.Dim) {
		var ref []float64
		for _, s := range sets[1:] {
			ref = append(ref, s.vals[k]...)
		}
		if len(ref) == 0 {
			ref = samples[k]
		}
		lo, hi := marginalRange(ref, k == sys.Dim)
		c := MarginalCoordinate{Name: name, Lo: lo, Hi: hi, Bins: bins}
		for _, s := range sets {
			c.Series = append(c.Series, histogramSeries(s.name, filepath.Base(s.path), s.vals[k], lo, hi, bins))
		}
		m.Coords = append(m.Coords, c)
	}
	return m, nil
}

// StateConfigurations is the content of ConfigurationsFileName: a few sampled configurations
// of a states evaluation before and after minimisation and, for an evaluation of a training
// unit, the first configuration of its training split and its minimum.
type StateConfigurations struct {
	System    string `json:"system"`
	Energy    string `json:"energy"` // the energy minimised and reported
	Particles int    `json:"particles"`
	Dim       int    `json:"dim"`
	// Selection says how Samples were chosen.
	Selection string       `json:"selection"`
	Samples   []ConfigPair `json:"samples"`
	Training  *ConfigPair  `json:"training,omitempty"`
}

// ConfigPair is one configuration (positions flattened particle-major, as in the tables)
// before and after minimisation. Energies are null when not finite; After is empty when the
// minimisation failed.
type ConfigPair struct {
	Source       string    `json:"source"` // the table's file name
	Row          int       `json:"row"`
	ID           int64     `json:"id"`
	Before       []float64 `json:"before"`
	EnergyBefore *float64  `json:"energy_before"`
	After        []float64 `json:"after,omitempty"`
	EnergyAfter  *float64  `json:"energy_after"`
	StateID      int64     `json:"state_id"` // the state of the minimum (−1: none or not clustered)
	IsMinimum    bool      `json:"is_minimum"`
}

// pictured is the number of sampled configurations a states evaluation keeps for pictures.
const pictured = 4

// finitePtr is &v, or nil when v is not finite (JSON has no NaN).
func finitePtr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func allFinite(xs []float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return len(xs) > 0
}

// PictureConfigurations picks up to k configurations of samplesPath with their minimised
// counterparts in minimaPath (enflow minimize output: the first rows of samplesPath, in order,
// with state_id): the first sample of each distinct state in ascending state order (metastable
// states first), then further samples in row order, skipping samples with non-finite
// coordinates. When trainPath is not "", its first configuration is minimised here (with the
// same energy and default tolerances as enflow minimize) and kept as Training.
func PictureConfigurations(ctx context.Context, ds, energyName, samplesPath, minimaPath, trainPath string, states []State, k int) (*StateConfigurations, error) {
	sys, err := energy.ForSystem(ds, energyName)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	minima, _, err := table.ReadConfigRecords(minimaPath)
	if err != nil {
		return nil, fmt.Errorf("jobs: minimised samples %s: %w", minimaPath, err)
	}
	if len(minima) == 0 {
		return nil, fmt.Errorf("jobs: minimised samples %s: no configurations", minimaPath)
	}
	before := make([]particles.Config, 0, len(minima))
	errEnough := errors.New("enough")
	err = table.ScanConfigs(samplesPath, 0, func(cs []particles.Config) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range cs {
			before = append(before, cs[i])
			if len(before) == len(minima) {
				return errEnough
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("jobs: samples %s: %w", samplesPath, err)
	}
	if len(before) != len(minima) {
		return nil, fmt.Errorf("jobs: %s has %d rows, %s %d: not its minimisation", samplesPath, len(before), minimaPath, len(minima))
	}
	isMin := map[int64]bool{}
	for _, s := range states {
		isMin[int64(s.ID)] = s.IsMinimum
	}
	flat := sys.Particles * sys.Dim
	ok := func(i int) bool {
		return len(before[i].Positions) == flat && allFinite(before[i].Positions) && before[i].ID == minima[i].ID
	}
	var picked []int
	taken := map[int]bool{}
	firstOf := map[int64]int{}
	var ids []int64
	for i := range minima {
		if id := minima[i].StateID; id >= 0 && ok(i) {
			if _, seen := firstOf[id]; !seen {
				firstOf[id] = i
				ids = append(ids, id)
			}
		}
	}
	sort.Slice(ids, func(a, b int) bool {
		if isMin[ids[a]] != isMin[ids[b]] {
			return isMin[ids[a]]
		}
		return ids[a] < ids[b]
	})
	for _, id := range ids {
		if len(picked) < k {
			picked = append(picked, firstOf[id])
			taken[firstOf[id]] = true
		}
	}
	for i := range minima {
		if len(picked) < k && !taken[i] && ok(i) {
			picked = append(picked, i)
			taken[i] = true
		}
	}
	out := &StateConfigurations{System: sys.Data.Name, Energy: sys.Name, Particles: sys.Particles, Dim: sys.Dim,
		Selection: fmt.Sprintf("the first sample of each distinct state (metastable states first, in ascending state order), then further samples in row order; up to %d", k)}
	for _, i := range picked {
		p := ConfigPair{Source: filepath.Base(samplesPath), Row: i, ID: before[i].ID, Before: before[i].Positions,
			EnergyBefore: finitePtr(sys.Host.EnergyGrad(before[i].Positions, sys.Dim, nil)), StateID: minima[i].StateID,
			IsMinimum: minima[i].StateID >= 0 && isMin[minima[i].StateID]}
		if !math.IsNaN(minima[i].Energy) && len(minima[i].Positions) == flat {
			p.After, p.EnergyAfter = minima[i].Positions, finitePtr(minima[i].Energy)
		}
		out.Samples = append(out.Samples, p)
	}
	if trainPath != "" {
		tp, err := minimisedFirst(sys, trainPath)
		if err != nil {
			return nil, err
		}
		out.Training = tp
	}
	return out, nil
}

// minimisedFirst minimises the first configuration of the table at path.
func minimisedFirst(sys energy.System, path string) (*ConfigPair, error) {
	var first *particles.Config
	errEnough := errors.New("enough")
	err := table.ScanConfigs(path, 1, func(cs []particles.Config) error {
		if len(cs) > 0 {
			first = &cs[0]
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("jobs: training configuration of %s: %w", path, err)
	}
	if first == nil {
		return nil, fmt.Errorf("jobs: %s has no configurations", path)
	}
	if len(first.Positions) != sys.Particles*sys.Dim {
		return nil, fmt.Errorf("jobs: %s: row 0 has %d coordinates, want %d", path, len(first.Positions), sys.Particles*sys.Dim)
	}
	p := &ConfigPair{Source: filepath.Base(path), ID: first.ID, Before: first.Positions, StateID: -1,
		EnergyBefore: finitePtr(sys.Host.EnergyGrad(first.Positions, sys.Dim, nil))}
	m, err := minimize.New(sys.Data.Name, sys.Name, minimize.Options{})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	r, err := m.Minimize(first.Positions)
	if err != nil {
		return p, nil // a non-finite start: pictured without its minimum
	}
	p.After, p.EnergyAfter, p.IsMinimum = r.X, finitePtr(r.Energy), r.IsMinimum
	return p, nil
}

// writeJSONFile writes v as indented JSON to path, atomically.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("jobs: encoding %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n')); err != nil {
		return fmt.Errorf("jobs: writing %s: %w", path, err)
	}
	return nil
}
