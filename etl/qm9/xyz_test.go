package qm9

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// methaneXYZ is gdb 1 (CH4) in the raw layout, tab-separated with the official quirks
// (a "0." value, extra spaces before positive numbers, a trailing tab on the properties line).
const methaneXYZ = "5\n" +
	"gdb 1\t157.7118\t157.70997\t157.70699\t0.\t13.21\t-0.3877\t0.1171\t0.5048\t35.3641\t0.044749\t-40.47893\t-40.476062\t-40.475117\t-40.498597\t6.469\t\n" +
	"C\t-0.0126981359\t 1.0858041578\t 0.0080009958\t-0.535689\n" +
	"H\t 0.002150416\t-0.0060313176\t 0.0019761204\t 0.133921\n" +
	"H\t 1.0117308433\t 1.4637511618\t 0.0002765748\t 0.133922\n" +
	"H\t-0.540815069\t 1.4475266138\t-0.8766437152\t 0.133923\n" +
	"H\t-0.5238136345\t 1.4379326443\t 0.9063972942\t 0.133923\n" +
	"1341.307\t1341.3284\t1341.365\t1562.6731\t1562.7453\t3038.3205\t3151.6034\t3151.6788\t3151.7078\n" +
	"C\tC\t\n" +
	"InChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4\n"

const methaneName = "dsgdb9nsd_000001.xyz"

// replaceLine replaces 1-based line n of s.
func replaceLine(s string, n int, line string) string {
	lines := strings.Split(s, "\n")
	lines[n-1] = line
	return strings.Join(lines, "\n")
}

// firstLines keeps the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	return strings.Join(lines[:n], "")
}

func TestParseXYZMethane(t *testing.T) {
	variants := map[string]string{
		"official":           methaneXYZ,
		"crlf":               strings.ReplaceAll(methaneXYZ, "\n", "\r\n"),
		"spaces":             strings.ReplaceAll(methaneXYZ, "\t", "   "),
		"no final newline":   strings.TrimSuffix(methaneXYZ, "\n"),
		"trailing blank":     methaneXYZ + "\n  \n",
		"directory in name":  methaneXYZ,
		"unofficial name ok": methaneXYZ,
	}
	names := map[string]string{"directory in name": "data/" + methaneName, "unofficial name ok": "methane.xyz"}
	for vname, text := range variants {
		t.Run(vname, func(t *testing.T) {
			name := methaneName
			if n, ok := names[vname]; ok {
				name = n
			}
			m, err := ParseXYZ(name, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.ValidateQM9(); err != nil {
				t.Fatal(err)
			}
			if m.ID != 1 || m.NAtoms() != 5 || m.Z[0] != 6 || m.Z[4] != 1 {
				t.Errorf("id %d, atoms %v", m.ID, m.Z)
			}
			if m.Positions[0] != [3]float64{-0.0126981359, 1.0858041578, 0.0080009958} {
				t.Errorf("first position %v", m.Positions[0])
			}
			if m.Positions[4][2] != 0.9063972942 || m.Mulliken[0] != -0.535689 {
				t.Errorf("last z %v, first charge %v", m.Positions[4][2], m.Mulliken[0])
			}
			wantProps := [molecule.NumProperties]float64{157.7118, 157.70997, 157.70699, 0, 13.21, -0.3877, 0.1171, 0.5048, 35.3641, 0.044749, -40.47893, -40.476062, -40.475117, -40.498597, 6.469}
			if m.Props != wantProps {
				t.Errorf("props %v", m.Props)
			}
			if m.Omega1 != 3151.7078 || len(m.Freqs) != 9 {
				t.Errorf("omega1 %v, %d frequencies", m.Omega1, len(m.Freqs))
			}
			if m.SMILES != [2]string{"C", "C"} || m.InChI[1] != "InChI=1S/CH4/h1H4" {
				t.Errorf("smiles %q inchi %q", m.SMILES, m.InChI)
			}
			if m.Split != "" {
				t.Errorf("split %q", m.Split)
			}
		})
	}
}

func TestParseXYZMathematicaExponents(t *testing.T) {
	text := replaceLine(methaneXYZ, 2, "gdb 1\t157.7118\t157.70997\t157.70699\t6.8*^-6\t13.21\t-0.3877\t0.1171\t0.5048\t35.3641\t0.044749\t-40.47893\t-40.476062\t-40.475117\t-40.498597\t1.5*^2")
	text = replaceLine(text, 3, "C\t-1.26981359*^-2\t1.0858041578\t8.*^-3\t-5.35689*^-1")
	m, err := ParseXYZ(methaneName, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if m.Props[3] != 6.8e-6 || m.Props[14] != 150 {
		t.Errorf("mu %v Cv %v", m.Props[3], m.Props[14])
	}
	if m.Positions[0] != [3]float64{-0.0126981359, 1.0858041578, 0.008} || m.Mulliken[0] != -0.535689 {
		t.Errorf("position %v charge %v", m.Positions[0], m.Mulliken[0])
	}
}

func TestParseXYZErrors(t *testing.T) {
	atom := "C\t-0.0126981359\t 1.0858041578\t 0.0080009958\t-0.535689"
	tests := []struct {
		name  string
		file  string
		text  string
		line  int
		field string
		msg   string
	}{
		{"non-integer count", methaneName, replaceLine(methaneXYZ, 1, "five"), 1, "n_atoms", `parsing "five"`},
		{"two values on count line", methaneName, replaceLine(methaneXYZ, 1, "5 6"), 1, "n_atoms", "want 1 value"},
		{"zero atoms", methaneName, replaceLine(methaneXYZ, 1, "0"), 1, "n_atoms", "0 atoms"},
		{"too many atoms", methaneName, replaceLine(methaneXYZ, 1, "30"), 1, "n_atoms", "30 atoms"},
		{"more atoms declared than lines", methaneName, replaceLine(methaneXYZ, 1, "6"), 8, "atoms", "atom 6 of 6: want 5 fields"},
		{"file ends inside atoms", methaneName, firstLines(methaneXYZ, 5), 6, "atoms", "after 3 of 5 declared atoms"},
		{"malformed x", "dsgdb9nsd_000017.xyz", replaceLine(replaceLine(methaneXYZ, 2, strings.Replace(strings.SplitN(methaneXYZ, "\n", 3)[1], "gdb 1", "gdb 17", 1)), 4, "H\t1.2.3\t0\t0\t0"), 4, "x", `strconv.ParseFloat: parsing "1.2.3": invalid syntax`},
		{"NaN y", methaneName, replaceLine(methaneXYZ, 3, "C\t0\tNaN\t0\t0"), 3, "y", "non-finite"},
		{"Inf z", methaneName, replaceLine(methaneXYZ, 3, "C\t0\t0\t-Inf\t0"), 3, "z", "non-finite"},
		{"overflowing z", methaneName, replaceLine(methaneXYZ, 3, "C\t0\t0\t1*^400\t0"), 3, "z", "value out of range"},
		{"bad mulliken", methaneName, replaceLine(methaneXYZ, 3, "C\t0\t0\t0\tq"), 3, "mulliken", "invalid syntax"},
		{"unknown element", methaneName, replaceLine(methaneXYZ, 5, "Cl\t0\t0\t0\t0"), 5, "element", `unknown element "Cl"`},
		{"atom line missing charge", methaneName, replaceLine(methaneXYZ, 6, "H\t0\t0\t0"), 6, "atoms", "got 4"},
		{"wrong tag", methaneName, strings.Replace(methaneXYZ, "gdb 1", "gdb9 1", 1), 2, "tag", `"gdb9"`},
		{"non-integer index", methaneName, strings.Replace(methaneXYZ, "gdb 1", "gdb x1", 1), 2, "index", "invalid syntax"},
		{"id mismatch", "dsgdb9nsd_000017.xyz", methaneXYZ, 2, "index", "file name says id 17, properties line says 1"},
		{"bad property", methaneName, strings.Replace(methaneXYZ, "-0.3877", "-0.38.77", 1), 2, "homo", "invalid syntax"},
		{"missing property", methaneName, strings.Replace(methaneXYZ, "\t6.469", "", 1), 2, "properties", "got 16"},
		{"bad frequency", methaneName, strings.Replace(methaneXYZ, "1562.6731", "15x", 1), 8, "frequencies", "value 4"},
		{"empty frequency line", methaneName, replaceLine(methaneXYZ, 8, ""), 8, "frequencies", "no values"},
		{"missing frequencies", methaneName, firstLines(methaneXYZ, 7), 8, "frequencies", "missing line"},
		{"one SMILES", methaneName, replaceLine(methaneXYZ, 9, "C"), 9, "smiles", "want 2 values, got 1"},
		{"missing InChI", methaneName, firstLines(methaneXYZ, 9), 10, "inchi", "missing line"},
		{"extra content", methaneName, methaneXYZ + "junk\n", 11, "", "unexpected content"},
		{"empty file", methaneName, "", 1, "n_atoms", "missing line"},
		{"atom line where properties expected", methaneName, replaceLine(methaneXYZ, 2, atom), 2, "properties", "got 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseXYZ(tc.file, []byte(tc.text))
			if err == nil {
				t.Fatalf("no error; parsed molecule %d", m.ID)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.File != tc.file || pe.Line != tc.line || pe.Field != tc.field {
				t.Errorf("located at %s line %d field %q, want %s line %d field %q (%v)", pe.File, pe.Line, pe.Field, tc.file, tc.line, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "qm9: "+tc.file) {
				t.Errorf("error %q, want prefix %q and %q", err, "qm9: "+tc.file, tc.msg)
			}
		})
	}
}

func TestParseErrorFormat(t *testing.T) {
	_, err := ParseXYZ("dsgdb9nsd_000017.xyz", []byte(replaceLine(strings.Replace(methaneXYZ, "gdb 1\t", "gdb 17\t", 1), 4, "H\t1.2.3\t0\t0\t0")))
	want := `qm9: dsgdb9nsd_000017.xyz line 4: field x: strconv.ParseFloat: parsing "1.2.3": invalid syntax`
	if err == nil || err.Error() != want {
		t.Errorf("error %v\nwant  %s", err, want)
	}
	pe := &ParseError{Archive: "a.tar.bz2", File: "m.xyz", Err: errors.New("boom")}
	if got := pe.Error(); got != "qm9: a.tar.bz2: member m.xyz: boom" {
		t.Errorf("archive form %q", got)
	}
}

func TestIDFromName(t *testing.T) {
	tests := []struct {
		name string
		id   int64
		ok   bool
	}{
		{"dsgdb9nsd_000001.xyz", 1, true},
		{"dsgdb9nsd_133885.xyz", 133885, true},
		{"some/dir/dsgdb9nsd_000017.xyz", 17, true},
		{"dsgdb9nsd_000000.xyz", 0, false},
		{"dsgdb9nsd_00001a.xyz", 0, false},
		{"dsgdb9nsd_.xyz", 0, false},
		{"methane.xyz", 0, false},
		{"dsgdb9nsd_000001.txt", 0, false},
	}
	for _, tc := range tests {
		id, ok := IDFromName(tc.name)
		if id != tc.id || ok != tc.ok {
			t.Errorf("IDFromName(%q) = %d, %v; want %d, %v", tc.name, id, ok, tc.id, tc.ok)
		}
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0.", 0, true},
		{"-40.47893", -40.47893, true},
		{"6.8*^-6", 6.8e-6, true},
		{"1.*^3", 1000, true},
		{"1e-3", 1e-3, true},
		{"nan", 0, false},
		{"inf", 0, false},
		{"*^", 0, false},
		{"", 0, false},
		{"1,5", 0, false},
	}
	for _, tc := range tests {
		got, err := parseNumber([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseNumber(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && math.IsNaN(got) {
			t.Errorf("NaN")
		}
	}
}
