package qm9

import (
	"bytes"
	"context"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// BenchmarkReadArchive reads a raw archive of the 13,083 real test-split molecules
// (about a tenth of the official archive).
func BenchmarkReadArchive(b *testing.B) {
	mols := testSplitMolecules(b)
	var buf bytes.Buffer
	if err := WriteArchive(&buf, mols); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for range b.N {
		stats, err := ReadArchiveFrom(context.Background(), bytes.NewReader(buf.Bytes()), "bench.tar.bz2", ArchiveOptions{},
			func(*molecule.Molecule) error { return nil })
		if err != nil || stats.Molecules != len(mols) {
			b.Fatalf("%+v %v", stats, err)
		}
	}
}

// BenchmarkParseXYZ parses one real-sized member.
func BenchmarkParseXYZ(b *testing.B) {
	mols := testSplitMolecules(b)
	data, err := AppendXYZ(nil, &mols[100])
	if err != nil {
		b.Fatal(err)
	}
	name := MemberName(mols[100].ID)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for range b.N {
		if _, err := ParseXYZ(name, data); err != nil {
			b.Fatal(err)
		}
	}
}
