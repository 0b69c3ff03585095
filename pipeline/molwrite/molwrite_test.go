package molwrite

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/metrics"
)

func nanProps() (p [molecule.NumProperties]float64) {
	for i := range p {
		p[i] = math.NaN()
	}
	return p
}

// formaldehyde: C=O 1.21 Å (double: < 1.25), two C–H 1.10 Å.
func formaldehyde() molecule.Molecule {
	return molecule.Molecule{
		ID: 6, Z: []int{6, 8, 1, 1},
		Positions: [][3]float64{{0, 0, 0}, {1.21, 0, 0}, {-0.55, 0.9526, 0}, {-0.55, -0.9526, 0}},
		Props:     nanProps(), Omega1: math.NaN(),
	}
}

// ammonium: N with four H at 1.03 Å (tetrahedral): bond-order sum 4 → N+.
func ammonium() molecule.Molecule {
	d := 1.03 / math.Sqrt(3)
	return molecule.Molecule{
		ID: 42, Z: []int{7, 1, 1, 1, 1},
		Positions: [][3]float64{{0, 0, 0}, {d, d, d}, {d, -d, -d}, {-d, d, -d}, {-d, -d, d}},
		Props:     nanProps(), Omega1: math.NaN(),
	}
}

func TestSDFWriterBlocks(t *testing.T) {
	m := formaldehyde()
	m.Props[3] = 2.5 // mu
	var buf bytes.Buffer
	if err := WriteSDF(&buf, &m); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	want := []string{
		"enflow_6",
		"  enflow            3D",
		"bonds from the enflow stability bond tables (REFERENCE 3.1)",
		"  4  3  0  0  0  0  0  0  0  0999 V2000",
		"    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0",
		"    1.2100    0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0",
		"   -0.5500    0.9526    0.0000 H   0  0  0  0  0  0  0  0  0  0  0  0",
		"   -0.5500   -0.9526    0.0000 H   0  0  0  0  0  0  0  0  0  0  0  0",
		"  1  2  2  0",
		"  1  3  1  0",
		"  1  4  1  0",
		"M  END",
		"> <id>", "6", "",
		"> <n_atoms>", "4", "",
		"> <mu>", "2.5", "",
		"$$$$", "",
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i+1, lines[i], want[i])
		}
	}
	// V2000 fixed columns: the counts line is 39 characters, atom lines 69.
	if len(lines[3]) != 39 || len(lines[4]) != 69 {
		t.Errorf("counts line %d chars, atom line %d chars; want 39 and 69", len(lines[3]), len(lines[4]))
	}
}

func TestSDFChargeLine(t *testing.T) {
	m := ammonium()
	var buf bytes.Buffer
	if err := WriteSDF(&buf, &m); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	if !strings.Contains(s, "  5  4  0  0  0  0  0  0  0  0999 V2000\n") {
		t.Errorf("counts line missing:\n%s", s)
	}
	if !strings.Contains(s, "\nM  CHG  1   1   1\nM  END\n") {
		t.Errorf("want M  CHG  1   1   1 before M  END:\n%s", s)
	}
	// More than 8 charged atoms: several M  CHG lines of at most 8 entries.
	var many molecule.Molecule
	many.ID, many.Props, many.Omega1 = 7, nanProps(), math.NaN()
	for k := range 9 {
		a := ammonium()
		for i := range a.Z {
			p := a.Positions[i]
			p[0] += 10 * float64(k)
			many.Z = append(many.Z, a.Z[i])
			many.Positions = append(many.Positions, p)
		}
	}
	buf.Reset()
	if err := WriteSDF(&buf, &many); err != nil {
		t.Fatal(err)
	}
	s = buf.String()
	if !strings.Contains(s, "M  CHG  8   1   1   6   1  11   1  16   1  21   1  26   1  31   1  36   1\nM  CHG  1  41   1\n") {
		t.Errorf("charge lines wrong:\n%s", s)
	}
}

func TestFormalChargeRules(t *testing.T) {
	for _, c := range []struct {
		name  string
		z     []int
		bonds []Bond
		want  []int
	}{
		{"N with 4", []int{7, 1, 1, 1, 1}, []Bond{{0, 1, 1}, {0, 2, 1}, {0, 3, 1}, {0, 4, 1}}, []int{1, 0, 0, 0, 0}},
		{"O with 3", []int{8, 1, 1, 1}, []Bond{{0, 1, 1}, {0, 2, 1}, {0, 3, 1}}, []int{1, 0, 0, 0}},
		{"neutral water", []int{8, 1, 1}, []Bond{{0, 1, 1}, {0, 2, 1}}, []int{0, 0, 0}},
		{"C with 5 stays 0", []int{6, 1, 1, 1, 1, 1}, []Bond{{0, 1, 1}, {0, 2, 1}, {0, 3, 1}, {0, 4, 1}, {0, 5, 1}}, []int{0, 0, 0, 0, 0, 0}},
		{"N with 5 stays 0", []int{7, 1, 1, 1, 1, 1}, []Bond{{0, 1, 1}, {0, 2, 1}, {0, 3, 1}, {0, 4, 1}, {0, 5, 1}}, []int{0, 0, 0, 0, 0, 0}},
		{"O deficit stays 0", []int{8, 6}, []Bond{{0, 1, 1}}, []int{0, 0}},
	} {
		got := FormalCharges(c.z, c.bonds)
		for i := range c.want {
			if got[i] != c.want[i] {
				t.Errorf("%s: charges %v, want %v", c.name, got, c.want)
				break
			}
		}
	}
}

func TestXYZAndExtXYZ(t *testing.T) {
	m := formaldehyde()
	m.Split = "test"
	m.Props[0] = 57.25
	m.SMILES[0] = `C\C=C/"x"`
	var buf bytes.Buffer
	if err := Write(&buf, XYZ, &m); err != nil {
		t.Fatal(err)
	}
	want := "4\nenflow molecule id=6 split=test\nC  0 0 0\nO  1.21 0 0\nH  -0.55 0.9526 0\nH  -0.55 -0.9526 0\n"
	if buf.String() != want {
		t.Errorf("xyz:\n%q\nwant\n%q", buf.String(), want)
	}
	buf.Reset()
	if err := Write(&buf, ExtXYZ, &m); err != nil {
		t.Fatal(err)
	}
	comment := strings.Split(buf.String(), "\n")[1]
	wantC := `Properties=species:S:1:pos:R:3 id=6 n_atoms=4 split=test A=57.25 smiles="C\\C=C/\"x\"" pbc="F F F"`
	if comment != wantC {
		t.Errorf("extxyz comment\n%s\nwant\n%s", comment, wantC)
	}
	bad := formaldehyde()
	bad.Positions[1][2] = math.NaN()
	for _, f := range []Format{XYZ, ExtXYZ, SDF} {
		if err := Write(&buf, f, &bad); err == nil || !strings.Contains(err.Error(), "atom 1: field positions[2]") {
			t.Errorf("%v: NaN coordinate: err %v", f, err)
		}
	}
	bad = formaldehyde()
	bad.Z[2] = 17
	if err := WriteSDF(&buf, &bad); err == nil || !strings.Contains(err.Error(), "field z") {
		t.Errorf("unknown element: err %v", err)
	}
}

// TestBondsMatchStability: the bond orders of every atom sum to the stability metric's total
// on the real QM9 test split, so the SDF bonds are the metric's bonds.
func TestBondsMatchStability(t *testing.T) {
	npz := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	mols, err := qm9.ReadNPZ(npz, "test")
	if err != nil {
		t.Fatal(err)
	}
	var totals []int
	nBonds := 0
	for i := range mols {
		m := &mols[i]
		b, err := Bonds(m)
		if err != nil {
			t.Fatal(err)
		}
		nBonds += len(b)
		types, _ := metrics.TypesFromNumbers(nil, m.Z)
		totals, err = metrics.BondTotals(totals, types, m.Positions)
		if err != nil {
			t.Fatal(err)
		}
		sums := BondOrderSums(len(m.Z), b)
		for a := range sums {
			if sums[a] != totals[a] {
				t.Fatalf("molecule %d atom %d: bond-order sum %d, stability total %d", m.ID, a, sums[a], totals[a])
			}
		}
	}
	if nBonds != 243849 {
		t.Errorf("%d bonds in the test split, want 243849", nBonds)
	}
}

func writeTable(t *testing.T, path string, mols []molecule.Molecule) {
	t.Helper()
	w, err := table.NewMoleculeWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mols {
		if err := w.Write(&mols[i]); err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestExportFilesAtomic(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.parquet")
	writeTable(t, in, []molecule.Molecule{formaldehyde(), ammonium()})
	out := filepath.Join(dir, "all.sdf")
	st, err := Export(context.Background(), in, out, Options{Format: SDF})
	if err != nil {
		t.Fatal(err)
	}
	if st.Molecules != 2 || st.Files != 1 || st.Bonds != 7 || st.Charged != 1 || st.Atoms != 9 {
		t.Errorf("stats %+v", st)
	}
	data, _ := os.ReadFile(out)
	if n := strings.Count(string(data), "$$$$\n"); n != 2 {
		t.Errorf("%d records", n)
	}
	per := filepath.Join(dir, "per")
	if st, err = Export(context.Background(), in, per, Options{Format: ExtXYZ, PerMolecule: true}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(per)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "mol_000006.xyz,mol_000042.xyz" || st.Files != 2 {
		t.Errorf("files %v, stats %+v", names, st)
	}
	// Duplicate ids would overwrite each other's files: an error naming the id.
	dup := filepath.Join(dir, "dup.parquet")
	writeTable(t, dup, []molecule.Molecule{formaldehyde(), formaldehyde()})
	if _, err := Export(context.Background(), dup, filepath.Join(dir, "dupdir"), Options{Format: SDF, PerMolecule: true}); err == nil ||
		!strings.Contains(err.Error(), "duplicate id 6") {
		t.Errorf("duplicate ids: err %v", err)
	}
	// A failing export leaves no file and no temporary behind.
	bad := filepath.Join(dir, "missing.parquet")
	target := filepath.Join(dir, "out2", "x.xyz")
	if _, err := Export(context.Background(), bad, target, Options{Format: XYZ}); err == nil {
		t.Fatal("missing input: no error")
	}
	left, _ := os.ReadDir(filepath.Dir(target))
	if len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
