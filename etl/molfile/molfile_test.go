package molfile

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file      string
		format    Format
		z         [][]int
		firstPos  [][3]float64 // first atom of each record
		atomLine1 []int        // line of each record's first atom
		check     func(t *testing.T, rs []Record)
	}{
		{"h2s_hcl.xyz", XYZ, [][]int{{16, 1, 1}, {17, 1}}, [][3]float64{{0, 0, 0.102}, {0, 0, 0}}, []int{3, 8},
			func(t *testing.T, rs []Record) {
				if rs[0].Molecule.Name != "hydrogen sulfide" || rs[1].Molecule.Source != "h2s_hcl.xyz#2" {
					t.Errorf("name %q source %q", rs[0].Molecule.Name, rs[1].Molecule.Source)
				}
			}},
		{"frames.extxyz", ExtXYZ, [][]int{{17, 1}, {8, 1, 1}}, [][3]float64{{0, 0, 0}, {0, 0, 0.1173}}, []int{3, 7},
			func(t *testing.T, rs []Record) {
				want := map[string]any{"energy": -12.5, "name": "hydrogen chloride", "pbc": "F F F"}
				if !reflect.DeepEqual(rs[0].Molecule.Properties, want) {
					t.Errorf("properties %v, want %v", rs[0].Molecule.Properties, want)
				}
				if got := rs[1].Molecule.Properties["config_type"]; got != "water" {
					t.Errorf("config_type %v", got)
				}
			}},
		{"mols.sdf", SDF, [][]int{{6, 16, 1, 1, 1, 1}, {7, 1, 1, 1, 1}}, [][3]float64{{0, 0, 0}, {0, 0, 0}}, []int{5, 29},
			func(t *testing.T, rs []Record) {
				m := rs[0].Molecule
				if m.Name != "methanethiol" || len(m.Bonds) != 5 || m.Bonds[4] != (molecule.Bond{A: 1, B: 5, Order: 1}) {
					t.Errorf("record 1: name %q bonds %v", m.Name, m.Bonds)
				}
				if m.Properties["energy"] != -438.7 || m.Properties["comment"] != "line one\nline two" {
					t.Errorf("record 1 properties %v", m.Properties)
				}
				if !reflect.DeepEqual(rs[1].Molecule.FormalCharges, []int{1, 0, 0, 0, 0}) {
					t.Errorf("record 2 formal charges %v", rs[1].Molecule.FormalCharges)
				}
				if rs[1].Line != 25 {
					t.Errorf("record 2 starts at line %d, want 25", rs[1].Line)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			rs, err := Parse(tc.format, tc.file, readFixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != len(tc.z) {
				t.Fatalf("%d records, want %d", len(rs), len(tc.z))
			}
			for i, r := range rs {
				if !reflect.DeepEqual(r.Molecule.Z, tc.z[i]) {
					t.Errorf("record %d: z %v, want %v", i+1, r.Molecule.Z, tc.z[i])
				}
				if r.Molecule.Positions[0] != tc.firstPos[i] {
					t.Errorf("record %d: first atom at %v, want %v", i+1, r.Molecule.Positions[0], tc.firstPos[i])
				}
				if r.Index != i+1 || r.AtomLines[0] != tc.atomLine1[i] || len(r.AtomLines) != len(tc.z[i]) {
					t.Errorf("record %d: index %d, atom lines %v", i+1, r.Index, r.AtomLines)
				}
				if err := r.Molecule.Validate(); err != nil {
					t.Error(err)
				}
				if !math.IsNaN(r.Molecule.Props[0]) || !math.IsNaN(r.Molecule.Omega1) {
					t.Errorf("record %d: QM9 properties %v / omega1 %v, want NaN (null)", i+1, r.Molecule.Props, r.Molecule.Omega1)
				}
			}
			tc.check(t, rs)
		})
	}
}

// TestParseQM9AsPlainXYZ: a raw QM9 file (extended XYZ with Mulliken charges, "*^" exponents
// and the frequency/SMILES/InChI trailer) parses as plain XYZ, also concatenated.
func TestParseQM9AsPlainXYZ(t *testing.T) {
	qm9 := "5\ngdb 1\t157.7118\t157.70997\t157.70699\t0.\t13.21\t-0.3877\t0.1171\t0.5048\t35.3641\t0.044749\t-40.47893\t-40.476062\t-40.475117\t-40.498597\t6.469\t\n" +
		"C\t-0.0126981359\t 1.0858041578\t 0.0080009958\t-0.535689\n" +
		"H\t 0.002150416\t-0.0060313176\t 0.0019761204\t 0.133921\n" +
		"H\t 1.0117308433\t 1.4637511618\t 0.0002765748\t 0.133922\n" +
		"H\t-0.540815069\t 1.4475266138\t-0.8766437152\t 0.133923\n" +
		"H\t-0.5238136345\t 1.4379326443\t 0.9063972942\t 0.133923\n" +
		"1341.307\t1341.3284\t1341.365\t1562.6731\t1562.7453\t3038.3205\t3151.6034\t3151.6788\t3151.7078\n" +
		"C\tC\t\nInChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4\n"
	rs, err := ParseXYZ("qm9.xyz", []byte(qm9+qm9))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || !reflect.DeepEqual(rs[1].Molecule.Z, []int{6, 1, 1, 1, 1}) || rs[1].Line != 11 {
		t.Fatalf("got %d records, second %+v", len(rs), rs[len(rs)-1])
	}
	if rs[0].Molecule.Positions[0] != [3]float64{-0.0126981359, 1.0858041578, 0.0080009958} {
		t.Errorf("first atom %v", rs[0].Molecule.Positions[0])
	}
}

func TestParseLarge(t *testing.T) {
	// A 40-atom linear chain and a Xe atom: general elements and sizes above QM9's 29.
	var b strings.Builder
	fmt.Fprintf(&b, "41\nchain\n")
	for i := range 40 {
		fmt.Fprintf(&b, "C %d.0 0 0\n", i)
	}
	b.WriteString("Xe 0 5 0\n")
	rs, err := ParseXYZ("big.xyz", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := rs[0].Molecule.NAtoms(); n != 41 || rs[0].Molecule.Z[40] != 54 {
		t.Fatalf("%d atoms, last z %d", n, rs[0].Molecule.Z[40])
	}
}

func TestSymbols(t *testing.T) {
	for _, tc := range []struct {
		s string
		z int
	}{{"Cl", 17}, {"cl", 17}, {"CL", 17}, {" Br ", 35}, {"og", 118}, {"H", 1}, {"Xx", 0}, {"", 0}, {"Uue", 0}} {
		if got := molecule.NumberOfSymbol(tc.s); got != tc.z {
			t.Errorf("NumberOfSymbol(%q) = %d, want %d", tc.s, got, tc.z)
		}
	}
	for z := 1; z <= molecule.MaxZ; z++ {
		if s := molecule.Symbol(z); molecule.NumberOfSymbol(s) != z || s == "" {
			t.Errorf("Symbol(%d) = %q does not round-trip", z, s)
		}
	}
	if molecule.Symbol(0) != "" || molecule.Symbol(119) != "" {
		t.Error("Symbol outside 1..118 is not empty")
	}
}

// badInputs are malformed files with the record and line their error must name.
var badInputs = []struct {
	name   string
	format Format
	data   string
	record int
	line   int
	want   string
}{
	{"xyz unknown element", XYZ, "2\nc\nC 0 0 0\nQq 1 0 0\n", 1, 4, `unknown element symbol "Qq"`},
	{"xyz unknown element record 2", XYZ, "1\na\nH 0 0 0\n1\nb\nZz 0 0 0\n", 2, 6, `unknown element symbol "Zz"`},
	{"xyz too few atoms", XYZ, "3\nc\nC 0 0 0\nH 1 0 0\n", 1, 1, "atom count 3 does not match: the file ends after 2 atom lines"},
	{"xyz too few atoms before next frame", XYZ, "3\nc\nC 0 0 0\n1\nd\nH 0 0 0\n", 1, 4, "a count line follows 1 atom lines"},
	{"xyz too many atoms", XYZ, "1\nc\nC 0 0 0\nH 1 0 0\n", 1, 4, "another atom line"},
	{"xyz missing coordinates", XYZ, "2\nc\nC 0 0 0\nH 1 0\n", 1, 4, "missing coordinates"},
	{"xyz NaN", XYZ, "1\nc\nC 0 NaN 0\n", 1, 3, `non-finite number "NaN"`},
	{"xyz Inf", XYZ, "1\nc\nC 0 0 -Inf\n", 1, 3, "non-finite number"},
	{"xyz overflow", XYZ, "1\nc\nC 1e999 0 0\n", 1, 3, "malformed number"},
	{"xyz empty", XYZ, "", 1, 1, "empty input"},
	{"xyz blank", XYZ, "\n\n", 1, 2, "empty input"},
	{"xyz no count", XYZ, "C 0 0 0\n", 1, 1, "expected an atom count line"},
	{"extxyz unknown element", ExtXYZ, "1\nProperties=species:S:1:pos:R:3\nXy 0 0 0\n", 1, 3, `unknown element symbol "Xy"`},
	{"extxyz wrong columns", ExtXYZ, "1\nProperties=species:S:1:pos:R:3:forces:R:3\nH 0 0 0\n", 1, 3, "4 columns, want 7"},
	{"extxyz missing coordinates", ExtXYZ, "1\nenergy=1\nH 0 0\n", 1, 3, "missing coordinates"},
	{"extxyz NaN", ExtXYZ, "1\nenergy=1\nH 0 0 nan\n", 1, 3, "non-finite"},
	{"extxyz unterminated quote", ExtXYZ, "1\nname=\"abc\nH 0 0 0\n", 1, 2, "unterminated quoted value"},
	{"extxyz no pos", ExtXYZ, "1\nProperties=species:S:1:vel:R:3\nH 0 0 0\n", 1, 2, "want species:S:1"},
	{"extxyz count mismatch", ExtXYZ, "2\nenergy=1\nH 0 0 0\n", 1, 1, "atom count 2 does not match"},
	{"extxyz empty", ExtXYZ, "   \n", 1, 1, "empty input"},
	{"sdf unknown element", SDF, sdfRec("Qq", "M  END\n"), 1, 5, `unknown element symbol "Qq"`},
	{"sdf no M END", SDF, sdfRec("C", "$$$$\n"), 1, 7, `no "M  END"`},
	{"sdf no M END at EOF", SDF, sdfRec("C", ""), 1, 6, `no "M  END"`},
	{"sdf no M END before data", SDF, sdfRec("C", "> <e>\n1\n\n$$$$\n"), 1, 7, `no "M  END"`},
	{"sdf record 2 no M END", SDF, sdfRec("C", "M  END\n$$$$\n") + sdfRec("O", "$$$$\n"), 2, 15, `no "M  END"`},
	{"sdf too few atoms", SDF, "t\n\n\n  3  1  0  0  0  0  0  0  0  0999 V2000\n    0.0000    0.0000    0.0000 C   0  0\n    1.0000    0.0000    0.0000 O   0  0\n  1  2  2  0\nM  END\n", 1, 7, "a bond line follows 2 atom lines"},
	{"sdf too many atoms", SDF, "t\n\n\n  1  1  0  0  0  0  0  0  0  0999 V2000\n    0.0000    0.0000    0.0000 C   0  0\n    1.0000    0.0000    0.0000 O   0  0\n  1  2  2  0\nM  END\n", 1, 6, "another atom line"},
	{"sdf atoms cut by M END", SDF, "t\n\n\n  2  0  0  0  0  0  0  0  0  0999 V2000\n    0.0000    0.0000    0.0000 C   0  0\nM  END\n", 1, 6, "atom count 2 (counts line 4) does not match: 1 atom lines"},
	{"sdf missing coordinates", SDF, "t\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n    0.0000    0.0000\nM  END\n", 1, 5, "missing coordinates"},
	{"sdf NaN", SDF, "t\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n       NaN    0.0000    0.0000 C   0  0\nM  END\n", 1, 5, "non-finite"},
	{"sdf bad CHG", SDF, sdfRec("C", "M  CHG  1   2   1\nM  END\n"), 1, 7, "atom 2 outside 1..1"},
	{"sdf bond count too large", SDF, "t\n\n\n1 4444444410\n    0.0000    0.0000    0.0000 C   0  0\nM  END\n", 1, 4, "4444444410 bonds, want 0..999"},
	{"sdf negative bond count", SDF, "t\n\n\n  2 -1\n    0.0000    0.0000    0.0000 C   0  0\n    1.0000    0.0000    0.0000 O   0  0\nM  END\n", 1, 4, "-1 bonds, want 0..999"},
	{"sdf V3000", SDF, "t\n\n\n  0  0  0     0  0            999 V3000\n", 1, 4, "V3000"},
	{"sdf empty", SDF, "", 1, 1, "empty input"},
	{"sdf truncated header", SDF, "title\nprog\n", 1, 2, "truncated header"},
}

func sdfRec(sym, tail string) string {
	return fmt.Sprintf("mol\n  prog\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n    0.0000    0.0000    0.0000 %-3s 0  0  0  0  0  0  0  0  0  0  0  0\n  \n", sym) + tail
}

func TestParseErrors(t *testing.T) {
	for _, tc := range badInputs {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse(tc.format, "in/bad.file", []byte(tc.data))
			if err == nil {
				t.Fatalf("parsed %d records, want an error", len(rs))
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *molfile.Error", err, err)
			}
			msg := err.Error()
			for _, w := range []string{"in/bad.file", fmt.Sprintf("record %d:", tc.record), fmt.Sprintf("line %d:", tc.line), tc.want} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestReadXYZDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadXYZDir(dir); err == nil || !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty dir: %v", err)
	}
	for name, body := range map[string]string{"b.xyz": "1\nb\nH 0 0 0\n", "a.xyz": "2\na\nH 0 0 0\nH 0 0 0.74\n", "c.txt": "junk"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := ReadXYZDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Molecule.Name != "a" || rs[1].Molecule.Source != "b.xyz#1" {
		t.Fatalf("records %+v", rs)
	}
}
