package qm9

import (
	"fmt"
	"sync"
)

// StandardTrainSize is Cormorant's fixed number of training molecules.
const StandardTrainSize = 100000

// SplitSizes returns Cormorant's split sizes for n included molecules: train = 100,000,
// test = int(0.1·n), valid = the rest. For the 130,831 characterized QM9 molecules this is
// 100,000 / 17,748 / 13,083. It fails when n is too small for a non-negative valid split.
func SplitSizes(n int) (train, valid, test int, err error) {
	train = StandardTrainSize
	test = int(0.1 * float64(n))
	valid = n - train - test
	if n < 0 || valid < 0 {
		return 0, 0, 0, fmt.Errorf("qm9: split: %d included molecules, too few for %d train + %d test", n, train, test)
	}
	return train, valid, test, nil
}

// SplitIDs computes the Cormorant split of the gdb ids 1..total minus excluded:
// included = the sorted 0-based positions not excluded, perm = seed-0 legacy numpy
// permutation of len(included), train = included[perm[:Ntrain]], valid = the next Nvalid,
// test = the rest (sizes from SplitSizes). The returned 1-based ids are in permutation
// order. Excluded ids must lie in 1..total; duplicates are allowed.
func SplitIDs(total int, excluded []int64) (train, valid, test []int64, err error) {
	if total <= 0 {
		return nil, nil, nil, fmt.Errorf("qm9: split: total %d must be positive", total)
	}
	skip := make([]bool, total)
	for _, id := range excluded {
		if id < 1 || id > int64(total) {
			return nil, nil, nil, fmt.Errorf("qm9: split: excluded id %d outside 1..%d", id, total)
		}
		skip[id-1] = true
	}
	included := make([]int64, 0, total)
	for pos, s := range skip {
		if !s {
			included = append(included, int64(pos)+1)
		}
	}
	ntrain, nvalid, _, err := SplitSizes(len(included))
	if err != nil {
		return nil, nil, nil, err
	}
	perm := Permutation(len(included), 0)
	ids := make([]int64, len(perm))
	for i, p := range perm {
		ids[i] = included[p]
	}
	return ids[:ntrain:ntrain], ids[ntrain : ntrain+nvalid : ntrain+nvalid], ids[ntrain+nvalid:], nil
}

// Assignment maps gdb ids to the split of a standard split. A molecule's split depends only
// on its id (and the exclusion list), never on which subset of the archive is being read:
// the split is computed once over all ids 1..Total and each molecule is looked up.
type Assignment struct {
	total int
	split []uint8 // by id-1: 0 excluded, else 1+index into SplitNames
	ids   [len(SplitNames)][]int64
}

// NewAssignment computes the standard split over ids 1..total minus excluded (see SplitIDs).
func NewAssignment(total int, excluded []int64) (*Assignment, error) {
	train, valid, test, err := SplitIDs(total, excluded)
	if err != nil {
		return nil, err
	}
	a := &Assignment{total: total, split: make([]uint8, total), ids: [3][]int64{train, valid, test}}
	for k, ids := range a.ids {
		for _, id := range ids {
			a.split[id-1] = uint8(k + 1)
		}
	}
	return a, nil
}

// StandardSplit is the Cormorant split of the full QM9 (ids 1..133,885) minus excluded,
// normally the 3054 uncharacterized ids.
func StandardSplit(excluded []int64) (*Assignment, error) {
	return NewAssignment(NumMolecules, excluded)
}

var defaultSplit = sync.OnceValues(func() (*Assignment, error) {
	return StandardSplit(Uncharacterized())
})

// DefaultSplit is StandardSplit of the built-in uncharacterized list, computed once.
// Callers must not modify it (its methods return copies).
func DefaultSplit() (*Assignment, error) { return defaultSplit() }

// Splits returns the map id → split name of StandardSplit(excluded); excluded ids are absent.
func Splits(excluded []int64) (map[int64]string, error) {
	a, err := StandardSplit(excluded)
	if err != nil {
		return nil, err
	}
	return a.Map(), nil
}

// Total is the number of ids the split was computed over.
func (a *Assignment) Total() int { return a.total }

// Of returns the split of gdb id ("train", "valid", "test"), or "" when the id is excluded or
// outside 1..Total.
func (a *Assignment) Of(id int64) string {
	if id < 1 || id > int64(a.total) {
		return ""
	}
	if s := a.split[id-1]; s > 0 {
		return SplitNames[s-1]
	}
	return ""
}

// Contains reports whether id is in 1..Total.
func (a *Assignment) Contains(id int64) bool { return id >= 1 && id <= int64(a.total) }

// IDs returns a copy of the ids of one split in permutation order (nil for an unknown name).
func (a *Assignment) IDs(split string) []int64 {
	for k, s := range SplitNames {
		if s == split {
			return append([]int64(nil), a.ids[k]...)
		}
	}
	return nil
}

// Map returns id → split name for every included id.
func (a *Assignment) Map() map[int64]string {
	m := make(map[int64]string, a.total)
	for k, ids := range a.ids {
		for _, id := range ids {
			m[id] = SplitNames[k]
		}
	}
	return m
}
