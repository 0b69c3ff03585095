package qm9

import (
	"slices"
	"testing"
)

func TestPermutationMatchesNumpy(t *testing.T) {
	tests := []struct {
		n    int
		want []int
	}{
		{0, []int{}},
		{1, []int{0}},
		// np.random.seed(0); np.random.permutation(10)
		{10, []int{2, 8, 4, 9, 1, 6, 7, 3, 0, 5}},
	}
	for _, tc := range tests {
		if got := Permutation(tc.n, 0); !slices.Equal(got, tc.want) {
			t.Errorf("Permutation(%d, 0) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestPermutationIsPermutation(t *testing.T) {
	for _, n := range []int{2, 3, 17, 1000, 4097} {
		p := Permutation(n, 7)
		seen := make([]bool, n)
		for _, v := range p {
			if v < 0 || v >= n || seen[v] {
				t.Fatalf("n=%d: not a permutation (value %d)", n, v)
			}
			seen[v] = true
		}
	}
	if Permutation(-1, 0) != nil {
		t.Error("Permutation(-1) should be nil")
	}
}

func TestMT19937FirstOutputs(t *testing.T) {
	// Reference outputs of genrand_int32 after init_genrand(5489), the standard default seed.
	want := []uint32{3499211612, 581869302, 3890346734, 3586334585, 545404204}
	g := newMT19937(5489)
	for i, w := range want {
		if got := g.uint32(); got != w {
			t.Fatalf("output %d = %d, want %d", i, got, w)
		}
	}
}

func TestSplitSizes(t *testing.T) {
	tests := []struct {
		n                  int
		train, valid, test int
		wantErr            bool
	}{
		{130831, 100000, 17748, 13083, false},
		{133885, 100000, 20497, 13388, false},
		{111111, 100000, 0, 11111, false},
		{1000, 0, 0, 0, true},
		{-5, 0, 0, 0, true},
	}
	for _, tc := range tests {
		tr, va, te, err := SplitSizes(tc.n)
		if (err != nil) != tc.wantErr {
			t.Errorf("SplitSizes(%d) error = %v, wantErr %v", tc.n, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && (tr != tc.train || va != tc.valid || te != tc.test) {
			t.Errorf("SplitSizes(%d) = %d/%d/%d, want %d/%d/%d", tc.n, tr, va, te, tc.train, tc.valid, tc.test)
		}
	}
}

// TestStandardSplitMatchesPublished recomputes the Cormorant split from the built-in
// uncharacterized list and compares it, in permutation order, with the published id lists.
func TestStandardSplitMatchesPublished(t *testing.T) {
	a, err := DefaultSplit()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range SplitNames {
		want := readIDList(t, sharedFile(t, "qm9/cormorant_split_"+name+"_gdb_ids.txt"))
		got := a.IDs(name)
		if len(got) != len(want) {
			t.Fatalf("%s: %d ids, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: position %d: id %d, want %d", name, i, got[i], want[i])
			}
		}
		for _, id := range want[:100] {
			if s := a.Of(id); s != name {
				t.Errorf("Of(%d) = %q, want %q", id, s, name)
			}
		}
	}
	for _, id := range Uncharacterized()[:50] {
		if s := a.Of(id); s != "" {
			t.Errorf("uncharacterized id %d has split %q", id, s)
		}
	}
	for _, id := range []int64{0, -1, NumMolecules + 1} {
		if s := a.Of(id); s != "" || a.Contains(id) {
			t.Errorf("Of(%d) = %q, Contains = %v; want \"\", false", id, s, a.Contains(id))
		}
	}
}

func TestSplitsMap(t *testing.T) {
	m, err := Splits(Uncharacterized())
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, s := range m {
		counts[s]++
	}
	if len(m) != 130831 || counts[Train] != 100000 || counts[Valid] != 17748 || counts[Test] != 13083 {
		t.Errorf("Splits: %d ids, counts %v", len(m), counts)
	}
	if m[133161] != Train || m[70434] != Valid || m[117980] != Test {
		t.Errorf("first ids of the published lists: got %q %q %q", m[133161], m[70434], m[117980])
	}
}

func TestSplitIDsErrors(t *testing.T) {
	tests := []struct {
		name     string
		total    int
		excluded []int64
	}{
		{"zero total", 0, nil},
		{"excluded id zero", NumMolecules, []int64{0}},
		{"excluded id too large", NumMolecules, []int64{NumMolecules + 1}},
		{"too few molecules", 5000, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := SplitIDs(tc.total, tc.excluded); err == nil {
				t.Error("want error")
			}
		})
	}
}
