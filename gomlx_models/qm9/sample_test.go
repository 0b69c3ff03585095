package qm9

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/metrics"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// TestSample draws 20 molecules from the published model with loose solver tolerances
// (dopri5 rtol = atol = 1e-2, for CI time) and checks sizes, masks/centring, decoded types and
// charges, and that the molecule table reads back.
func TestSample(t *testing.T) {
	m := publishedModel(t, dtypes.Float32, func(c *Config) { c.CNF.RTol, c.CNF.ATol = 1e-2, 1e-2 })
	const n, seed = 20, 7
	var batches int
	res, err := m.Sample(t.Context(), SampleOptions{N: n, Seed: seed, Batch: 100,
		Progress: func(done, total int, b BatchInfo) { batches++ }})
	if err != nil {
		t.Fatal(err)
	}
	wantSizes := metrics.NewNodeSampler(seed).SampleN(n)
	distinct := slices.Compact(slices.Sorted(slices.Values(wantSizes)))
	if batches != len(distinct) {
		t.Errorf("%d batches for %d distinct sizes", batches, len(distinct))
	}
	if len(res.Molecules) != n || res.Failed != 0 {
		t.Fatalf("%d molecules, %d failed", len(res.Molecules), res.Failed)
	}
	atoms := 0
	for i, mol := range res.Molecules {
		if mol.ID != int64(i) || mol.NAtoms() != wantSizes[i] || len(res.Charges[i]) != wantSizes[i] {
			t.Errorf("molecule %d: id %d, %d atoms, want %d", i, mol.ID, mol.NAtoms(), wantSizes[i])
		}
		if err := mol.Validate(); err != nil {
			t.Error(err)
		}
		var mean [3]float64
		for _, p := range mol.Positions {
			for k := range 3 {
				mean[k] += p[k] / float64(mol.NAtoms())
			}
		}
		for k := range 3 {
			if math.Abs(mean[k]) > 1e-3 {
				t.Errorf("molecule %d is not centred: mean %v", i, mean)
			}
		}
		atoms += mol.NAtoms()
	}
	if res.Atoms != atoms {
		t.Errorf("Atoms %d, want %d", res.Atoms, atoms)
	}
	frac := res.ChargeConsistency()
	t.Logf("charge == atomic number of the argmax type for %.1f%% of %d atoms; %d NFE", 100*frac, atoms, res.NFE)
	if frac < 0.8 {
		t.Errorf("decoded charges agree with the types for only %.3f of the atoms", frac)
	}
	var st metrics.Stability
	for i := range res.Molecules {
		if _, err := st.AddMolecule(&res.Molecules[i]); err != nil {
			t.Fatal(err)
		}
	}
	// With rtol = 1e-2 the geometry is too coarse for meaningful stability (≈0.4 here versus
	// ≈0.85 at the default 1e-4, see the Table 2 run); only log it.
	t.Logf("atom stability %.3f, molecule stability %.3f (loose tolerances)", st.AtomStable(), st.MolStable())

	path := filepath.Join(t.TempDir(), "samples.parquet")
	w, err := table.NewMoleculeWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range res.Molecules {
		if err := w.Write(&res.Molecules[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	back, err := table.ReadMolecules(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != n {
		t.Fatalf("read back %d molecules", len(back))
	}
	for i := range back {
		if !slices.Equal(back[i].Z, res.Molecules[i].Z) || back[i].Positions[0] != res.Molecules[i].Positions[0] || back[i].Split != "sample" {
			t.Errorf("molecule %d differs after the round trip", i)
		}
	}
}
