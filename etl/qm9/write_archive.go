package qm9

import (
	"archive/tar"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dsnet/compress/bzip2"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/molecule"
)

// MemberName is the official archive member name of a gdb id: 17 → "dsgdb9nsd_000017.xyz".
func MemberName(id int64) string { return fmt.Sprintf("dsgdb9nsd_%06d.xyz", id) }

// placeholder stands in for SMILES/InChI strings a molecule does not carry (npz input).
const placeholder = "-"

// AppendXYZ appends m in the raw QM9 extended-XYZ format (REFERENCE §2.1) to dst. Numbers
// are written as the shortest decimal that parses back to the same float64, in Mathematica
// style like the official files: exponents as "*^" (6.8*^-6) and whole numbers with a
// trailing dot (0.). Fields a molecule lacks are filled in: Mulliken charges with 0.,
// frequencies with the single value Omega1, SMILES/InChI with "-".
// It fails if m is invalid or holds a non-finite number.
func AppendXYZ(dst []byte, m *molecule.Molecule) ([]byte, error) {
	if err := m.ValidateQM9(); err != nil {
		return dst, fmt.Errorf("qm9: write xyz: %w", err)
	}
	num := func(field string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("qm9: write xyz: molecule %d: field %s: non-finite value %v", m.ID, field, v)
		}
		dst = appendMathematica(dst, v)
		return nil
	}
	n := m.NAtoms()
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, "\ngdb "...)
	dst = strconv.AppendInt(dst, m.ID, 10)
	for k, v := range m.Props {
		dst = append(dst, '\t')
		if err := num(molecule.PropertyNames[k], v); err != nil {
			return dst, err
		}
	}
	dst = append(dst, '\n')
	for i, z := range m.Z {
		dst = append(dst, molecule.Symbols[molecule.TypeIndex(z)]...)
		for k := range 3 {
			dst = append(dst, '\t')
			if err := num(coordFields[k], m.Positions[i][k]); err != nil {
				return dst, err
			}
		}
		dst = append(dst, '\t')
		q := 0.0
		if m.Mulliken != nil {
			q = m.Mulliken[i]
		}
		if err := num("mulliken", q); err != nil {
			return dst, err
		}
		dst = append(dst, '\n')
	}
	freqs := m.Freqs
	if len(freqs) == 0 {
		freqs = []float64{m.Omega1}
	}
	for i, v := range freqs {
		if i > 0 {
			dst = append(dst, '\t')
		}
		if err := num("frequencies", v); err != nil {
			return dst, err
		}
	}
	dst = append(dst, '\n')
	for _, pair := range [2][2]string{m.SMILES, m.InChI} {
		for i, s := range pair {
			if s == "" {
				s = placeholder
			}
			if strings.ContainsAny(s, " \t\r\n") {
				return dst, fmt.Errorf("qm9: write xyz: molecule %d: string %q contains white space", m.ID, s)
			}
			if i > 0 {
				dst = append(dst, '\t')
			}
			dst = append(dst, s...)
		}
		dst = append(dst, '\n')
	}
	return dst, nil
}

// appendMathematica writes v as the shortest round-tripping decimal in Mathematica notation.
func appendMathematica(dst []byte, v float64) []byte {
	var buf [32]byte
	s := strconv.AppendFloat(buf[:0], v, 'g', -1, 64)
	mant, exp := s, []byte(nil)
	for i, c := range s {
		if c == 'e' {
			mant, exp = s[:i], s[i+1:]
			break
		}
	}
	dst = append(dst, mant...)
	if !containsByte(mant, '.') {
		dst = append(dst, '.')
	}
	if exp != nil {
		dst = append(dst, '*', '^')
		if exp[0] == '-' {
			dst = append(dst, '-')
		}
		if exp[0] == '-' || exp[0] == '+' {
			exp = exp[1:]
		}
		for len(exp) > 1 && exp[0] == '0' {
			exp = exp[1:]
		}
		dst = append(dst, exp...)
	}
	return dst
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// ArchiveMember is one raw member of a tar archive (used to build test archives, including
// deliberately corrupt ones).
type ArchiveMember struct {
	Name string
	Data []byte
}

// archiveTime is the modification time stamped on written members (deterministic output).
var archiveTime = time.Date(2014, 8, 5, 0, 0, 0, 0, time.UTC)

// WriteRawArchive writes members as a tar archive compressed with bzip2, in the given order.
func WriteRawArchive(w io.Writer, members []ArchiveMember) error {
	bz, err := bzip2.NewWriter(w, &bzip2.WriterConfig{Level: bzip2.BestSpeed})
	if err != nil {
		return fmt.Errorf("qm9: write archive: %w", err)
	}
	tw := tar.NewWriter(bz)
	for _, mem := range members {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     mem.Name,
			Mode:     0o644,
			Size:     int64(len(mem.Data)),
			ModTime:  archiveTime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("qm9: write archive: member %s: %w", mem.Name, err)
		}
		if _, err := tw.Write(mem.Data); err != nil {
			return fmt.Errorf("qm9: write archive: member %s: %w", mem.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("qm9: write archive: %w", err)
	}
	if err := bz.Close(); err != nil {
		return fmt.Errorf("qm9: write archive: %w", err)
	}
	return nil
}

// WriteArchive writes mols in the official raw format: a tar.bz2 with one member
// dsgdb9nsd_NNNNNN.xyz per molecule (see AppendXYZ), in the given order.
func WriteArchive(w io.Writer, mols []molecule.Molecule) error {
	members := make([]ArchiveMember, len(mols))
	for i := range mols {
		data, err := AppendXYZ(nil, &mols[i])
		if err != nil {
			return err
		}
		members[i] = ArchiveMember{Name: MemberName(mols[i].ID), Data: data}
	}
	return WriteRawArchive(w, members)
}

// WriteArchiveFile is WriteArchive to a file, written atomically.
func WriteArchiveFile(path string, mols []molecule.Molecule) error {
	return atomicfile.Write(path, func(w io.Writer) error { return WriteArchive(w, mols) })
}
