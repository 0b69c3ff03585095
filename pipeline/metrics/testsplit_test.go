package metrics

import (
	"fmt"
	"sync"
	"testing"

	"github.com/sbinet/npyio/npz"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/internal/shared"
)

// The real QM9 test split (REFERENCE §2.3), read directly from the shipped npz so these tests
// do not depend on the ETL packages.
const (
	testSplitMolecules = 13083
	testSplitAtoms     = 235883
)

var testSplit struct {
	once sync.Once
	mols []molecule.Molecule
	err  error
}

// loadTestSplit returns the 13,083 test-split molecules, reading the npz once per process.
func loadTestSplit(t testing.TB) []molecule.Molecule {
	t.Helper()
	path := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	testSplit.once.Do(func() { testSplit.mols, testSplit.err = readCormorantNPZ(path) })
	if testSplit.err != nil {
		t.Fatalf("reading %s: %v", path, testSplit.err)
	}
	return testSplit.mols
}

func readCormorantNPZ(path string) ([]molecule.Molecule, error) {
	f, err := npz.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	var (
		numAtoms, charges, index []int64
		positions                []float32
	)
	for _, k := range []struct {
		name string
		ptr  any
	}{{"num_atoms.npy", &numAtoms}, {"charges.npy", &charges}, {"index.npy", &index}, {"positions.npy", &positions}} {
		if err := f.Read(k.name, k.ptr); err != nil {
			return nil, fmt.Errorf("key %s: %w", k.name, err)
		}
	}
	n := len(numAtoms)
	const w = molecule.MaxAtoms
	if len(charges) != n*w || len(positions) != n*w*3 || len(index) != n {
		return nil, fmt.Errorf("shapes: %d molecules, %d charges, %d positions, %d ids", n, len(charges), len(positions), len(index))
	}
	mols := make([]molecule.Molecule, n)
	for i := range mols {
		na := int(numAtoms[i])
		if na < 1 || na > w {
			return nil, fmt.Errorf("molecule %d: num_atoms %d", i, na)
		}
		m := molecule.Molecule{ID: index[i], Split: "test", Z: make([]int, na), Positions: make([][3]float64, na)}
		for a := range na {
			m.Z[a] = int(charges[i*w+a])
			for k := range 3 {
				m.Positions[a][k] = float64(positions[(i*w+a)*3+k]) // exact: float32 → float64
			}
		}
		if err := m.Validate(); err != nil {
			return nil, err
		}
		mols[i] = m
	}
	return mols, nil
}
