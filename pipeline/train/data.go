package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Dataset is one split held in memory. The driver only needs its length and batches: particle
// configurations (ParticleDataset) and molecules (MoleculeDataset) plug in alike.
type Dataset interface {
	// Len is the number of examples.
	Len() int
	// Batch returns the rows idx as one batch (the caller finalizes it).
	Batch(idx []int) (*Batch, error)
}

// ParticleDataset is a DW4 or LJ13 split: fixed-size, mean-free configurations.
type ParticleDataset struct {
	System particles.System
	dtype  dtypes.DType
	flat   []float64 // Len()·Particles·Dim, particle-major per configuration
	ids    []int64
}

// NewParticleDataset checks cfgs against sys and stores them (mean removed again, defensively)
// for batches of the given dtype.
func NewParticleDataset(sys particles.System, cfgs []particles.Config, dtype dtypes.DType) (*ParticleDataset, error) {
	if dtype != dtypes.Float32 && dtype != dtypes.Float64 {
		return nil, fmt.Errorf("train: dataset dtype %s: want float32 or float64", dtype)
	}
	f := sys.Flat()
	d := &ParticleDataset{System: sys, dtype: dtype, flat: make([]float64, 0, len(cfgs)*f), ids: make([]int64, 0, len(cfgs))}
	for i := range cfgs {
		c := &cfgs[i]
		if c.System != "" && c.System != sys.Name {
			return nil, fmt.Errorf("train: configuration %d (id %d) is %q, want %q", i, c.ID, c.System, sys.Name)
		}
		if len(c.Positions) != f {
			return nil, fmt.Errorf("train: configuration %d (id %d) has %d coordinates, want %d", i, c.ID, len(c.Positions), f)
		}
		start := len(d.flat)
		d.flat = append(d.flat, c.Positions...)
		particles.RemoveMean(d.flat[start:], sys.Dim)
		d.ids = append(d.ids, c.ID)
	}
	return d, nil
}

// Len implements Dataset.
func (d *ParticleDataset) Len() int { return len(d.ids) }

// Head returns the first n configurations (E-NF trains on the first n_data rows of train).
func (d *ParticleDataset) Head(n int) (*ParticleDataset, error) {
	if n < 0 || n > d.Len() {
		return nil, fmt.Errorf("train: asked for the first %d of %d %s configurations", n, d.Len(), d.System.Name)
	}
	f := d.System.Flat()
	return &ParticleDataset{System: d.System, dtype: d.dtype, flat: d.flat[:n*f], ids: d.ids[:n]}, nil
}

// Config returns configuration i (a copy).
func (d *ParticleDataset) Config(i int) particles.Config {
	f := d.System.Flat()
	return particles.Config{ID: d.ids[i], System: d.System.Name, Positions: append([]float64(nil), d.flat[i*f:(i+1)*f]...)}
}

// Batch implements Dataset: positions [len(idx), nodes, dim] and an all-ones node mask.
func (d *ParticleDataset) Batch(idx []int) (*Batch, error) {
	x, mask, err := d.Tensors(idx)
	if err != nil {
		return nil, err
	}
	return &Batch{X: x, Mask: mask}, nil
}

// Tensors returns positions x [len(idx), nodes, dim] and the node mask [len(idx), nodes] of the
// rows idx.
func (d *ParticleDataset) Tensors(idx []int) (x, mask *tensors.Tensor, err error) {
	if len(idx) == 0 {
		return nil, nil, fmt.Errorf("train: empty batch")
	}
	n, dim, f := d.System.Particles, d.System.Dim, d.System.Flat()
	buf := make([]float64, 0, len(idx)*f)
	for _, i := range idx {
		if i < 0 || i >= d.Len() {
			return nil, nil, fmt.Errorf("train: batch row %d out of range [0, %d)", i, d.Len())
		}
		buf = append(buf, d.flat[i*f:(i+1)*f]...)
	}
	x, err = floatTensor(d.dtype, buf, len(idx), n, dim)
	if err != nil {
		return nil, nil, err
	}
	ones := make([]float64, len(idx)*n)
	for i := range ones {
		ones[i] = 1
	}
	mask, err = floatTensor(d.dtype, ones, len(idx), n)
	if err != nil {
		return nil, nil, err
	}
	return x, mask, nil
}

// SplitPath is the ETL file of a system's split: DIR/{system}_{split}.parquet. QM9 Positional
// is written by the QM9 ETL, whose validation split is named "valid"
// (DIR/qm9_positional_valid.parquet for split "val").
func SplitPath(dir, system, split string) string {
	if system == particles.QM9Positional.Name && split == "val" {
		split = "valid"
	}
	return filepath.Join(dir, system+"_"+split+".parquet")
}

// LoadParticleSplit reads DIR/{system}_{split}.parquet: a particle-configuration table for DW4
// and LJ13, a QM9 molecule table (every molecule must have 19 atoms) for QM9 Positional.
func LoadParticleSplit(dir string, sys particles.System, split string, dtype dtypes.DType) (*ParticleDataset, error) {
	path := SplitPath(dir, sys.Name, split)
	var cfgs []particles.Config
	var err error
	if sys.Name == particles.QM9Positional.Name {
		cfgs, err = positionalConfigs(path, split)
	} else {
		cfgs, err = table.ReadConfigs(path)
	}
	if err != nil {
		return nil, fmt.Errorf("train: loading %s split: %w", split, err)
	}
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("train: %s has no configurations", path)
	}
	d, err := NewParticleDataset(sys, cfgs, dtype)
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	return d, nil
}

// positionalConfigs reads a QM9 Positional molecule table as 19-particle configurations (atom
// types are dropped: the dataset is positions only; NewParticleDataset removes the mean).
func positionalConfigs(path, split string) ([]particles.Config, error) {
	sys := particles.QM9Positional
	mols, err := table.ReadMolecules(path)
	if err != nil {
		return nil, err
	}
	cfgs := make([]particles.Config, len(mols))
	for i := range mols {
		m := &mols[i]
		if m.NAtoms() != sys.Particles {
			return nil, fmt.Errorf("%s: molecule %d (row %d): %d atoms, QM9 Positional has %d (write it with `enflow etl qm9 --positional`)",
				path, m.ID, i, m.NAtoms(), sys.Particles)
		}
		pos := make([]float64, 0, sys.Flat())
		for _, p := range m.Positions {
			pos = append(pos, p[0], p[1], p[2])
		}
		cfgs[i] = particles.Config{ID: m.ID, Split: split, System: sys.Name, Positions: pos, Energy: math.NaN()}
	}
	return cfgs, nil
}

// EpochBatches shuffles 0..n−1 with rng and cuts the permutation into full batches of size
// batch, dropping the last incomplete one (en_flows BatchIterator).
func EpochBatches(n, batch int, rng *rand.Rand) [][]int {
	if batch <= 0 || n < batch {
		return nil
	}
	perm := rng.Perm(n)
	out := make([][]int, 0, n/batch)
	for s := 0; s+batch <= n; s += batch {
		out = append(out, perm[s:s+batch])
	}
	return out
}

// EvalBatches cuts 0..n−1 in order into batches of size batch. Like en_flows, an incomplete
// last batch is dropped, except when n < batch (then the whole split is one batch).
func EvalBatches(n, batch int) [][]int {
	if n == 0 || batch <= 0 {
		return nil
	}
	if n < batch {
		batch = n
	}
	var out [][]int
	for s := 0; s+batch <= n; s += batch {
		b := make([]int, batch)
		for i := range b {
			b[i] = s + i
		}
		out = append(out, b)
	}
	return out
}
