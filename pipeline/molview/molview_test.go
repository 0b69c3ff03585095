package molview

import (
	"encoding/xml"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/molwrite"
)

// elem is one parsed SVG element.
type elem struct {
	name  string
	attrs map[string]string
	text  string
}

// parseSVG parses s as XML (failing the test if it is not well-formed) and returns its
// elements in document order.
func parseSVG(t *testing.T, s string) []elem {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var out []elem
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			e := elem{name: v.Name.Local, attrs: map[string]string{}}
			for _, a := range v.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
		case xml.CharData:
			if len(out) > 0 {
				out[len(out)-1].text += string(v)
			}
		}
	}
	return out
}

func byClass(es []elem, class string) []elem {
	var out []elem
	for _, e := range es {
		if e.attrs["class"] == class {
			out = append(out, e)
		}
	}
	return out
}

func num(t *testing.T, e elem, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(e.attrs[key], 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", e.name, key, e.attrs[key], err)
	}
	return v
}

// shadeOf returns the factor f with fill = f·base (channel by channel, to rounding), or an
// error message.
func shadeOf(fill, base string) (float64, bool) {
	f, b := hexColor(fill), hexColor(base)
	bc, fc := []float64{b.r, b.g, b.b}, []float64{f.r, f.g, f.b}
	k := slices.Index(bc, slices.Max(bc))
	s := fc[k] / bc[k]
	for i := range 3 {
		if math.Abs(fc[i]-s*bc[i]) > 1.01 {
			return s, false
		}
	}
	return s, true
}

var (
	formaldehyde = molecule.Molecule{ID: 7, Z: []int{6, 8, 1, 1},
		Positions: [][3]float64{{0, 0, 0}, {1.21, 0, 0}, {-0.55, 0.94, 0}, {-0.55, -0.94, 0.05}}}
	// Water with one hydrogen pulled 3 Å away: O and that H are unstable, the other H is fine.
	brokenWater = molecule.Molecule{ID: 9, Z: []int{8, 1, 1},
		Positions: [][3]float64{{0, 0, 0}, {0.9572, 0, 0}, {-3, 0.2, 0.1}}}
	// H2S + HCl (the etl/molfile fixture's elements): the extended bond tables.
	hydrogenSulfide = molecule.Molecule{ID: 3, Z: []int{16, 1, 1},
		Positions: [][3]float64{{0, 0, 0}, {1.336, 0, 0}, {-0.05, 1.335, 0}}}
)

func mustView(t *testing.T, m *molecule.Molecule) Molecule {
	t.Helper()
	v, err := FromRecord(m)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFormula(t *testing.T) {
	for _, tc := range []struct {
		z    []int
		want string
	}{
		{[]int{6, 1, 1, 1, 1}, "CH4"},
		{[]int{8, 1, 1}, "H2O"},
		{[]int{6, 6, 8, 1, 1, 1, 1, 1, 1}, "C2H6O"},
		{[]int{17, 1}, "ClH"},
		{[]int{7, 6, 1}, "CHN"},
		{[]int{9, 9, 6, 17, 17}, "CCl2F2"},
		{[]int{16}, "S"},
	} {
		if got := Formula(tc.z); got != tc.want {
			t.Errorf("Formula(%v) = %q, want %q", tc.z, got, tc.want)
		}
	}
}

func TestMoleculeSVG(t *testing.T) {
	type bondWant struct{ i, j, order int }
	for _, tc := range []struct {
		name     string
		m        molecule.Molecule
		bonds    []bondWant
		unstable []int
		verdict  string
	}{
		{"formaldehyde C=O", formaldehyde, []bondWant{{0, 1, 2}, {0, 2, 1}, {0, 3, 1}}, nil, "4 atoms · stable"},
		{"broken water", brokenWater, []bondWant{{0, 1, 1}}, []int{0, 2}, "3 atoms · unstable (2)"},
		{"H2S: extended tables", hydrogenSulfide, []bondWant{{0, 1, 1}, {0, 2, 1}}, []int{0}, "3 atoms · unstable (1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := mustView(t, &tc.m)
			svg := v.SVG(Options{})
			es := parseSVG(t, svg)
			atoms := byClass(es, "atom")
			if len(atoms) != len(tc.m.Z) {
				t.Fatalf("%d atom circles, want %d", len(atoms), len(tc.m.Z))
			}
			seen := map[int]bool{}
			for _, a := range atoms {
				i := int(num(t, a, "data-i"))
				seen[i] = true
				z := tc.m.Z[i]
				if a.attrs["data-el"] != molecule.Symbol(z) {
					t.Errorf("atom %d: data-el %q, want %q", i, a.attrs["data-el"], molecule.Symbol(z))
				}
				if f, ok := shadeOf(a.attrs["fill"], ElementColor(z)); !ok || f < minShade-0.01 || f > 1.01 {
					t.Errorf("atom %d (%s): fill %s is not a shade of %s (factor %.3f)", i, molecule.Symbol(z), a.attrs["fill"], ElementColor(z), f)
				}
			}
			if len(seen) != len(tc.m.Z) {
				t.Errorf("atoms drawn: %v", seen)
			}
			var rings []int
			for _, r := range byClass(es, "unstable") {
				rings = append(rings, int(num(t, r, "data-i")))
				if r.attrs["stroke"] != ringColor || r.attrs["fill"] != "none" {
					t.Errorf("unstable mark %v is not a red ring", r.attrs)
				}
			}
			slices.Sort(rings)
			if !slices.Equal(rings, tc.unstable) {
				t.Errorf("unstable marks on atoms %v, want %v", rings, tc.unstable)
			}
			var bonds []bondWant
			lines := 0
			for k, e := range es {
				if e.attrs["class"] != "bond" {
					continue
				}
				b := bondWant{int(num(t, e, "data-i")), int(num(t, e, "data-j")), int(num(t, e, "data-order"))}
				bonds = append(bonds, b)
				n := 0
				for _, c := range es[k+1:] {
					if c.name != "line" {
						break
					}
					n++
				}
				if n != b.order {
					t.Errorf("bond %v drawn with %d sticks, want %d", b, n, b.order)
				}
				lines += n
			}
			slices.SortFunc(bonds, func(a, b bondWant) int { return (a.i*100 + a.j) - (b.i*100 + b.j) })
			if !slices.Equal(bonds, tc.bonds) {
				t.Errorf("bonds %v, want %v", bonds, tc.bonds)
			}
			if c := byClass(es, "verdict"); len(c) != 1 || c[0].text != tc.verdict {
				t.Errorf("verdict caption %v, want %q", c, tc.verdict)
			}
			if again := v.SVG(Options{}); again != svg {
				t.Error("SVG is not deterministic")
			}
		})
	}
}

// TestPrincipalView: the picture does not depend on how the molecule is placed or turned in
// space (the view is the principal-axes frame), and its larger spread is horizontal.
func TestPrincipalView(t *testing.T) {
	m := &loadTestMolecules(t)[5]
	c, s := math.Cos(0.7), math.Sin(0.7)
	c2, s2 := math.Cos(-1.9), math.Sin(-1.9)
	moved := *m
	moved.Positions = make([][3]float64, len(m.Positions))
	for i, p := range m.Positions {
		x, y, z := c*p[0]-s*p[1], s*p[0]+c*p[1], p[2]
		moved.Positions[i] = [3]float64{x + 3, c2*y - s2*z - 7, s2*y + c2*z + 0.5}
	}
	a := byClass(parseSVG(t, ptr(mustView(t, m)).SVG(Options{})), "atom")
	b := byClass(parseSVG(t, ptr(mustView(t, &moved)).SVG(Options{})), "atom")
	pos := func(es []elem) map[string][2]float64 {
		out := map[string][2]float64{}
		for _, e := range es {
			out[e.attrs["data-i"]] = [2]float64{num(t, e, "cx"), num(t, e, "cy")}
		}
		return out
	}
	pa, pb := pos(a), pos(b)
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for k, p := range pa {
		q := pb[k]
		if math.Abs(p[0]-q[0]) > 0.05 || math.Abs(p[1]-q[1]) > 0.05 {
			t.Errorf("atom %s at %v, turned molecule at %v", k, p, q)
		}
		xmin, xmax = math.Min(xmin, p[0]), math.Max(xmax, p[0])
		ymin, ymax = math.Min(ymin, p[1]), math.Max(ymax, p[1])
	}
	if xmax-xmin < ymax-ymin {
		t.Errorf("spread %.1f px across, %.1f px up: the largest spread should be horizontal", xmax-xmin, ymax-ymin)
	}
}

func ptr[T any](v T) *T { return &v }

// TestDepthOrder: atoms are painted far to near, so in document order their shading never
// gets darker, and each bond comes after the farther of its atoms.
func TestDepthOrder(t *testing.T) {
	mols := loadTestMolecules(t)
	for _, k := range []int{0, 10, 100, 1000} {
		m := &mols[k]
		es := parseSVG(t, ptr(mustView(t, m)).SVG(Options{}))
		last := 0.0
		shades := map[int]float64{}
		pos := map[int]int{}
		for idx, e := range es {
			if e.attrs["class"] != "atom" {
				continue
			}
			i := int(num(t, e, "data-i"))
			f, ok := shadeOf(e.attrs["fill"], ElementColor(m.Z[i]))
			if !ok {
				t.Fatalf("molecule %d atom %d: fill %s", m.ID, i, e.attrs["fill"])
			}
			if f < last-0.01 {
				t.Errorf("molecule %d: atom %d (shade %.3f) painted after a nearer atom (shade %.3f)", m.ID, i, f, last)
			}
			last = math.Max(last, f)
			shades[i], pos[i] = f, idx
		}
		for idx, e := range es {
			if e.attrs["class"] != "bond" {
				continue
			}
			i, j := int(num(t, e, "data-i")), int(num(t, e, "data-j"))
			if math.Abs(shades[i]-shades[j]) < 0.02 {
				continue // about the same depth: fills are rounded to whole RGB steps
			}
			far := i
			if shades[j] < shades[i] {
				far = j
			}
			if idx < pos[far] {
				t.Errorf("molecule %d: bond %d–%d painted before its farther atom %d", m.ID, i, j, far)
			}
		}
	}
}

// TestGridOfTestMolecules draws real QM9 test molecules: one cell per molecule, one circle
// per atom, the bonds of molwrite.Bonds, rings exactly on the atoms the metric finds
// unstable, and the legend's elements.
func TestGridOfTestMolecules(t *testing.T) {
	mols := loadTestMolecules(t)
	var views []Molecule
	wantAtoms, wantBonds, wantRings := 0, 0, 0
	for i := range 12 {
		m := &mols[i*97]
		v := mustView(t, m)
		bs, err := molwrite.Bonds(m)
		if err != nil {
			t.Fatal(err)
		}
		wantAtoms += len(m.Z)
		wantBonds += len(bs)
		wantRings += v.NUnstable()
		views = append(views, v)
	}
	// One artificially broken molecule so that the grid shows rings.
	views = append(views, mustView(t, &brokenWater))
	wantAtoms += 3
	wantBonds++
	wantRings += 2
	svg := Grid(views, GridOptions{Columns: 5, Legend: true})
	es := parseSVG(t, svg)
	if n := len(byClass(es, "mol")); n != len(views) {
		t.Errorf("%d cells, want %d", n, len(views))
	}
	if n := len(byClass(es, "atom")); n != wantAtoms {
		t.Errorf("%d atom circles, want %d", n, wantAtoms)
	}
	if n := len(byClass(es, "bond")); n != wantBonds {
		t.Errorf("%d bonds, want %d", n, wantBonds)
	}
	if n := len(byClass(es, "unstable")); n != wantRings {
		t.Errorf("%d unstable marks, want %d", n, wantRings)
	}
	if !strings.Contains(svg, `<text x="`) || !strings.Contains(svg, ">O</text>") || !strings.Contains(svg, "unstable atom") {
		t.Error("legend lacks the elements or the unstable mark")
	}
	root := es[0]
	if w := num(t, root, "width"); w != 5*200+4*6 {
		t.Errorf("grid width %v", w)
	}
	if Grid(views, GridOptions{Columns: 5, Legend: true}) != svg {
		t.Error("grid is not deterministic")
	}
}

func TestFromRecordErrors(t *testing.T) {
	bad := molecule.Molecule{ID: 4, Z: []int{6, 1}, Positions: [][3]float64{{0, 0, 0}}}
	if _, err := FromRecord(&bad); err == nil || !strings.Contains(err.Error(), "molecule 4") {
		t.Errorf("mismatched positions: %v", err)
	}
	xe := molecule.Molecule{ID: 5, Z: []int{54, 8, 1, 1}, Positions: [][3]float64{{5, 0, 0}, {0, 0, 0}, {0.96, 0, 0}, {-0.24, 0.93, 0}}}
	v, err := FromRecord(&xe)
	if err != nil {
		t.Fatal(err)
	}
	if v.Verdict != VerdictUncovered || v.Unstable != nil {
		t.Errorf("Xe: verdict %v, unstable %v", v.Verdict, v.Unstable)
	}
	if _, c2 := v.Caption(); c2 != "4 atoms · not judged" {
		t.Errorf("caption %q", c2)
	}
	es := parseSVG(t, v.SVG(Options{}))
	if n := len(byClass(es, "atom")); n != 4 {
		t.Errorf("%d atoms", n)
	}
}

var testMols struct {
	once sync.Once
	mols []molecule.Molecule
	err  error
}

// loadTestMolecules reads the shipped QM9 test split with the project's npz reader.
func loadTestMolecules(t *testing.T) []molecule.Molecule {
	t.Helper()
	path := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	testMols.once.Do(func() { testMols.mols, testMols.err = qm9.ReadNPZ(path, qm9.Test) })
	if testMols.err != nil {
		t.Fatalf("%s: %v", path, testMols.err)
	}
	return testMols.mols
}
