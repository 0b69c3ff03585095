package qm9

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// archiveMolecules returns n real molecules (from the test split) relabelled so that the
// set covers every split and some uncharacterized ids; the ids are ascending, as in the
// official archive. want maps each id to its expected split ("" = excluded).
func archiveMolecules(t *testing.T, n int) (mols []molecule.Molecule, want map[int64]string) {
	t.Helper()
	src := testSplitMolecules(t)
	a, err := DefaultSplit()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, name := range SplitNames {
		ids = append(ids, a.IDs(name)[:n/4]...)
	}
	ids = append(ids, Uncharacterized()[:n-len(ids)]...)
	slices.Sort(ids)
	want = make(map[int64]string, n)
	for i, id := range ids {
		m := src[i*37%len(src)] // spread over sizes and elements
		m.ID = id
		m.Split = ""
		m.Z = slices.Clone(m.Z) // the source molecules are shared between tests
		m.Positions = slices.Clone(m.Positions)
		mols = append(mols, m)
		want[id] = a.Of(id)
	}
	// Tiny values exercise Mathematica exponents in positions and properties.
	mols[0].Positions[0][1] = 1.5e-6
	mols[1].Props[3] = 6.8e-6
	return mols, want
}

func buildArchive(t *testing.T, mols []molecule.Molecule) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteArchive(&buf, mols); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func collect(t *testing.T, data []byte, opts ArchiveOptions) ([]*molecule.Molecule, ArchiveStats, error) {
	t.Helper()
	var got []*molecule.Molecule
	stats, err := ReadArchiveFrom(context.Background(), bytes.NewReader(data), "test.tar.bz2", opts,
		func(m *molecule.Molecule) error { got = append(got, m); return nil })
	return got, stats, err
}

func TestArchiveRoundTrip(t *testing.T) {
	mols, want := archiveMolecules(t, 200)
	data := buildArchive(t, mols)
	progress := 0
	got, stats, err := collect(t, data, ArchiveOptions{Progress: func(n int) { progress = n }})
	if err != nil {
		t.Fatal(err)
	}
	excluded := 0
	perSplit := map[string]int{}
	for _, s := range want {
		if s == "" {
			excluded++
		} else {
			perSplit[s]++
		}
	}
	if stats.Members != 200 || progress != 200 || stats.Excluded != excluded || stats.Molecules != 200-excluded || len(got) != stats.Molecules {
		t.Fatalf("stats %+v, progress %d, %d molecules; want %d excluded", stats, progress, len(got), excluded)
	}
	if excluded == 0 || len(perSplit) != 3 || !maps.Equal(stats.PerSplit, perSplit) {
		t.Errorf("per split %v, want %v", stats.PerSplit, perSplit)
	}
	byID := map[int64]*molecule.Molecule{}
	for i := range mols {
		byID[mols[i].ID] = &mols[i]
	}
	atoms := 0
	for i, m := range got {
		if i > 0 && got[i-1].ID >= m.ID {
			t.Fatalf("molecules out of archive order: %d after %d", m.ID, got[i-1].ID)
		}
		orig := byID[m.ID]
		if orig == nil || m.Split != want[m.ID] || m.Split == "" {
			t.Fatalf("molecule %d: split %q, want %q", m.ID, m.Split, want[m.ID])
		}
		if err := m.ValidateQM9(); err != nil {
			t.Fatal(err)
		}
		atoms += m.NAtoms()
		if !slices.Equal(m.Z, orig.Z) || m.Props != orig.Props || m.Omega1 != orig.Omega1 {
			t.Fatalf("molecule %d: Z/props/omega1 differ", m.ID)
		}
		for j := range m.Positions {
			for k := range 3 {
				if float32(m.Positions[j][k]) != float32(orig.Positions[j][k]) {
					t.Fatalf("molecule %d atom %d: position %v, want %v", m.ID, j, m.Positions[j], orig.Positions[j])
				}
			}
		}
	}
	if atoms != stats.Atoms {
		t.Errorf("stats.Atoms %d, counted %d", stats.Atoms, atoms)
	}
}

func TestArchiveWritesMathematicaExponents(t *testing.T) {
	mols, _ := archiveMolecules(t, 8)
	text, err := AppendXYZ(nil, &mols[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("1.5*^-6")) {
		t.Errorf("no Mathematica exponent in\n%s", text)
	}
}

func TestArchiveCustomSplit(t *testing.T) {
	mols, _ := archiveMolecules(t, 20)
	data := buildArchive(t, mols)
	// Exclude nothing: every member is kept, uncharacterized ones included.
	a, err := StandardSplit(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, stats, err := collect(t, data, ArchiveOptions{Split: a})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 || stats.Excluded != 0 {
		t.Errorf("%d molecules, %d excluded; want 20, 0", len(got), stats.Excluded)
	}
}

func TestArchiveErrors(t *testing.T) {
	mols, _ := archiveMolecules(t, 200) // several bzip2 blocks
	good := buildArchive(t, mols)
	member := func(i int) ArchiveMember {
		data, err := AppendXYZ(nil, &mols[i])
		if err != nil {
			t.Fatal(err)
		}
		return ArchiveMember{Name: MemberName(mols[i].ID), Data: data}
	}
	raw := func(members ...ArchiveMember) []byte {
		var buf bytes.Buffer
		if err := WriteRawArchive(&buf, members); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	corrupt := slices.Clone(good)
	for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
		corrupt[i] ^= 0x5a
	}
	m2 := member(2)
	badMember := ArchiveMember{Name: m2.Name, Data: bytes.Replace(m2.Data, []byte("\n"), []byte("\nNaN\n"), 1)}
	mismatch := ArchiveMember{Name: MemberName(999), Data: member(3).Data}
	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{"truncated", good[:len(good)*6/10], []string{"qm9: archive test.tar.bz2: ", "member dsgdb9nsd_", "truncated or corrupt"}},
		{"truncated in first block", good[:100], []string{"qm9: archive test.tar.bz2: before the first member: truncated or corrupt"}},
		{"corrupt bzip2", corrupt, []string{"qm9: archive test.tar.bz2: ", "member dsgdb9nsd_", "truncated or corrupt"}},
		{"not bzip2", []byte("plain text, not an archive"), []string{"test.tar.bz2", "not a bzip2 file"}},
		{"empty archive", raw(), []string{"test.tar.bz2", "no .xyz members"}},
		{"corrupt member", raw(member(0), member(1), badMember, member(3)), []string{"qm9: test.tar.bz2: member " + m2.Name + " line 2: field properties"}},
		{"duplicate id", raw(member(0), member(1), member(1)), []string{"member " + member(1).Name, "appears twice"}},
		{"name and index disagree", raw(member(0), mismatch), []string{"member dsgdb9nsd_000999.xyz line 2: field index", "file name says id 999"}},
		{"id outside QM9", raw(ArchiveMember{Name: "x.xyz", Data: bytes.Replace(member(0).Data, []byte("gdb "), []byte("gdb 99999"), 1)}), []string{"member x.xyz", "outside QM9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := collect(t, tc.data, ArchiveOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestArchiveSkipsOtherEntries(t *testing.T) {
	mols, _ := archiveMolecules(t, 8)
	var members []ArchiveMember
	members = append(members, ArchiveMember{Name: "README", Data: []byte("not a molecule")})
	for i := range mols {
		data, err := AppendXYZ(nil, &mols[i])
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, ArchiveMember{Name: MemberName(mols[i].ID), Data: data})
	}
	var buf bytes.Buffer
	if err := WriteRawArchive(&buf, members); err != nil {
		t.Fatal(err)
	}
	_, stats, err := collect(t, buf.Bytes(), ArchiveOptions{})
	if err != nil || stats.Members != 8 {
		t.Errorf("members %d, err %v; want 8, nil", stats.Members, err)
	}
}

func TestArchiveCallbackErrorAndCancel(t *testing.T) {
	mols, _ := archiveMolecules(t, 12)
	data := buildArchive(t, mols)
	boom := errors.New("boom")
	calls := 0
	_, err := ReadArchiveFrom(context.Background(), bytes.NewReader(data), "a.tar.bz2", ArchiveOptions{},
		func(m *molecule.Molecule) error {
			calls++
			if calls == 2 {
				return boom
			}
			return nil
		})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "a.tar.bz2: member dsgdb9nsd_") || calls != 2 {
		t.Errorf("callback error: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = ReadArchiveFrom(ctx, bytes.NewReader(data), "a.tar.bz2", ArchiveOptions{}, func(*molecule.Molecule) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestReadArchiveFile(t *testing.T) {
	mols, _ := archiveMolecules(t, 12)
	path := filepath.Join(t.TempDir(), "sub", "dsgdb9nsd.xyz.tar.bz2")
	if err := WriteArchiveFile(path, mols); err != nil {
		t.Fatal(err)
	}
	n := 0
	stats, err := ReadArchive(context.Background(), path, ArchiveOptions{}, func(*molecule.Molecule) error { n++; return nil })
	if err != nil || stats.Members != 12 || n != stats.Molecules {
		t.Errorf("stats %+v, %d callbacks, err %v", stats, n, err)
	}
	if _, err := ReadArchive(context.Background(), filepath.Join(t.TempDir(), "none.tar.bz2"), ArchiveOptions{}, nil); err == nil {
		t.Error("missing archive: want error")
	}
	if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
}

func TestAppendMathematica(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0."},
		{157, "157."},
		{-40.47893, "-40.47893"},
		{6.8e-6, "6.8*^-6"},
		{1e-5, "1.*^-5"},
		{1234567, "1.234567*^6"},
		{-2.5e21, "-2.5*^21"},
	}
	for _, tc := range tests {
		got := string(appendMathematica(nil, tc.v))
		if got != tc.want {
			t.Errorf("appendMathematica(%v) = %q, want %q", tc.v, got, tc.want)
		}
		back, err := parseNumber([]byte(got))
		if err != nil || back != tc.v {
			t.Errorf("parseNumber(%q) = %v, %v; want %v", got, back, err, tc.v)
		}
	}
}

func TestAppendXYZRejectsBadMolecules(t *testing.T) {
	mols, _ := archiveMolecules(t, 4)
	tests := []struct {
		name string
		edit func(m *molecule.Molecule)
	}{
		{"no atoms", func(m *molecule.Molecule) { m.Z, m.Positions = nil, nil }},
		{"NaN property", func(m *molecule.Molecule) { m.Props[2] = math.NaN() }},
		{"NaN omega1 without frequencies", func(m *molecule.Molecule) { m.Omega1 = math.NaN() }},
		{"space in SMILES", func(m *molecule.Molecule) { m.SMILES[0] = "C C" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mols[0]
			m.Z = slices.Clone(m.Z)
			m.Positions = slices.Clone(m.Positions)
			tc.edit(&m)
			if _, err := AppendXYZ(nil, &m); err == nil {
				t.Error("want error")
			}
		})
	}
}
