package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
	etlqm9 "github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/gomlx_models/qm9"
)

// Molecule data sets (QM9Kind models):
//
//	qm9        DIR/qm9_{train,valid,test}.parquet          written by `enflow etl qm9`
//	molecules  DIR/molecules_{train,valid,test}.parquet    written by `enflow etl molecules`,
//	           with DIR/molecules.json describing the element set
//
// Both are molecule tables (etl/table, schema molecule/v1). The validation split is "valid" in
// the file names, "val" in the driver.

// MoleculeSplitPath is the molecule table of a split: DIR/{qm9|molecules}_{train,valid,test}.parquet.
func MoleculeSplitPath(dir, system, split string) string {
	if split == "val" {
		split = "valid"
	}
	return filepath.Join(dir, system+"_"+split+".parquet")
}

// MoleculeDataset is one split of molecules held in memory. Batches are padded to their largest
// molecule, as en_flows' collate function does.
type MoleculeDataset struct {
	Path     string
	Elements []int // one-hot order
	mols     []molecule.Molecule
}

// NewMoleculeDataset checks every molecule against the element set (nil = QM9's).
func NewMoleculeDataset(path string, mols []molecule.Molecule, elements []int) (*MoleculeDataset, error) {
	if elements == nil {
		elements = qm9.QM9Elements()
	}
	known := map[int]bool{}
	for _, z := range elements {
		known[z] = true
	}
	for i := range mols {
		m := &mols[i]
		if m.NAtoms() == 0 || len(m.Positions) != m.NAtoms() {
			return nil, fmt.Errorf("train: %s: molecule %d (row %d): %d atoms and %d positions", path, m.ID, i, m.NAtoms(), len(m.Positions))
		}
		for a, z := range m.Z {
			if !known[z] {
				return nil, fmt.Errorf("train: %s: molecule %d (row %d), atom %d: element Z=%d is not in the model's elements %v",
					path, m.ID, i, a, z, elements)
			}
		}
	}
	return &MoleculeDataset{Path: path, Elements: elements, mols: mols}, nil
}

// Len implements Dataset.
func (d *MoleculeDataset) Len() int { return len(d.mols) }

// Molecules returns the molecules (not a copy).
func (d *MoleculeDataset) Molecules() []molecule.Molecule { return d.mols }

// Head returns the first n molecules.
func (d *MoleculeDataset) Head(n int) (*MoleculeDataset, error) {
	if n < 0 || n > d.Len() {
		return nil, fmt.Errorf("train: asked for the first %d of %d molecules of %s", n, d.Len(), d.Path)
	}
	return &MoleculeDataset{Path: d.Path, Elements: d.Elements, mols: d.mols[:n]}, nil
}

// Batch implements Dataset.
func (d *MoleculeDataset) Batch(idx []int) (*Batch, error) {
	if len(idx) == 0 {
		return nil, fmt.Errorf("train: empty batch")
	}
	sub := make([]molecule.Molecule, len(idx))
	for k, i := range idx {
		if i < 0 || i >= d.Len() {
			return nil, fmt.Errorf("train: batch row %d out of range [0, %d)", i, d.Len())
		}
		sub[k] = d.mols[i]
	}
	b, err := qm9.NewBatchOf(sub, d.Elements)
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", d.Path, err)
	}
	return &Batch{Molecules: b}, nil
}

// SizeCounts counts the molecules per atom count.
func (d *MoleculeDataset) SizeCounts() map[int]int64 {
	out := map[int]int64{}
	for i := range d.mols {
		out[d.mols[i].NAtoms()]++
	}
	return out
}

// LoadMoleculeSplit reads a split's molecule table.
func LoadMoleculeSplit(dir, system, split string, elements []int) (*MoleculeDataset, error) {
	path := MoleculeSplitPath(dir, system, split)
	mols, err := table.ReadMolecules(path)
	if err != nil {
		return nil, fmt.Errorf("train: loading %s split: %w", split, err)
	}
	if len(mols) == 0 {
		return nil, fmt.Errorf("train: %s has no molecules", path)
	}
	return NewMoleculeDataset(path, mols, elements)
}

// MoleculesDescriptionFile is the data set description written by `enflow etl molecules`.
const MoleculesDescriptionFile = "molecules.json"

// MoleculeElements returns the one-hot element set of the molecule data in dir: QM9's for
// system qm9; for molecules, the "elements" of DIR/molecules.json, or (without it) the sorted
// atomic numbers found in the train split.
func MoleculeElements(dir, system string) ([]int, error) {
	if system == SystemQM9 {
		return qm9.QM9Elements(), nil
	}
	path := filepath.Join(dir, MoleculesDescriptionFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var desc struct {
			Elements []int `json:"elements"`
		}
		if err := json.Unmarshal(data, &desc); err != nil {
			return nil, fmt.Errorf("train: decoding %s: %w", path, err)
		}
		if len(desc.Elements) == 0 {
			return nil, fmt.Errorf("train: %s: field elements: empty", path)
		}
		return desc.Elements, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("train: %w", err)
	}
	mols, err := table.ReadMolecules(MoleculeSplitPath(dir, system, "train"))
	if err != nil {
		return nil, fmt.Errorf("train: element set: %w", err)
	}
	seen := map[int]bool{}
	for i := range mols {
		for _, z := range mols[i].Z {
			seen[z] = true
		}
	}
	out := make([]int, 0, len(seen))
	for z := range seen {
		out = append(out, z)
	}
	sort.Ints(out)
	return out, nil
}

// ScanMolecules calls fn for every molecule of a molecule table (.parquet/.arrow, streamed in
// record batches) or of a Cormorant npz split (read whole: npz arrays are not streamable).
// fn may return ErrStopScan to end the scan early without error.
func ScanMolecules(ctx context.Context, path string, fn func(m *molecule.Molecule) error) error {
	var err error
	if strings.EqualFold(filepath.Ext(path), ".npz") {
		var mols []molecule.Molecule
		mols, err = etlqm9.ReadNPZ(path, etlqm9.SplitFromFileName(path))
		if err == nil {
			for i := range mols {
				if err = fn(&mols[i]); err != nil {
					break
				}
			}
		}
	} else {
		err = table.ScanMolecules(path, 256, func(ms []molecule.Molecule) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := range ms {
				if err := fn(&ms[i]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if errors.Is(err, ErrStopScan) {
		return nil
	}
	return err
}

// ErrStopScan ends ScanMolecules early.
var ErrStopScan = errors.New("train: enough molecules")

// SizeBatcher groups a stream of molecules into evaluation batches. By size, it keeps one
// bucket per atom count and emits a bucket when it holds Batch molecules (the rest, in
// ascending size, at Flush); in data order it emits every Batch consecutive molecules. Memory
// is bounded by the batch size times the number of distinct sizes, not by the dataset.
type SizeBatcher struct {
	Batch   int
	BySize  bool
	Emit    func([]molecule.Molecule) error
	buckets map[int][]molecule.Molecule
}

// Add adds one molecule, emitting a batch when its bucket is full.
func (b *SizeBatcher) Add(m *molecule.Molecule) error {
	key := 0
	if b.BySize {
		key = m.NAtoms()
	}
	if b.buckets == nil {
		b.buckets = map[int][]molecule.Molecule{}
	}
	bk := append(b.buckets[key], *m)
	if len(bk) < max(b.Batch, 1) {
		b.buckets[key] = bk
		return nil
	}
	delete(b.buckets, key)
	return b.Emit(bk)
}

// Flush emits the incomplete buckets, in ascending size.
func (b *SizeBatcher) Flush() error {
	keys := make([]int, 0, len(b.buckets))
	for k := range b.buckets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		bk := b.buckets[k]
		delete(b.buckets, k)
		if err := b.Emit(bk); err != nil {
			return err
		}
	}
	return nil
}

// FitSizes returns p(M) fitted on a training split: its histogram of molecule sizes.
func FitSizes(d *MoleculeDataset) (*prior.Sizes, error) {
	s, err := prior.SizesFromCounts(d.SizeCounts())
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", d.Path, err)
	}
	return &s, nil
}
