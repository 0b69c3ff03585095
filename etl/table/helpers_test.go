package table

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
)

var formats = []string{".parquet", ".arrow"}

// checkedMem swaps the package allocator for a checked one and, at the end of the test,
// asserts that every Arrow buffer was released.
func checkedMem(t *testing.T) *memory.CheckedAllocator {
	t.Helper()
	ca := memory.NewCheckedAllocator(memory.NewGoAllocator())
	prev := mem
	mem = ca
	t.Cleanup(func() {
		mem = prev
		ca.AssertSize(t, 0)
	})
	return ca
}

// synthMolecule returns a fully populated molecule with n atoms (deterministic in id).
func synthMolecule(id int64, n int) molecule.Molecule {
	r := rand.New(rand.NewPCG(uint64(id), 7))
	m := molecule.Molecule{
		ID:        id,
		Split:     []string{"train", "valid", "test"}[id%3],
		Z:         make([]int, n),
		Positions: make([][3]float64, n),
		Mulliken:  make([]float64, n),
		Freqs:     make([]float64, max(3*n-6, 1)),
		SMILES:    [2]string{fmt.Sprintf("C%d", id), fmt.Sprintf("[CH3]%d", id)},
		InChI:     [2]string{fmt.Sprintf("InChI=1S/%d", id), fmt.Sprintf("InChI=1S/r%d", id)},
		Omega1:    3000 + r.Float64()*1000,
	}
	for i := range n {
		m.Z[i] = molecule.Numbers[r.IntN(molecule.NumTypes)]
		for k := range 3 {
			m.Positions[i][k] = r.NormFloat64() * 2
		}
		m.Mulliken[i] = r.Float64() - 0.5
	}
	for i := range m.Freqs {
		m.Freqs[i] = r.Float64() * 4000
	}
	for k := range m.Props {
		m.Props[k] = r.NormFloat64() * float64(k+1)
	}
	return m
}

// sparseMolecule has only what the Cormorant npz provides: no charges, frequencies or strings,
// some unknown properties.
func sparseMolecule(id int64, n int) molecule.Molecule {
	m := synthMolecule(id, n)
	m.Split = ""
	m.Mulliken = nil
	m.Freqs = nil
	m.SMILES = [2]string{}
	m.InChI = [2]string{}
	m.Omega1 = math.NaN()
	m.Props[0] = math.NaN()
	m.Props[14] = math.NaN()
	return m
}

func synthConfig(id int64, sys particles.System) particles.Config {
	r := rand.New(rand.NewPCG(uint64(id), 11))
	c := particles.Config{ID: id, Split: []string{"train", "val", "test"}[id%3], System: sys.Name,
		Positions: make([]float64, sys.Flat()), Energy: r.NormFloat64() * 10}
	for i := range c.Positions {
		c.Positions[i] = r.NormFloat64()
	}
	return c
}

func sameFloat(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func sameFloats(a, b []float64) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameFloat(a[i], b[i]) {
			return false
		}
	}
	return true
}

// diffMolecule describes the first difference between two molecules, "" if equal (NaN = NaN,
// nil ≠ empty slice).
func diffMolecule(got, want *molecule.Molecule) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("id %d, want %d", got.ID, want.ID)
	case got.Split != want.Split:
		return fmt.Sprintf("split %q, want %q", got.Split, want.Split)
	case fmt.Sprint(got.Z) != fmt.Sprint(want.Z):
		return fmt.Sprintf("z %v, want %v", got.Z, want.Z)
	case len(got.Positions) != len(want.Positions):
		return fmt.Sprintf("%d positions, want %d", len(got.Positions), len(want.Positions))
	case !sameFloats(got.Mulliken, want.Mulliken):
		return fmt.Sprintf("mulliken %v, want %v", got.Mulliken, want.Mulliken)
	case !sameFloats(got.Freqs, want.Freqs):
		return fmt.Sprintf("freqs %v, want %v", got.Freqs, want.Freqs)
	case !sameFloat(got.Omega1, want.Omega1):
		return fmt.Sprintf("omega1 %v, want %v", got.Omega1, want.Omega1)
	case got.SMILES != want.SMILES || got.InChI != want.InChI:
		return fmt.Sprintf("strings %q %q, want %q %q", got.SMILES, got.InChI, want.SMILES, want.InChI)
	}
	for i := range got.Positions {
		if got.Positions[i] != want.Positions[i] {
			return fmt.Sprintf("positions[%d] %v, want %v", i, got.Positions[i], want.Positions[i])
		}
	}
	for k := range got.Props {
		if !sameFloat(got.Props[k], want.Props[k]) {
			return fmt.Sprintf("%s %v, want %v", molecule.PropertyNames[k], got.Props[k], want.Props[k])
		}
	}
	return ""
}

func writeMolecules(t testing.TB, path string, ms []molecule.Molecule) {
	t.Helper()
	w, err := NewMoleculeWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i := range ms {
		if err := w.Write(&ms[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func writeConfigs(t testing.TB, path string, cs []particles.Config) {
	t.Helper()
	w, err := NewConfigWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i := range cs {
		if err := w.Write(&cs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// dirEntries lists the names in dir (to check that no temporary file is left).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func tempPath(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }

func nan() float64 { return math.NaN() }
