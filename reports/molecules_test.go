package reports

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
)

var qm9Test struct {
	once sync.Once
	mols []molecule.Molecule
	err  error
}

// qm9TestMolecules returns the shipped QM9 test split, read once with the project's reader.
func qm9TestMolecules(t *testing.T) []molecule.Molecule {
	t.Helper()
	path := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	qm9Test.once.Do(func() { qm9Test.mols, qm9Test.err = qm9.ReadNPZ(path, qm9.Test) })
	if qm9Test.err != nil {
		t.Fatalf("%s: %v", path, qm9Test.err)
	}
	return qm9Test.mols
}

func writeMolecules(t *testing.T, path string, ms []molecule.Molecule) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := table.NewMoleculeWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		if err := w.Write(&ms[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// brokenWater has one hydrogen 3 Å away: its O and that H are unstable.
var brokenWater = molecule.Molecule{ID: 900001, Z: []int{8, 1, 1},
	Positions: [][3]float64{{0, 0, 0}, {0.9572, 0, 0}, {-3, 0.2, 0.1}}}

// moleculeFixture writes 40 real test molecules with a broken water molecule third (samples)
// and 300 test molecules (data).
func moleculeFixture(t *testing.T) (samples, data string, mols []molecule.Molecule) {
	t.Helper()
	all := qm9TestMolecules(t)
	mols = append(append(append([]molecule.Molecule{}, all[:2]...), brokenWater), all[2:39]...)
	dir := t.TempDir()
	samples, data = filepath.Join(dir, "samples.parquet"), filepath.Join(dir, "data.arrow")
	writeMolecules(t, samples, mols)
	writeMolecules(t, data, all[1000:1300])
	return samples, data, mols
}

func TestGenerateMolecules(t *testing.T) {
	samples, data, mols := moleculeFixture(t)
	out := filepath.Join(t.TempDir(), "page.html")
	p, err := GenerateMolecules(context.Background(), samples, out, MoleculeOptions{Data: data, Max: 12, Columns: 4, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if p.StableMolecules >= 40 {
		t.Errorf("%d of 40 molecules stable, but the broken water is not", p.StableMolecules)
	}
	if p.Molecules != 40 || p.Shown != 12 || p.DataMolecules != 300 || p.JudgedMolecules != 40 {
		t.Errorf("page counts: %d molecules, %d shown, %d data, %d judged", p.Molecules, p.Shown, p.DataMolecules, p.JudgedMolecules)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	wantAtoms := 0
	for _, m := range mols[:12] {
		wantAtoms += len(m.Z)
	}
	for _, c := range []struct {
		what string
		got  int
		want int
	}{
		{"grids", strings.Count(s, `class="molecule-grid"`), 1},
		{"cells", strings.Count(s, `class="mol"`), 12},
		{"atom circles", strings.Count(s, `class="atom"`), wantAtoms},
		{"unstable rings of the broken water (atoms 0 and 2)", strings.Count(s, `class="unstable"`), 2},
		{"charts", strings.Count(s, `class="chart"`), 2},
		{"scripts", strings.Count(s, `<script`), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
		}
	}
	for _, want := range []string{"id 900001 · H2O", "3 atoms · unstable (2)", "QM9 train p(M)", "data (300)", "molecules (40)",
		fmt.Sprintf("molecule stability %d/40", p.StableMolecules), "Molecule size M", "Atom types"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(s, "http://") && !strings.Contains(s, `xmlns="http://www.w3.org/2000/svg"`) || strings.Contains(s, "https://") {
		t.Error("page refers to the network")
	}
}

func TestGenerateMoleculesErrors(t *testing.T) {
	dir := t.TempDir()
	samples, _, _ := moleculeFixture(t)
	missing := filepath.Join(dir, "nope.parquet")
	notMolecules := filepath.Join(dir, "results.txt")
	if err := os.WriteFile(notMolecules, []byte("not a table"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in, data, want string
	}{
		{"missing input", missing, "", "nope.parquet"},
		{"not a table", notMolecules, "", "results.txt"},
		{"missing data", samples, missing, "--data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "page.html")
			_, err := GenerateMolecules(context.Background(), tc.in, out, MoleculeOptions{Data: tc.data})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a page was written despite the error")
			}
		})
	}
}

// TestReportShowsSampledMolecules: a stability unit that kept its samples.parquet gets a grid
// of its first molecules in the results report.
func TestReportShowsSampledMolecules(t *testing.T) {
	state := writeResults(t, sampleRows())
	mols := qm9TestMolecules(t)[:20]
	writeMolecules(t, filepath.Join(state, "units", "0000000000000008", "samples.parquet"), mols)
	out := filepath.Join(t.TempDir(), "report.html")
	r, err := Generate([]string{state}, out, "", Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Molecules) != 1 || !strings.Contains(r.Molecules[0].Caption, "E-NF samples of QM9") {
		t.Fatalf("report molecule grids: %+v", r.Molecules)
	}
	page, _ := os.ReadFile(out)
	if n := bytes.Count(page, []byte(`class="mol"`)); n != sampleGridMax {
		t.Errorf("%d molecule cells in the report, want %d", n, sampleGridMax)
	}
	// A corrupt samples file is an error naming it.
	if err := os.WriteFile(filepath.Join(state, "units", "0000000000000008", "samples.parquet"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate([]string{state}, out, "", Options{Now: t0}); err == nil || !strings.Contains(err.Error(), "samples.parquet") {
		t.Errorf("corrupt samples: %v", err)
	}
}

// TestMoleculesPageInChromium renders the page in headless chromium and checks that the
// molecule grid is really drawn: in the grid's area a good share of the pixels are not
// background, and the element colours (carbon grey, oxygen red, nitrogen blue) and the red
// rings are there.
func TestMoleculesPageInChromium(t *testing.T) {
	samples, data, _ := moleculeFixture(t)
	dir := t.TempDir()
	htmlPath := filepath.Join(dir, "page.html")
	if _, err := GenerateMolecules(context.Background(), samples, htmlPath, MoleculeOptions{Data: data, Max: 18, Columns: 6, Now: t0}); err != nil {
		t.Fatal(err)
	}
	bin := chromium(t)
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--screenshot="+shot, "--window-size=1280,900",
		"file://"+htmlPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, stderr.String())
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The grid: three rows of 204 px cells below the header (about y 125–740 at 1280 px).
	grid := image.Rect(32, 130, 1250, 740).Intersect(img.Bounds())
	st := pixelStats(img, grid)
	t.Logf("grid area %v: %.1f%% non-background, %d colour buckets, grey %d, red %d, blue %d",
		grid, 100*st.nonWhite, st.buckets, st.grey, st.red, st.blue)
	if st.nonWhite < 0.06 {
		t.Errorf("molecule grid nearly blank: %.2f%% non-background pixels", 100*st.nonWhite)
	}
	if st.buckets < 12 {
		t.Errorf("only %d distinct colours in the grid: atoms not coloured by element?", st.buckets)
	}
	if st.grey < 300 || st.red < 50 || st.blue < 20 {
		t.Errorf("element colours missing: %d grey (C), %d red (O, rings), %d blue (N) pixels", st.grey, st.red, st.blue)
	}
	if t.Failed() {
		t.Logf("chromium stderr:\n%s", stderr.String())
	}
}

type pixels struct {
	nonWhite        float64
	buckets         int
	grey, red, blue int
}

// pixelStats counts, over r: the share of non-white pixels, the distinct colours (4 bits per
// channel) covering at least 10 pixels, and the grey, red and blue pixels.
func pixelStats(img image.Image, r image.Rectangle) pixels {
	var p pixels
	hist := map[[3]uint32]int{}
	n, nonWhite := 0, 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			cr, cg, cb = cr>>8, cg>>8, cb>>8
			n++
			if cr < 240 || cg < 240 || cb < 240 {
				nonWhite++
			}
			hist[[3]uint32{cr >> 4, cg >> 4, cb >> 4}]++
			spread := max(cr, cg, cb) - min(cr, cg, cb)
			switch {
			case spread < 12 && cr > 60 && cr < 200:
				p.grey++
			case cr > 150 && cg < 80 && cb < 80:
				p.red++
			case cb > 150 && cr < 100 && cg < 130:
				p.blue++
			}
		}
	}
	for _, c := range hist {
		if c >= 10 {
			p.buckets++
		}
	}
	p.nonWhite = float64(nonWhite) / float64(max(n, 1))
	return p
}

// TestGenerateMoleculesIDs: --ids draws exactly the molecules asked for, in table order; an
// id the table lacks is an error naming it.
func TestGenerateMoleculesIDs(t *testing.T) {
	samples, _, mols := moleculeFixture(t)
	out := filepath.Join(t.TempDir(), "page.html")
	ids := []int64{brokenWater.ID, mols[30].ID, mols[0].ID, mols[0].ID}
	p, err := GenerateMolecules(context.Background(), samples, out, MoleculeOptions{IDs: ids, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(out)
	var got []string
	for _, part := range strings.Split(string(page), `class="mol" data-id="`)[1:] {
		got = append(got, part[:strings.Index(part, `"`)])
	}
	want := []string{fmt.Sprint(mols[0].ID), fmt.Sprint(brokenWater.ID), fmt.Sprint(mols[30].ID)}
	if p.Shown != 3 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("drew %d molecules %v, want %v", p.Shown, got, want)
	}
	if !strings.Contains(string(page), "Selected molecules (3)") {
		t.Error("page heading does not say the molecules were selected")
	}
	_, err = GenerateMolecules(context.Background(), samples, out, MoleculeOptions{IDs: []int64{mols[0].ID, 999999999}})
	if err == nil || !strings.Contains(err.Error(), "no molecule with id [999999999]") || !strings.Contains(err.Error(), "samples.parquet") {
		t.Errorf("missing id: %v", err)
	}
}
