// Package molview draws molecules as ball-and-stick pictures in SVG, offline and without
// scripts: each molecule is turned to its principal axes (largest spread left–right, second
// up–down, least towards the viewer), atoms and bonds are painted far to near with depth
// shading, atoms are coloured by element (CPK/Jmol-like) and sized by element, bond orders
// are drawn as one, two or three sticks, and atoms the stability metric counts as unstable
// get a red ring. Bonds, orders and the per-atom verdicts come from pipeline/molwrite and
// pipeline/metrics, so a picture shows exactly what the stability metric and the SDF export
// see.
//
// Output is deterministic (same input, same bytes) and safe to inline in HTML: no ids, no
// scripts, all text escaped. Elements carry classes and data attributes (class="atom"
// data-i data-el, class="bond" data-i data-j data-order, class="unstable" data-i) for tests
// and styling.
package molview

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/pipeline/metrics"
	"github.com/enflow/enflow/pipeline/molwrite"
)

// Bond is a bond between atoms I and J (0-based) of order 1–3.
type Bond struct {
	I, J, Order int
}

// Verdict is the stability verdict shown in a caption.
type Verdict int

// Verdicts.
const (
	VerdictUnknown   Verdict = iota // not judged (no stability flags given)
	VerdictStable                   // every atom has an allowed valence
	VerdictUnstable                 // at least one atom has not
	VerdictUncovered                // an element without valence data: not judged by the metric
)

// Molecule is one molecule to draw.
type Molecule struct {
	Z        []int        // atomic numbers
	Pos      [][3]float64 // Å
	Bonds    []Bond
	Unstable []bool // per atom, optional (nil: no marks)
	Verdict  Verdict
	ID       int64
	Label    string // optional first caption line; default "id <ID>"
}

// FromRecord prepares a molecule record for drawing: bonds and orders from the stability
// bond tables (molwrite.Bonds for H, C, N, O, F; metrics.BondOrderZ for the other covered
// elements) and the per-atom verdicts of metrics.AtomStability.
func FromRecord(m *molecule.Molecule) (Molecule, error) {
	if len(m.Positions) != len(m.Z) {
		return Molecule{}, fmt.Errorf("molview: molecule %d: field positions: %d rows for %d atoms", m.ID, len(m.Positions), len(m.Z))
	}
	v := Molecule{Z: m.Z, Pos: m.Positions, ID: m.ID}
	stable, r, err := metrics.AtomStability(m.Z, m.Positions)
	if err != nil {
		return Molecule{}, fmt.Errorf("molview: molecule %d: %w", m.ID, err)
	}
	switch {
	case r.Uncovered:
		v.Verdict = VerdictUncovered
	case r.Stable:
		v.Verdict = VerdictStable
	default:
		v.Verdict = VerdictUnstable
	}
	if stable != nil {
		v.Unstable = make([]bool, len(stable))
		for i, s := range stable {
			v.Unstable[i] = !s
		}
	}
	if _, err := metrics.TypesFromNumbers(nil, m.Z); err == nil {
		bs, err := molwrite.Bonds(m)
		if err != nil {
			return Molecule{}, fmt.Errorf("molview: %w", err)
		}
		for _, b := range bs {
			v.Bonds = append(v.Bonds, Bond(b))
		}
		return v, nil
	}
	// Other elements: the extended tables of the general stability path.
	for i := range m.Z {
		for j := i + 1; j < len(m.Z); j++ {
			p, q := m.Positions[i], m.Positions[j]
			d := math.Sqrt((p[0]-q[0])*(p[0]-q[0]) + (p[1]-q[1])*(p[1]-q[1]) + (p[2]-q[2])*(p[2]-q[2]))
			if o := metrics.BondOrderZ(m.Z[i], m.Z[j], d); o > 0 {
				v.Bonds = append(v.Bonds, Bond{I: i, J: j, Order: o})
			}
		}
	}
	return v, nil
}

// NUnstable returns the number of atoms marked unstable.
func (m *Molecule) NUnstable() int {
	n := 0
	for _, u := range m.Unstable {
		if u {
			n++
		}
	}
	return n
}

// Caption returns the two caption lines: "id 17 · C3H6O" and "10 atoms · stable".
func (m *Molecule) Caption() (string, string) {
	first := m.Label
	if first == "" {
		first = "id " + strconv.FormatInt(m.ID, 10)
	}
	first += " · " + Formula(m.Z)
	second := fmt.Sprintf("%d atoms", len(m.Z))
	if len(m.Z) == 1 {
		second = "1 atom"
	}
	switch m.Verdict {
	case VerdictStable:
		second += " · stable"
	case VerdictUnstable:
		second += fmt.Sprintf(" · unstable (%d)", m.NUnstable())
	case VerdictUncovered:
		second += " · not judged"
	}
	return first, second
}

// Formula returns the Hill formula: C then H first when there is carbon, then the other
// elements alphabetically (all alphabetically without carbon); "C2H6O", "ClH", "H2O".
func Formula(z []int) string {
	counts := map[string]int{}
	for _, n := range z {
		s := molecule.Symbol(n)
		if s == "" {
			s = "?"
		}
		counts[s]++
	}
	var order []string
	if counts["C"] > 0 {
		order = append(order, "C")
		if counts["H"] > 0 {
			order = append(order, "H")
		}
	}
	var rest []string
	for s := range counts {
		if len(order) > 0 && (s == "C" || s == "H") {
			continue
		}
		rest = append(rest, s)
	}
	sort.Strings(rest)
	var b strings.Builder
	for _, s := range append(order, rest...) {
		b.WriteString(s)
		if c := counts[s]; c > 1 {
			b.WriteString(strconv.Itoa(c))
		}
	}
	return b.String()
}

// rgb is a colour.
type rgb struct{ r, g, b float64 }

func hexColor(s string) rgb {
	v, _ := strconv.ParseUint(strings.TrimPrefix(s, "#"), 16, 32)
	return rgb{float64(v >> 16 & 0xff), float64(v >> 8 & 0xff), float64(v & 0xff)}
}

func (c rgb) hex() string {
	cl := func(x float64) int { return int(math.Round(math.Max(0, math.Min(255, x)))) }
	return fmt.Sprintf("#%02x%02x%02x", cl(c.r), cl(c.g), cl(c.b))
}

func (c rgb) scale(f float64) rgb { return rgb{c.r * f, c.g * f, c.b * f} }

// Element colours (Jmol's CPK variant) and drawing radii in Å.
var (
	elementColors = map[int]string{
		1: "#ffffff", 5: "#ffb5b5", 6: "#909090", 7: "#3050f8", 8: "#ff0d0d", 9: "#90e050",
		14: "#f0c8a0", 15: "#ff8000", 16: "#ffff30", 17: "#1ff01f", 33: "#bd80e3", 35: "#a62929", 53: "#940094",
	}
	elementRadii = map[int]float64{
		1: 0.25, 5: 0.36, 6: 0.38, 7: 0.36, 8: 0.35, 9: 0.33,
		14: 0.46, 15: 0.44, 16: 0.44, 17: 0.42, 33: 0.46, 35: 0.47, 53: 0.52,
	}
)

const (
	otherColor  = "#ff1493" // elements without a colour of their own
	otherRadius = 0.45
	bondColor   = "#6b6b6b"
	ringColor   = "#e00000"
)

// ElementColor returns the CPK-like fill colour ("#rrggbb") of atomic number z at full
// brightness (nearest atoms); farther atoms are darker by Shade.
func ElementColor(z int) string {
	if c, ok := elementColors[z]; ok {
		return c
	}
	return otherColor
}

// Radius returns the drawing radius (Å) of atomic number z.
func Radius(z int) float64 {
	if r, ok := elementRadii[z]; ok {
		return r
	}
	return otherRadius
}

// Depth shading: the nearest atom is drawn at full brightness, the farthest at minShade.
const minShade = 0.62

// Shade returns the brightness factor (minShade..1) of depth t in [0, 1] (0 far, 1 near).
func Shade(t float64) float64 { return minShade + (1-minShade)*math.Max(0, math.Min(1, t)) }

// principalFrame returns the positions centred at their mean and rotated to the principal
// axes: x along the largest spread, y the second, z the least (towards the viewer), with
// deterministic signs (each of x and y turned so that the atoms' third moment along it is
// non-negative, ties broken by the sign of its first non-zero component, and z = x × y).
func principalFrame(pos [][3]float64) [][3]float64 {
	n := len(pos)
	out := make([][3]float64, n)
	if n == 0 {
		return out
	}
	var c [3]float64
	for _, p := range pos {
		for k := range 3 {
			c[k] += p[k] / float64(n)
		}
	}
	cov := make([]float64, 9)
	for _, p := range pos {
		for a := range 3 {
			for b := range 3 {
				cov[3*a+b] += (p[a] - c[a]) * (p[b] - c[b])
			}
		}
	}
	var axes [3][3]float64
	var es mat.EigenSym
	if n >= 2 && es.Factorize(mat.NewSymDense(3, cov), true) {
		var vecs mat.Dense
		es.VectorsTo(&vecs)
		vals := es.Values(nil) // ascending
		idx := []int{0, 1, 2}
		sort.SliceStable(idx, func(a, b int) bool { return vals[idx[a]] > vals[idx[b]] })
		for k, j := range idx {
			for d := range 3 {
				axes[k][d] = vecs.At(d, j)
			}
		}
		for k := range 2 {
			var m3 float64
			for _, p := range pos {
				s := (p[0]-c[0])*axes[k][0] + (p[1]-c[1])*axes[k][1] + (p[2]-c[2])*axes[k][2]
				m3 += s * s * s
			}
			if m3 < -1e-9 || (math.Abs(m3) <= 1e-9 && firstNonZero(axes[k]) < 0) {
				axes[k] = [3]float64{-axes[k][0], -axes[k][1], -axes[k][2]}
			}
		}
		a, b := axes[0], axes[1]
		axes[2] = [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
	} else {
		axes = [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
	}
	for i, p := range pos {
		d := [3]float64{p[0] - c[0], p[1] - c[1], p[2] - c[2]}
		for k := range 3 {
			out[i][k] = d[0]*axes[k][0] + d[1]*axes[k][1] + d[2]*axes[k][2]
		}
	}
	return out
}

func firstNonZero(v [3]float64) float64 {
	for _, x := range v {
		if math.Abs(x) > 1e-12 {
			return x
		}
	}
	return 0
}

// Options sizes a picture.
type Options struct {
	Width, Height int     // picture area in px (default 200 × 170)
	MaxScale      float64 // largest px per Å, so small molecules are not blown up (default 34)
	NoCaption     bool    // omit the two caption lines under the picture
}

const captionH = 34.0

func (o Options) withDefaults() Options {
	if o.Width <= 0 {
		o.Width = 200
	}
	if o.Height <= 0 {
		o.Height = 170
	}
	if o.MaxScale <= 0 {
		o.MaxScale = 34
	}
	return o
}

// cellHeight is the height of one picture with its caption.
func (o Options) cellHeight() float64 {
	if o.NoCaption {
		return float64(o.Height)
	}
	return float64(o.Height) + captionH
}

func f2(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }

// item is one thing to paint, at depth z (larger is nearer).
type item struct {
	z    float64
	kind int // 0 bond, 1 atom: at equal depth bonds go first
	idx  int
}

// SVG returns the molecule as a standalone <svg> element.
func (m *Molecule) SVG(o Options) string {
	o = o.withDefaults()
	var b strings.Builder
	w, h := float64(o.Width), o.cellHeight()
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="molecule" width="%g" height="%g" viewBox="0 0 %g %g" role="img">`, w, h, w, h)
	first, _ := m.Caption()
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(first))
	m.draw(&b, o)
	b.WriteString(`</svg>`)
	return b.String()
}

// draw writes the picture (and caption) into the box (0,0)–(Width, cellHeight).
func (m *Molecule) draw(b *strings.Builder, o Options) {
	w, h := float64(o.Width), float64(o.Height)
	fmt.Fprintf(b, `<rect class="cell" width="%g" height="%g" fill="#ffffff" stroke="#e2e2e2"/>`, w, o.cellHeight())
	n := min(len(m.Z), len(m.Pos))
	p := principalFrame(m.Pos[:n])
	// Scale: fit the projected atoms with their radii, at most MaxScale px/Å.
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	zmin, zmax := math.Inf(1), math.Inf(-1)
	for i := range n {
		r := Radius(m.Z[i]) * 1.1
		xmin, xmax = math.Min(xmin, p[i][0]-r), math.Max(xmax, p[i][0]+r)
		ymin, ymax = math.Min(ymin, p[i][1]-r), math.Max(ymax, p[i][1]+r)
		zmin, zmax = math.Min(zmin, p[i][2]), math.Max(zmax, p[i][2])
	}
	if n > 0 {
		const pad = 8.0
		scale := o.MaxScale
		if xmax > xmin {
			scale = math.Min(scale, (w-2*pad)/(xmax-xmin))
		}
		if ymax > ymin {
			scale = math.Min(scale, (h-2*pad)/(ymax-ymin))
		}
		cx, cy := (xmin+xmax)/2, (ymin+ymax)/2
		sx := func(i int) float64 { return w/2 + (p[i][0]-cx)*scale }
		sy := func(i int) float64 { return h/2 - (p[i][1]-cy)*scale } // y up
		depth := func(z float64) float64 {
			if zmax-zmin < 1e-9 {
				return 1
			}
			return (z - zmin) / (zmax - zmin)
		}
		// Slight perspective: nearer atoms a little larger.
		rad := func(i int) float64 { return Radius(m.Z[i]) * scale * (0.92 + 0.16*depth(p[i][2])) }

		items := make([]item, 0, n+len(m.Bonds))
		for k, bd := range m.Bonds {
			if bd.I < 0 || bd.J < 0 || bd.I >= n || bd.J >= n || bd.I == bd.J {
				continue
			}
			items = append(items, item{z: (p[bd.I][2] + p[bd.J][2]) / 2, kind: 0, idx: k})
		}
		for i := range n {
			items = append(items, item{z: p[i][2], kind: 1, idx: i})
		}
		sort.SliceStable(items, func(a, c int) bool {
			if items[a].z != items[c].z {
				return items[a].z < items[c].z
			}
			if items[a].kind != items[c].kind {
				return items[a].kind < items[c].kind
			}
			return items[a].idx < items[c].idx
		})
		stickW := math.Max(1.6, 0.11*scale)
		for _, it := range items {
			if it.kind == 0 {
				bd := m.Bonds[it.idx]
				x1, y1, x2, y2 := sx(bd.I), sy(bd.I), sx(bd.J), sy(bd.J)
				col := hexColor(bondColor).scale(Shade(depth(it.z))).hex()
				fmt.Fprintf(b, `<g class="bond" data-i="%d" data-j="%d" data-order="%d" stroke="%s" stroke-linecap="round">`, bd.I, bd.J, bd.Order, col)
				dx, dy := x2-x1, y2-y1
				l := math.Hypot(dx, dy)
				nx, ny := 0.0, 0.0
				if l > 1e-9 {
					nx, ny = -dy/l, dx/l
				}
				order := max(1, min(bd.Order, 3))
				lw := stickW
				gap := 0.0
				if order > 1 {
					lw = stickW * 0.62
					gap = lw * 1.9
				}
				for k := range order {
					off := (float64(k) - float64(order-1)/2) * gap
					fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke-width="%s"/>`,
						f2(x1+nx*off), f2(y1+ny*off), f2(x2+nx*off), f2(y2+ny*off), f2(lw))
				}
				b.WriteString(`</g>`)
				continue
			}
			i := it.idx
			t := depth(p[i][2])
			sh := Shade(t)
			base := hexColor(ElementColor(m.Z[i]))
			x, y, r := sx(i), sy(i), rad(i)
			sym := molecule.Symbol(m.Z[i])
			fmt.Fprintf(b, `<circle class="atom" data-i="%d" data-el="%s" cx="%s" cy="%s" r="%s" fill="%s" stroke="%s" stroke-width="0.8"/>`,
				i, html.EscapeString(sym), f2(x), f2(y), f2(r), base.scale(sh).hex(), base.scale(sh*0.55).hex())
			// A highlight towards the upper left gives the ball its volume.
			fmt.Fprintf(b, `<circle class="hl" cx="%s" cy="%s" r="%s" fill="#ffffff" fill-opacity="%s" pointer-events="none"/>`,
				f2(x-0.32*r), f2(y-0.34*r), f2(0.38*r), f2(0.25+0.25*t))
			if i < len(m.Unstable) && m.Unstable[i] {
				fmt.Fprintf(b, `<circle class="unstable" data-i="%d" cx="%s" cy="%s" r="%s" fill="none" stroke="%s" stroke-width="2.2"/>`,
					i, f2(x), f2(y), f2(r+3.2), ringColor)
			}
		}
	}
	if o.NoCaption {
		return
	}
	c1, c2 := m.Caption()
	col := "#555555"
	switch m.Verdict {
	case VerdictStable:
		col = "#1a7f37"
	case VerdictUnstable:
		col = "#c00000"
	}
	fmt.Fprintf(b, `<text class="caption" x="%g" y="%s" font-size="12" text-anchor="middle" fill="#222">%s</text>`, w/2, f2(h+13), html.EscapeString(c1))
	fmt.Fprintf(b, `<text class="verdict" x="%g" y="%s" font-size="11" text-anchor="middle" fill="%s">%s</text>`, w/2, f2(h+27), col, html.EscapeString(c2))
}

// GridOptions lays out a grid of molecules.
type GridOptions struct {
	Options
	Columns int    // default 4
	Legend  bool   // a row with the colours of the elements shown and the unstable mark
	Title   string // accessible title of the SVG
}

// Grid returns the molecules as one <svg> grid, row by row, with an optional legend below.
func Grid(ms []Molecule, o GridOptions) string {
	o.Options = o.Options.withDefaults()
	cols := o.Columns
	if cols <= 0 {
		cols = 4
	}
	cols = max(1, min(cols, len(ms)))
	rows := (len(ms) + cols - 1) / cols
	const gap = 6.0
	cw, ch := float64(o.Width), o.cellHeight()
	w := float64(cols)*cw + float64(cols-1)*gap
	h := float64(rows)*ch + float64(max(rows-1, 0))*gap
	legendH := 0.0
	if o.Legend {
		legendH = 26
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="molecule-grid" width="%g" height="%g" viewBox="0 0 %g %g" role="img" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
		w, h+legendH, w, h+legendH)
	title := o.Title
	if title == "" {
		title = fmt.Sprintf("%d molecules", len(ms))
	}
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(title))
	for k := range ms {
		x, y := float64(k%cols)*(cw+gap), float64(k/cols)*(ch+gap)
		fmt.Fprintf(&b, `<g class="mol" data-id="%d" transform="translate(%g %g)">`, ms[k].ID, x, y)
		ms[k].draw(&b, o.Options)
		b.WriteString(`</g>`)
	}
	if o.Legend {
		legend(&b, ms, h+legendH-8)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// legend writes the element swatches (elements present, ascending Z) and the unstable mark
// on the baseline y.
func legend(b *strings.Builder, ms []Molecule, y float64) {
	seen := map[int]bool{}
	var zs []int
	for _, m := range ms {
		for _, z := range m.Z {
			if !seen[z] {
				seen[z] = true
				zs = append(zs, z)
			}
		}
	}
	sort.Ints(zs)
	x := 8.0
	b.WriteString(`<g class="legend" font-size="11" fill="#222">`)
	for _, z := range zs {
		c := hexColor(ElementColor(z))
		fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="6" fill="%s" stroke="%s" stroke-width="0.8"/>`, f2(x+6), f2(y-4), c.hex(), c.scale(0.55).hex())
		sym := molecule.Symbol(z)
		fmt.Fprintf(b, `<text x="%s" y="%s">%s</text>`, f2(x+16), f2(y), html.EscapeString(sym))
		x += 22 + 7*float64(len(sym))
	}
	x += 10
	fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="6" fill="#bbbbbb" stroke="%s" stroke-width="2"/>`, f2(x+6), f2(y-4), ringColor)
	fmt.Fprintf(b, `<text x="%s" y="%s">unstable atom (valence not allowed)</text>`, f2(x+18), f2(y))
	b.WriteString(`</g>`)
}
