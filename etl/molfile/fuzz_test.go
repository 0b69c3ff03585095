package molfile

// Fuzz targets (run by scripts/fuzz/run.sh): on any input the parsers return records or an
// *Error, never panic, and every record they return is a valid molecule whose atom lines
// are inside the file.

import (
	"bytes"
	"errors"
	"testing"
)

func fuzzParse(f *testing.F, format Format, fixtures ...string) {
	for _, name := range fixtures {
		f.Add(readFixture(f, name))
	}
	for _, tc := range badInputs {
		if tc.format == format {
			f.Add([]byte(tc.data))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(format, "fuzz", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Record < 1 || pe.Line < 1 {
				t.Fatalf("error %v is not a located *Error", err)
			}
			return
		}
		nLines := bytes.Count(data, []byte("\n")) + 1
		for i := range rs {
			r := &rs[i]
			if err := r.Molecule.Validate(); err != nil {
				t.Fatalf("record %d: %v", i+1, err)
			}
			if r.Index != i+1 || len(r.AtomLines) != r.Molecule.NAtoms() {
				t.Fatalf("record %d: index %d, %d atom lines for %d atoms", i+1, r.Index, len(r.AtomLines), r.Molecule.NAtoms())
			}
			for _, l := range r.AtomLines {
				if l < 1 || l > nLines {
					t.Fatalf("record %d: atom line %d outside 1..%d", i+1, l, nLines)
				}
			}
		}
	})
}

func FuzzParseXYZ(f *testing.F)    { fuzzParse(f, XYZ, "h2s_hcl.xyz") }
func FuzzParseExtXYZ(f *testing.F) { fuzzParse(f, ExtXYZ, "frames.extxyz") }
func FuzzParseSDF(f *testing.F)    { fuzzParse(f, SDF, "mols.sdf") }
