package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/table"
)

func runMoleculesCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"etl", "molecules"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// fixtureMol is a molecule of the test fixtures, written by the test in each format.
type fixtureMol struct {
	name string
	sym  []string
	pos  [][3]float64
}

// tridecane is C13H28 (41 atoms, more than QM9's 29) on a zig-zag chain.
func tridecane() fixtureMol {
	m := fixtureMol{name: "tridecane"}
	for i := range 13 {
		y := 0.0
		if i%2 == 1 {
			y = 0.89
		}
		x := 1.26 * float64(i)
		m.sym = append(m.sym, "C")
		m.pos = append(m.pos, [3]float64{x, y, 0})
	}
	for i := range 13 {
		c := m.pos[i]
		dy := -0.63
		if i%2 == 1 {
			dy = 0.63
		}
		m.sym = append(m.sym, "H", "H")
		m.pos = append(m.pos, [3]float64{c[0], c[1] + dy, 0.89}, [3]float64{c[0], c[1] + dy, -0.89})
	}
	m.sym = append(m.sym, "H", "H")
	m.pos = append(m.pos, [3]float64{-1.03, 0, 0}, [3]float64{1.26*12 + 1.03, 0.89, 0})
	return m
}

var moleculeFixtures = []fixtureMol{
	{"hydrogen chloride", []string{"Cl", "H"}, [][3]float64{{0, 0, 0}, {0, 0, 1.2746}}},
	{"sulfur tetrafluoride", []string{"S", "F", "F", "F", "F"}, [][3]float64{{0, 0, 0}, {1.6, 0, 0}, {-1.6, 0, 0}, {0, 1.13, 1.13}, {0, 1.13, -1.13}}},
	tridecane(),
	{"water", []string{"O", "H", "H"}, [][3]float64{{0, 0, 0.1173}, {0, 0.7572, -0.4692}, {0, -0.7572, -0.4692}}},
}

func xyzFrame(m fixtureMol, comment string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n%s\n", len(m.sym), comment)
	for i, s := range m.sym {
		fmt.Fprintf(&b, "%-2s %.6f %.6f %.6f\n", s, m.pos[i][0], m.pos[i][1], m.pos[i][2])
	}
	return b.String()
}

func sdfRecord(m fixtureMol) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n  enflow-test\n\n%3d%3d  0  0  0  0  0  0  0  0999 V2000\n", m.name, len(m.sym), 0)
	for i, s := range m.sym {
		fmt.Fprintf(&b, "%10.4f%10.4f%10.4f %-3s 0  0  0  0  0  0  0  0  0  0  0  0\n", m.pos[i][0], m.pos[i][1], m.pos[i][2], s)
	}
	b.WriteString("M  END\n> <label>\n" + m.name + "\n\n$$$$\n")
	return b.String()
}

// writeFixtureInputs writes the fixtures as an XYZ directory (two files), an extxyz file and
// an SDF file, and returns the flag and path of each input.
func writeFixtureInputs(t *testing.T, dir string, ms []fixtureMol) map[string][2]string {
	t.Helper()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var a, b, ext, sdf strings.Builder
	for i, m := range ms {
		if i < 2 {
			a.WriteString(xyzFrame(m, m.name))
		} else {
			b.WriteString(xyzFrame(m, m.name))
		}
		ext.WriteString(xyzFrame(m, fmt.Sprintf(`Properties=species:S:1:pos:R:3 label="%s" index=%d`, m.name, i)))
		sdf.WriteString(sdfRecord(m))
	}
	write("xyz/a.xyz", a.String())
	write("xyz/b.xyz", b.String())
	return map[string][2]string{
		"xyz":    {"--xyz", filepath.Join(dir, "xyz")},
		"extxyz": {"--extxyz", write("mols.extxyz", ext.String())},
		"sdf":    {"--sdf", write("mols.sdf", sdf.String())},
	}
}

func readDescription(t *testing.T, dir string) MoleculesDescription {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, MoleculesDescriptionFile))
	if err != nil {
		t.Fatal(err)
	}
	var d MoleculesDescription
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestETLMoleculesRoundTrip writes the fixtures (S, Cl, F, a 41-atom alkane) in every input
// format, imports them, and reads atoms and coordinates back from the Parquet table.
func TestETLMoleculesRoundTrip(t *testing.T) {
	inputs := writeFixtureInputs(t, t.TempDir(), moleculeFixtures)
	for _, format := range []string{"xyz", "extxyz", "sdf"} {
		t.Run(format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			in := inputs[format]
			code, stdout, stderr := runMoleculesCLI(t, in[0], in[1], "--out", out, "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var sum map[string]any
			if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
				t.Fatalf("summary %q: %v", stdout, err)
			}
			if sum["molecules"] != float64(len(moleculeFixtures)) {
				t.Errorf("summary molecules %v", sum["molecules"])
			}
			ms, err := table.ReadMolecules(filepath.Join(out, "molecules_train.parquet"))
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != len(moleculeFixtures) {
				t.Fatalf("%d molecules, want %d", len(ms), len(moleculeFixtures))
			}
			for i, m := range ms {
				want := moleculeFixtures[i]
				if !math.IsNaN(m.Props[0]) || !math.IsNaN(m.Omega1) || m.Mulliken != nil {
					t.Errorf("molecule %d: QM9 fields %v %v %v, want null", i, m.Props, m.Omega1, m.Mulliken)
				}
				if m.ID != int64(i+1) || m.Split != "train" {
					t.Errorf("molecule %d: id %d split %q", i, m.ID, m.Split)
				}
				if m.NAtoms() != len(want.sym) {
					t.Fatalf("molecule %d: %d atoms, want %d", i, m.NAtoms(), len(want.sym))
				}
				for k, s := range want.sym {
					if m.Z[k] != molecule.NumberOfSymbol(s) {
						t.Errorf("molecule %d atom %d: z %d, want %s", i, k, m.Z[k], s)
					}
					for c := range 3 {
						if math.Abs(m.Positions[k][c]-want.pos[k][c]) > 1e-4 {
							t.Errorf("molecule %d atom %d: position %v, want %v", i, k, m.Positions[k], want.pos[k])
						}
					}
				}
				switch format {
				case "sdf":
					if m.Name != want.name || m.Properties["label"] != want.name || m.FormalCharges == nil || m.Bonds == nil {
						t.Errorf("molecule %d: name %q properties %v charges %v bonds %v", i, m.Name, m.Properties, m.FormalCharges, m.Bonds)
					}
				case "extxyz":
					if m.Properties["label"] != want.name || m.Properties["index"] != float64(i) {
						t.Errorf("molecule %d: properties %v", i, m.Properties)
					}
				case "xyz":
					if m.Name != want.name {
						t.Errorf("molecule %d: name %q", i, m.Name)
					}
				}
			}
			d := readDescription(t, out)
			if !reflect.DeepEqual(d.Elements, []int{1, 6, 8, 9, 16, 17}) || !reflect.DeepEqual(d.Symbols, []string{"H", "C", "O", "F", "S", "Cl"}) {
				t.Errorf("elements %v symbols %v", d.Elements, d.Symbols)
			}
			if d.MaxAtoms != 41 || d.NMolecules["train"] != 4 || d.NMolecules["valid"] != 0 || d.NMolecules["test"] != 0 {
				t.Errorf("max_atoms %d n_molecules %v", d.MaxAtoms, d.NMolecules)
			}
			if !reflect.DeepEqual(d.SizeHist, map[string]int{"2": 1, "5": 1, "41": 1, "3": 1}) || d.Split != "none (all train)" {
				t.Errorf("size_hist_train %v split %q", d.SizeHist, d.Split)
			}
			wantSources := 1
			if format == "xyz" {
				wantSources = 2
			}
			if len(d.Sources) != wantSources || d.Format != format || d.Files["train"] != "molecules_train.parquet" {
				t.Errorf("sources %v format %q files %v", d.Sources, d.Format, d.Files)
			}
			entries, _ := os.ReadDir(out)
			if len(entries) != 2 {
				t.Errorf("output holds %d entries, want molecules_train.parquet and molecules.json", len(entries))
			}
		})
	}
	t.Run("elements flag", func(t *testing.T) {
		out := t.TempDir()
		in := inputs["sdf"]
		if code, _, stderr := runMoleculesCLI(t, in[0], in[1], "--out", out, "--elements", "cl,H,C,N,O,F,S"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if d := readDescription(t, out); !reflect.DeepEqual(d.Elements, []int{1, 6, 7, 8, 9, 16, 17}) {
			t.Errorf("elements %v, want the --elements set in ascending Z", d.Elements)
		}
	})
}

// TestETLMoleculesBadInput: every bad input fails naming file, record and line, and leaves
// no file in the output directory (new or pre-existing).
func TestETLMoleculesBadInput(t *testing.T) {
	good := xyzFrame(moleculeFixtures[0], "ok")
	tests := []struct {
		name, flag, file, body string
		extra                  []string
		want                   []string
	}{
		{"unknown element", "--xyz", "d/a.xyz", good + "1\nx\nQq 0 0 0\n", nil, []string{"a.xyz", "record 2", "line 7", `unknown element symbol "Qq"`}},
		{"atom count", "--xyz", "d/a.xyz", "3\nc\nC 0 0 0\nH 1 0 0\n", nil, []string{"a.xyz", "record 1", "line 1", "atom count 3 does not match"}},
		{"missing coordinates", "--extxyz", "m.extxyz", "2\nenergy=1\nH 0 0 0\nH 0 0\n", nil, []string{"m.extxyz", "record 1", "line 4", "missing coordinates"}},
		{"NaN", "--extxyz", "m.extxyz", good + "1\ne=1\nH 0 NaN 0\n", nil, []string{"m.extxyz", "record 2", "line 7", "non-finite"}},
		{"Inf", "--xyz", "d/a.xyz", "1\nc\nH 0 0 +Inf\n", nil, []string{"a.xyz", "record 1", "line 3", "non-finite"}},
		{"no M END", "--sdf", "m.sdf", sdfRecord(moleculeFixtures[3]) + strings.Replace(sdfRecord(moleculeFixtures[0]), "M  END\n", "", 1), nil,
			[]string{"m.sdf", "record 2", "line 19", `no "M  END"`}},
		{"empty sdf", "--sdf", "m.sdf", "", nil, []string{"m.sdf", "record 1", "line 1", "empty input"}},
		{"empty xyz", "--xyz", "d/a.xyz", "\n", nil, []string{"a.xyz", "record 1", "line 1", "empty input"}},
		{"element not allowed", "--xyz", "d/a.xyz", good, []string{"--elements", "H,C,N,O,F"}, []string{"a.xyz", "record 1", "line 3", "element Cl is not in --elements H,C,N,O,F"}},
	}
	for _, tc := range tests {
		for _, existing := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/existing=%v", tc.name, existing), func(t *testing.T) {
				dir := t.TempDir()
				p := filepath.Join(dir, tc.file)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
					t.Fatal(err)
				}
				in := p
				if tc.flag == "--xyz" {
					in = filepath.Dir(p)
				}
				out := filepath.Join(dir, "out")
				if existing {
					if err := os.Mkdir(out, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				code, _, stderr := runMoleculesCLI(t, append([]string{tc.flag, in, "--out", out}, tc.extra...)...)
				if code == 0 {
					t.Fatal("succeeded, want an error")
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr %q does not contain %q", stderr, w)
					}
				}
				entries, err := os.ReadDir(out)
				if existing && err != nil {
					t.Fatal(err)
				}
				if !existing && err == nil {
					t.Errorf("output directory %s was created", out)
				}
				if len(entries) != 0 {
					t.Errorf("output directory holds %d entries after the error", len(entries))
				}
			})
		}
	}
	// An empty --xyz directory.
	dir := t.TempDir()
	if code, _, stderr := runMoleculesCLI(t, "--xyz", dir, "--out", filepath.Join(dir, "out")); code == 0 || !strings.Contains(stderr, "empty input") {
		t.Errorf("empty directory: exit %d, %q", code, stderr)
	}
}

// TestETLMoleculesHashSplit: the split is deterministic, depends on the seed, is roughly
// proportional, and every split file holds exactly its molecules.
func TestETLMoleculesHashSplit(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	const n = 3000
	for i := range n {
		fmt.Fprintf(&b, "1\nindex=%d\nH 0 0 %d\n", i, i)
	}
	in := filepath.Join(dir, "many.extxyz")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	splitOf := func(seed string) map[int64]string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := runMoleculesCLI(t, "--extxyz", in, "--out", out, "--split-by-hash", "80,10,10", "--seed", seed, "--format", "parquet,arrow")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		d := readDescription(t, out)
		if d.Split != "hash 80,10,10 seed "+seed {
			t.Errorf("split %q", d.Split)
		}
		got := map[int64]string{}
		for _, s := range moleculeSplits {
			for _, ext := range []string{"parquet", "arrow"} {
				ms, err := table.ReadMolecules(filepath.Join(out, "molecules_"+s+"."+ext))
				if err != nil {
					t.Fatal(err)
				}
				if len(ms) != d.NMolecules[s] {
					t.Errorf("%s.%s: %d rows, molecules.json says %d", s, ext, len(ms), d.NMolecules[s])
				}
				for _, m := range ms {
					if m.Split != s {
						t.Errorf("id %d in %s has split %q", m.ID, s, m.Split)
					}
					if ext == "parquet" {
						got[m.ID] = s
					}
				}
			}
		}
		if len(got) != n {
			t.Fatalf("%d ids, want %d", len(got), n)
		}
		return got
	}
	a, again, other := splitOf("7"), splitOf("7"), splitOf("8")
	if !reflect.DeepEqual(a, again) {
		t.Error("same seed gives a different split")
	}
	if reflect.DeepEqual(a, other) {
		t.Error("another seed gives the same split")
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for s, want := range map[string]float64{"train": 0.8, "valid": 0.1, "test": 0.1} {
		if f := float64(count[s]) / n; math.Abs(f-want) > 0.03 {
			t.Errorf("%s: fraction %.3f, want %.2f ± 0.03", s, f, want)
		}
	}
}

// TestETLMoleculesStabilityCoverage imports S/Cl molecules and a Xe-containing one and runs
// "metrics stability" on the result: the Xe molecule is reported as uncovered.
func TestETLMoleculesStabilityCoverage(t *testing.T) {
	dir := t.TempDir()
	xe := fixtureMol{"xenon and water", []string{"O", "H", "H", "Xe"}, [][3]float64{{0, 0, 0}, {0.96, 0, 0}, {-0.24, 0.93, 0}, {5, 0, 0}}}
	var b strings.Builder
	for _, m := range []fixtureMol{moleculeFixtures[0], moleculeFixtures[1], moleculeFixtures[3], xe} {
		b.WriteString(xyzFrame(m, m.name))
	}
	if err := os.WriteFile(filepath.Join(dir, "m.xyz"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if code, _, stderr := runMoleculesCLI(t, "--xyz", dir, "--out", out); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var stdout, stderr bytes.Buffer
	train := filepath.Join(out, "molecules_train.parquet")
	if code := Main(context.Background(), []string{"metrics", "stability", "--in", train, "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("metrics stability: exit %d: %s", code, stderr.String())
	}
	var got struct {
		NUncovered        int            `json:"n_uncovered_molecules"`
		UncoveredAtoms    int            `json:"uncovered_atoms"`
		Excluded          int            `json:"n_excluded_atoms"`
		UncoveredElements map[string]int `json:"uncovered_elements"`
		Elements          map[string]struct{ Atoms, Stable int }
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("%q: %v", stdout.String(), err)
	}
	var raw map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if raw["n_molecules"] != 3.0 || raw["n_stable_molecules"] != 3.0 || raw["n_atoms"] != 10.0 {
		t.Errorf("counts %v", raw)
	}
	if got.NUncovered != 1 || got.UncoveredAtoms != 1 || got.Excluded != 4 || !reflect.DeepEqual(got.UncoveredElements, map[string]int{"Xe": 1}) {
		t.Errorf("uncovered: %+v", got)
	}
	if got.Elements["Cl"].Atoms != 1 || got.Elements["S"].Stable != 1 {
		t.Errorf("elements %+v", got.Elements)
	}
	stdout.Reset()
	if code := Main(context.Background(), []string{"metrics", "stability", "--in", train}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "uncovered:    1 molecules (4 atoms)") || !strings.Contains(stdout.String(), "Xe:1") {
		t.Errorf("text output %q", stdout.String())
	}
}
