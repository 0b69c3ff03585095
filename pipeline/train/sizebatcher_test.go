package train

import (
	"fmt"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// TestSizeBatcher: every molecule is emitted exactly once; by size, a batch holds one atom
// count and at most batch molecules, and the batcher never buffers more than batch−1 molecules
// per size (memory bounded by the batch size, not the stream).
func TestSizeBatcher(t *testing.T) {
	sizes := []int{3, 5, 3, 3, 4, 5, 3, 3, 4, 9, 3, 5, 5, 5, 4}
	for _, tc := range []struct {
		bySize bool
		batch  int
		want   string
	}{
		{true, 2, "[3:1,3] [5:2,6] [3:4,7] [4:5,9] [3:8,11] [5:12,13] [4:15] [5:14] [9:10]"},
		{true, 10, "[3:1,3,4,7,8,11] [4:5,9,15] [5:2,6,12,13,14] [9:10]"},
		{false, 4, "[1,2,3,4] [5,6,7,8] [9,10,11,12] [13,14,15]"},
	} {
		var got []string
		total, maxHeld := 0, 0
		b := &SizeBatcher{Batch: tc.batch, BySize: tc.bySize}
		b.Emit = func(ms []molecule.Molecule) error {
			if len(ms) > tc.batch {
				t.Fatalf("batch of %d > %d", len(ms), tc.batch)
			}
			var ids []string
			for _, m := range ms {
				if tc.bySize && m.NAtoms() != ms[0].NAtoms() {
					t.Fatalf("mixed sizes in %v", ms)
				}
				ids = append(ids, fmt.Sprint(m.ID))
			}
			total += len(ms)
			s := fmt.Sprintf("[%s]", strings.Join(ids, ","))
			if tc.bySize {
				s = fmt.Sprintf("[%d:%s]", ms[0].NAtoms(), strings.Join(ids, ","))
			}
			got = append(got, s)
			return nil
		}
		for i, n := range sizes {
			m := molecule.Molecule{ID: int64(i + 1), Z: make([]int, n), Positions: make([][3]float64, n)}
			if err := b.Add(&m); err != nil {
				t.Fatal(err)
			}
			held := 0
			for _, bk := range b.buckets {
				held = max(held, len(bk))
			}
			maxHeld = max(maxHeld, held)
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
		if total != len(sizes) || maxHeld >= tc.batch {
			t.Errorf("bySize=%v batch=%d: emitted %d of %d, held up to %d", tc.bySize, tc.batch, total, len(sizes), maxHeld)
		}
		if g := fmt.Sprint(got); g != "["+tc.want+"]" {
			t.Errorf("bySize=%v batch=%d:\n got %s\nwant [%s]", tc.bySize, tc.batch, g, tc.want)
		}
	}
}
