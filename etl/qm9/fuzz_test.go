package qm9

// Fuzz targets for every QM9 parser. Properties checked on every input:
//   - no panic and no runaway allocation (see maxAlloc: a parser may not allocate far more
//     than its input justifies, so a forged header cannot make it reserve gigabytes);
//   - an accepted input yields valid molecules (molecule.Validate), and a parsed XYZ file
//     survives a write/parse round trip unchanged;
//   - a rejected input gives a non-nil error naming the input.
//
// Seeds: f.Add cases below plus testdata/fuzz/<Target>/, written from the shipped real data
// (the Cormorant test split) by TestWriteFuzzCorpus when ENFLOW_WRITE_FUZZ_CORPUS=1. Crashers
// found by `go test -fuzz` are stored there too and then run by every plain `go test`.

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	dsbzip2 "github.com/dsnet/compress/bzip2"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/npy"
)

// allocated returns the heap bytes allocated while fn ran (cumulative, so freed memory
// counts too). Small allocations are counted per span, which is precise enough for a bound.
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// maxAlloc is the allocation budget of a parser call on n input bytes: generous (a legitimate
// compressed input may expand) but far below what a forged length field could request.
func maxAlloc(n int, perByte uint64) uint64 { return 64<<20 + perByte*uint64(n) }

func checkAlloc(t *testing.T, what string, n int, perByte uint64, fn func()) {
	t.Helper()
	if got, limit := allocated(fn), maxAlloc(n, perByte); got > limit {
		t.Fatalf("%s allocated %d MiB for a %d-byte input (budget %d MiB)", what, got>>20, n, limit>>20)
	}
}

func FuzzParseXYZ(f *testing.F) {
	f.Add([]byte(methaneXYZ))
	f.Add([]byte(strings.ReplaceAll(methaneXYZ, "0.044749", "4.4749*^-2")))
	f.Add([]byte(strings.ReplaceAll(methaneXYZ, "\t", " ")))
	f.Add([]byte(firstLines(methaneXYZ, 4)))
	f.Add([]byte("29\ngdb 7"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m *molecule.Molecule
		var err error
		checkAlloc(t, "ParseXYZ", len(data), 64, func() { m, err = ParseXYZ("fuzz.xyz", data) })
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "fuzz.xyz" {
				t.Fatalf("error %v (%T) is not a *ParseError naming the file", err, err)
			}
			if m != nil {
				t.Fatalf("molecule returned together with error %v", err)
			}
			return
		}
		if err := m.ValidateQM9(); err != nil {
			t.Fatalf("accepted an invalid molecule: %v", err)
		}
		if len(m.Mulliken) != m.NAtoms() || len(m.Freqs) == 0 || m.ID < 1 {
			t.Fatalf("incomplete molecule: %d charges, %d freqs, id %d for %d atoms", len(m.Mulliken), len(m.Freqs), m.ID, m.NAtoms())
		}
		if m.Omega1 != slices.Max(m.Freqs) {
			t.Fatalf("omega1 %v is not the largest frequency %v", m.Omega1, slices.Max(m.Freqs))
		}
		// Round trip through the writer, under the official member name (id check on).
		out, err := AppendXYZ(nil, m)
		if err != nil {
			t.Fatalf("AppendXYZ of a parsed molecule: %v", err)
		}
		back, err := ParseXYZ(MemberName(m.ID), out)
		if err != nil {
			t.Fatalf("re-parsing the written molecule: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(m, back) {
			t.Fatalf("round trip changed the molecule:\n%+v\n%+v", m, back)
		}
	})
}

func FuzzParseUncharacterized(f *testing.F) {
	f.Add(uncharacterizedData)
	f.Add([]byte("1\n2\n3\n"))
	f.Add([]byte("   Index   Ref\n 21725  1.0\n"))
	f.Add([]byte("x\n\n\t-5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ids []int64
		var err error
		checkAlloc(t, "ParseUncharacterized", len(data), 64, func() {
			ids, err = ParseUncharacterized(bytes.NewReader(data), "fuzz.txt")
		})
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.txt") {
				t.Fatalf("error does not name the input: %v", err)
			}
			return
		}
		if len(ids) != NumUncharacterized || !slices.IsSorted(ids) {
			t.Fatalf("accepted %d ids (sorted %v), want %d sorted", len(ids), slices.IsSorted(ids), NumUncharacterized)
		}
		for i, id := range ids {
			if id < 1 || id > NumMolecules || (i > 0 && ids[i-1] == id) {
				t.Fatalf("accepted id %d at %d (out of range or repeated)", id, i)
			}
		}
	})
}

// FuzzReadArchiveFrom reads fuzzed archives. An input starting with the bzip2 magic "BZh" is
// the compressed stream itself (exercising the bzip2 layer and corrupt-block handling);
// any other input is taken as a tar stream and bzip2-compressed first, so that mutations
// reach the tar headers and the members instead of dying on bzip2's block checksums.
func FuzzReadArchiveFrom(f *testing.F) {
	f.Add([]byte("BZh9"))
	f.Add([]byte("BZh91AY&SY"))
	f.Add([]byte("not a tar"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		stream := data
		if !bytes.HasPrefix(data, []byte("BZh")) {
			var b bytes.Buffer
			bw, err := dsbzip2.NewWriter(&b, &dsbzip2.WriterConfig{Level: dsbzip2.BestSpeed})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bw.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := bw.Close(); err != nil {
				t.Fatal(err)
			}
			stream = b.Bytes()
		}
		// The deadline only bounds a pathological input; reading stops at member boundaries.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var mols []*molecule.Molecule
		var st ArchiveStats
		var err error
		checkAlloc(t, "ReadArchiveFrom", len(data), 256, func() {
			st, err = ReadArchiveFrom(ctx, bytes.NewReader(stream), "fuzz.tar.bz2", ArchiveOptions{}, func(m *molecule.Molecule) error {
				mols = append(mols, m)
				return nil
			})
		})
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.tar.bz2") {
				t.Fatalf("error does not name the archive: %v", err)
			}
			return
		}
		if st.Members < 1 || st.Molecules+st.Excluded != st.Members || st.Molecules != len(mols) {
			t.Fatalf("inconsistent stats %+v for %d molecules", st, len(mols))
		}
		seen := map[int64]bool{}
		for _, m := range mols {
			if err := m.ValidateQM9(); err != nil {
				t.Fatalf("accepted an invalid molecule: %v", err)
			}
			if m.Split == "" || seen[m.ID] {
				t.Fatalf("molecule %d: split %q, repeated %v", m.ID, m.Split, seen[m.ID])
			}
			seen[m.ID] = true
		}
	})
}

func FuzzReadNPZ(f *testing.F) {
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18))) // empty zip
	f.Add([]byte("PK\x03\x04"))
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.npz")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var mols []molecule.Molecule
		var err error
		checkAlloc(t, "ReadNPZ", len(data), 2048, func() { mols, err = ReadNPZ(path, Test) })
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.npz") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		seen := map[int64]bool{}
		for i := range mols {
			m := &mols[i]
			if err := m.ValidateQM9(); err != nil {
				t.Fatalf("accepted an invalid molecule: %v", err)
			}
			if m.ID < 1 || seen[m.ID] || m.Split != Test {
				t.Fatalf("record %d: id %d (repeated %v), split %q", i, m.ID, seen[m.ID], m.Split)
			}
			seen[m.ID] = true
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/ from the shipped real data. It runs only with
// ENFLOW_WRITE_FUZZ_CORPUS=1 (the files are committed).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ENFLOW_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set ENFLOW_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	npzPath := sharedFile(t, "qm9/cormorant_qm9_test.npz")
	mols := testSplitMolecules(t)
	// A few real molecules of different sizes and elements: the first ones, one with F, the largest.
	picks := []int{0, 1, 2}
	for i := range mols {
		if slices.Contains(mols[i].Z, 9) {
			picks = append(picks, i)
			break
		}
	}
	largest := 0
	for i := range mols {
		if mols[i].NAtoms() > mols[largest].NAtoms() {
			largest = i
		}
	}
	picks = append(picks, largest)

	var members []ArchiveMember
	for _, i := range picks {
		data, err := AppendXYZ(nil, &mols[i])
		if err != nil {
			t.Fatal(err)
		}
		writeSeed(t, "FuzzParseXYZ", fmt.Sprintf("real-gdb-%06d", mols[i].ID), data)
		members = append(members, ArchiveMember{Name: MemberName(mols[i].ID), Data: data})
	}

	// Archives: three real members; the same plus a directory and a non-.xyz entry; an
	// uncharacterized id (excluded); a truncated archive.
	arch := func(ms []ArchiveMember) []byte {
		var b bytes.Buffer
		if err := WriteRawArchive(&b, ms); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	writeSeed(t, "FuzzReadArchiveFrom", "real-3-members", arch(members[:3]))
	withOthers := []ArchiveMember{{Name: "README", Data: []byte("QM9 subset\n")}, members[0], members[3]}
	writeSeed(t, "FuzzReadArchiveFrom", "real-with-other-entry", arch(withOthers))
	unc := Uncharacterized()[0]
	excluded := *withID(t, &mols[picks[0]], unc)
	data, err := AppendXYZ(nil, &excluded)
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzReadArchiveFrom", "uncharacterized-member", arch([]ArchiveMember{{Name: MemberName(unc), Data: data}, members[1]}))
	full := arch(members[:2])
	writeSeed(t, "FuzzReadArchiveFrom", "truncated", full[:len(full)*2/3])
	// Uncompressed tars (the target compresses them): mutations then reach tar headers and members.
	plainTar := func(ms []ArchiveMember) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, m := range ms {
			hdr := &tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Data)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(m.Data); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	writeSeed(t, "FuzzReadArchiveFrom", "plain-tar-real-2-members", plainTar(members[:2]))
	writeSeed(t, "FuzzReadArchiveFrom", "plain-tar-real-with-other-entry", plainTar(withOthers[:2]))

	// npz: the first rows of the real file, once deflated (as the shipped file) and once stored
	// (numpy.savez's default, so that mutations reach the .npy headers directly).
	for _, c := range []struct {
		name   string
		rows   int
		method uint16
	}{{"real-2-rows-deflate", 2, zip.Deflate}, {"real-2-rows-store", 2, zip.Store}, {"real-1-row-store", 1, zip.Store}} {
		writeSeed(t, "FuzzReadNPZ", c.name, headNPZ(t, npzPath, c.rows, c.method))
	}

	// Uncharacterized list: the built-in (real) list and a figshare-style table of it.
	writeSeed(t, "FuzzParseUncharacterized", "builtin-list", uncharacterizedData)
	var tbl bytes.Buffer
	tbl.WriteString("Uncharacterized molecules (geometry consistency check failed)\n\n   Index   Ref\n")
	for _, id := range Uncharacterized() {
		fmt.Fprintf(&tbl, "  %6d\t0.5\n", id)
	}
	tbl.WriteString("\n---- end ----\n")
	writeSeed(t, "FuzzParseUncharacterized", "figshare-style-table", tbl.Bytes())
}

// withID returns a copy of m with another id.
func withID(t *testing.T, m *molecule.Molecule, id int64) *molecule.Molecule {
	t.Helper()
	c := *m
	c.ID = id
	return &c
}

// headNPZ rewrites the first rows of every key of a real npz (dtypes and widths kept; the
// *_thermo keys but one dropped) as a new npz compressed with method.
func headNPZ(t *testing.T, path string, rows int, method uint16) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, zf := range zr.File {
		key := strings.TrimSuffix(zf.Name, ".npy")
		if strings.HasSuffix(key, "_thermo") && key != "U0_thermo" {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if _, err := raw.ReadFrom(rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		var enc bytes.Buffer
		if err := encodeHead(&enc, zf.Name, raw.Bytes(), rows); err != nil {
			t.Fatal(err)
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: zf.Name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(enc.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// encodeHead re-encodes the first rows of one .npy member with its original dtype.
func encodeHead(w *bytes.Buffer, name string, raw []byte, rows int) error {
	if ints, shape, err := npy.DecodeInt64(name, raw, npy.Want{}); err == nil {
		per := len(ints) / shape[0]
		return npy.Encode(w, ints[:rows*per], append([]int{rows}, shape[1:]...)...)
	}
	floats, shape, err := npy.DecodeFloat64(name, raw, npy.Want{})
	if err != nil {
		return err
	}
	per := len(floats) / shape[0]
	head := floats[:rows*per]
	newShape := append([]int{rows}, shape[1:]...)
	if bytes.Contains(raw[:128], []byte("'<f8'")) {
		return npy.Encode(w, head, newShape...)
	}
	f32 := make([]float32, len(head))
	for i, v := range head {
		f32[i] = float32(v)
	}
	return npy.Encode(w, f32, newShape...)
}

// writeSeed stores one []byte input in Go's corpus format under testdata/fuzz/<target>/<name>.
func writeSeed(t *testing.T, target, name string, data []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s/%s (%d bytes)", dir, name, len(data))
}
