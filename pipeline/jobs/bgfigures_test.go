package jobs

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
)

// writeConfigs writes DW4 configurations (flattened positions) as a configuration table.
func writeConfigs(t *testing.T, path string, rows [][]float64) {
	t.Helper()
	w, err := table.NewConfigWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, pos := range rows {
		e, _ := particles.DW4.Energy(pos)
		if err := w.Write(&particles.Config{ID: int64(i), Split: "sample", System: "dw4", Positions: pos, Energy: e}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// checkMarginalShape checks that every series of m accounts for all its configurations.
func checkMarginalShape(t *testing.T, m *MarginalHistograms, wantSeries map[string]int64) {
	t.Helper()
	if m.System != "dw4" || m.Dim != 2 || m.Particles != 4 || m.Particle != 0 || m.Centring == "" {
		t.Errorf("marginal header %+v", m)
	}
	if len(m.Coords) != 3 || m.Coords[0].Name != "x" || m.Coords[1].Name != "y" || m.Coords[2].Name != "r" {
		t.Fatalf("coordinates %+v, want x, y, r", m.Coords)
	}
	for _, c := range m.Coords {
		if !(c.Hi > c.Lo) || c.Bins <= 0 {
			t.Errorf("%s: bins %d over [%v, %v)", c.Name, c.Bins, c.Lo, c.Hi)
		}
		if c.Name == "r" && c.Lo != 0 || c.Name != "r" && c.Lo != -c.Hi {
			t.Errorf("%s: range [%v, %v), want [0, ·) for r and symmetric about 0 otherwise", c.Name, c.Lo, c.Hi)
		}
		if len(c.Series) != len(wantSeries) {
			t.Errorf("%s: %d series, want %d", c.Name, len(c.Series), len(wantSeries))
		}
		for _, s := range c.Series {
			want, ok := wantSeries[s.Name]
			if !ok || s.N != want {
				t.Errorf("%s/%s: n %d, want %d", c.Name, s.Name, s.N, want)
			}
			if len(s.Counts) != c.Bins {
				t.Errorf("%s/%s: %d counts for %d bins", c.Name, s.Name, len(s.Counts), c.Bins)
			}
			sum := s.Under + s.Over + s.NonFinite
			for _, v := range s.Counts {
				sum += v
			}
			if sum != s.N {
				t.Errorf("%s/%s: counts sum to %d, want n = %d", c.Name, s.Name, sum, s.N)
			}
		}
	}
}

func TestBGParticle1Marginal(t *testing.T) {
	dir := t.TempDir()
	writeTinyParticles(t, dir, particles.DW4, map[string]int{"train": 50, "val": 5, "test": 30}, 2)
	// Particle 1 sits 3 (x) and −1.5 (y) from the centre of mass, whatever the translation;
	// the last sample is far outside the data's range (tables hold finite positions only).
	rows := [][]float64{
		{3, -1.5, -1, 0.5, -1, 0.5, -1, 0.5},
		{13, 8.5, 9, 10.5, 9, 10.5, 9, 10.5},
		{1000, 0, 0, 0, 0, 0, 0, 0},
	}
	samples := filepath.Join(dir, "samples.parquet")
	writeConfigs(t, samples, rows)
	m, err := Particle1Marginal(context.Background(), "dw4", samples, dir, 0, 12)
	if err != nil {
		t.Fatal(err)
	}
	checkMarginalShape(t, m, map[string]int64{"samples": 3, "train": 50, "test": 30})
	for k, want := range []float64{3, -1.5, math.Hypot(3, -1.5)} {
		c := m.Coords[k]
		s := c.Series[0]
		if s.Name != "samples" {
			t.Fatalf("first series %q, want samples", s.Name)
		}
		bin := int((want - c.Lo) / (c.Hi - c.Lo) * float64(c.Bins))
		if bin < 0 || bin >= c.Bins || s.Counts[bin] != 2 {
			t.Errorf("%s: %v should be in bin %d twice (translation-invariant), counts %v over [%v, %v)", c.Name, want, bin, s.Counts, c.Lo, c.Hi)
		}
	}
	if s := m.Coords[0].Series[0]; s.Over != 1 {
		t.Errorf("x: %d samples above the range, want 1 (x₁ − x̄ = 750)", s.Over)
	}

	// Without data (a standalone table): the samples alone, binned over their own range.
	only, err := Particle1Marginal(context.Background(), "dw4", samples, filepath.Join(dir, "none"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkMarginalShape(t, only, map[string]int64{"samples": 3})
	if only.Coords[0].Bins != defaultMarginalBins {
		t.Errorf("%d bins by default, want %d", only.Coords[0].Bins, defaultMarginalBins)
	}
	if _, err := Particle1Marginal(context.Background(), "dw4", filepath.Join(dir, "missing.parquet"), dir, 0, 10); err == nil {
		t.Error("no error for a missing samples table")
	}
}

func TestBGPictureConfigurations(t *testing.T) {
	dir := t.TempDir()
	writeTinyParticles(t, dir, particles.DW4, map[string]int{"train": 5, "val": 1, "test": 1}, 4)
	var rows [][]float64
	for i := range 7 {
		rows = append(rows, []float64{float64(i), 0, -2, 1.5, 2, -1.5, 0.5, 3})
	}
	samples, minima := filepath.Join(dir, "samples.parquet"), filepath.Join(dir, "minima.parquet")
	writeConfigs(t, samples, rows)
	// States of the rows: 2, 0, 0, 1 (a saddle), −1 (not converged), 3, 0.
	stateOf := []int64{2, 0, 0, 1, -1, 3, 0}
	w, err := table.NewConfigRecordWriter(minima, table.ConfigColumns{StateID: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, pos := range rows {
		r := table.ConfigRecord{Config: particles.Config{ID: int64(i), System: "dw4", Positions: pos, Energy: -20 - float64(i)},
			LogQ: math.NaN(), StateID: stateOf[i]}
		if stateOf[i] < 0 {
			r.Energy = math.NaN()
		}
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	states := []State{{ID: 0, IsMinimum: true}, {ID: 1}, {ID: 2, IsMinimum: true}, {ID: 3, IsMinimum: true}}
	c, err := PictureConfigurations(context.Background(), "dw4", "", samples, minima, filepath.Join(dir, "dw4_train.parquet"), states, 4)
	if err != nil {
		t.Fatal(err)
	}
	var picked []int
	for _, p := range c.Samples {
		picked = append(picked, p.Row)
		if len(p.Before) != 8 || p.EnergyBefore == nil {
			t.Errorf("row %d: before %v, energy %v", p.Row, p.Before, p.EnergyBefore)
		}
		if p.StateID != stateOf[p.Row] || p.IsMinimum != (p.StateID != 1) {
			t.Errorf("row %d: state %d (minimum %v)", p.Row, p.StateID, p.IsMinimum)
		}
		if want := -20 - float64(p.Row); p.EnergyAfter == nil || *p.EnergyAfter != want || len(p.After) != 8 {
			t.Errorf("row %d: after %v, energy %v, want %v", p.Row, p.After, p.EnergyAfter, want)
		}
	}
	// One per state, metastable ones first in state order (0 at row 1, 2 at row 0, 3 at row 5),
	// then the saddle (1 at row 3).
	if want := []int{1, 0, 5, 3}; len(picked) != 4 || picked[0] != want[0] || picked[1] != want[1] || picked[2] != want[2] || picked[3] != want[3] {
		t.Errorf("picked rows %v, want %v", picked, want)
	}
	if c.System != "dw4" || c.Energy != "dw4" || c.Particles != 4 || c.Dim != 2 || c.Selection == "" {
		t.Errorf("header %+v", c)
	}
	tr := c.Training
	if tr == nil || tr.Source != "dw4_train.parquet" || len(tr.Before) != 8 || len(tr.After) != 8 || tr.EnergyBefore == nil || tr.EnergyAfter == nil {
		t.Fatalf("training configuration %+v", tr)
	}
	if !(*tr.EnergyAfter <= *tr.EnergyBefore) {
		t.Errorf("minimising the training configuration raised its energy: %v → %v", *tr.EnergyBefore, *tr.EnergyAfter)
	}
	if e, _ := particles.DW4.Energy(tr.After); math.Abs(e-*tr.EnergyAfter) > 1e-9 {
		t.Errorf("training minimum: energy %v, its positions give %v", *tr.EnergyAfter, e)
	}
	b, err := json.Marshal(c)
	if err != nil || len(b) > 8000 {
		t.Errorf("the configurations file is %d bytes (%v), want a small file", len(b), err)
	}

	// More pictures than states: further rows in row order; the unconverged row 4 has no minimum.
	c, err = PictureConfigurations(context.Background(), "dw4", "", samples, minima, "", states, 6)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Samples) != 6 || c.Samples[4].Row != 2 || c.Samples[5].Row != 4 || c.Training != nil {
		t.Fatalf("6 pictures: %+v", c.Samples)
	}
	if p := c.Samples[5]; len(p.After) != 0 || p.EnergyAfter != nil || p.StateID != -1 || p.IsMinimum {
		t.Errorf("the unconverged row: %+v", p)
	}

	// A minima table that is not the samples' minimisation is refused.
	writeConfigs(t, samples, rows[:3])
	if _, err := PictureConfigurations(context.Background(), "dw4", "", samples, minima, "", states, 4); err == nil {
		t.Error("no error for samples shorter than their minima")
	}
	if err := os.WriteFile(minima, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PictureConfigurations(context.Background(), "dw4", "", samples, minima, "", states, 4); err == nil {
		t.Error("no error for a corrupt minima table")
	}
}
