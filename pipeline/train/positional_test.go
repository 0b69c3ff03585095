package train

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

func writePositionalTable(t *testing.T, path string, atoms []int) {
	t.Helper()
	w, err := table.NewMoleculeWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range atoms {
		m := molecule.Molecule{ID: int64(100 + k), Split: "valid"}
		for a := range n {
			z := 1
			if a == 0 {
				z = 6
			}
			m.Z = append(m.Z, z)
			m.Positions = append(m.Positions, [3]float64{float64(a), float64(k) + 1, 0.5 * float64(a*a)})
		}
		if err := w.Write(&m); err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestLoadQM9PositionalSplit checks that QM9 Positional splits are read from molecule tables
// (validation split "valid"), centred, and that a molecule without 19 atoms is refused with an
// error naming the file, molecule and row.
func TestLoadQM9PositionalSplit(t *testing.T) {
	dir := t.TempDir()
	if got := SplitPath(dir, "qm9_positional", "val"); got != filepath.Join(dir, "qm9_positional_valid.parquet") {
		t.Fatalf("SplitPath = %s", got)
	}
	writePositionalTable(t, filepath.Join(dir, "qm9_positional_valid.parquet"), []int{19, 19, 19})
	ds, err := LoadParticleSplit(dir, particles.QM9Positional, "val", dtypes.Float64)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 3 {
		t.Fatalf("Len = %d", ds.Len())
	}
	c := ds.Config(1)
	if c.ID != 101 || len(c.Positions) != 57 {
		t.Fatalf("config 1: id %d, %d coordinates", c.ID, len(c.Positions))
	}
	var mean [3]float64
	for a := range 19 {
		for d := range 3 {
			mean[d] += c.Positions[3*a+d] / 19
		}
	}
	for d, m := range mean {
		if math.Abs(m) > 1e-12 {
			t.Fatalf("axis %d mean %g, want 0", d, m)
		}
	}
	// Relative geometry is kept: atoms 0 and 1 are 1 Å apart along x.
	if dx := c.Positions[3] - c.Positions[0]; math.Abs(dx-1) > 1e-12 {
		t.Fatalf("x1 − x0 = %g", dx)
	}

	writePositionalTable(t, filepath.Join(dir, "qm9_positional_test.parquet"), []int{19, 18})
	_, err = LoadParticleSplit(dir, particles.QM9Positional, "test", dtypes.Float32)
	if err == nil || !strings.Contains(err.Error(), "qm9_positional_test.parquet: molecule 101 (row 1): 18 atoms") {
		t.Fatalf("err = %v", err)
	}
}
