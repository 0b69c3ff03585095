package reports

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Hand-written SVG charts (no dependencies): line/step charts, grouped bar charts and grids of
// particle pictures, sized in pixels, with "nice" axis ticks. Text is escaped; the result is
// safe to inline in HTML.

// Series is one line of a Chart. NaN values in Y break the line.
type Series struct {
	Name    string
	X, Y    []float64
	Color   string
	Dash    bool // dashed line
	Markers bool // a dot at every point
	Step    bool // histogram step line: X are the left bin edges, the last bin ends at XMax
	Fill    bool // fill under a step line (light)
	Width   float64
}

// Chart is a line chart.
type Chart struct {
	Title, XLabel, YLabel string
	W, H                  int
	Series                []Series
	XMin, XMax            float64 // optional fixed x range (both 0: from data)
	YMinZero              bool    // y axis starts at 0
	Note                  string  // small text under the title
}

const (
	padL, padR, padT, padB = 58.0, 12.0, 34.0, 44.0
)

func esc(s string) string { return html.EscapeString(s) }

func fmtNum(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) || math.IsInf(lo, 0) || math.IsInf(hi, 0) || math.IsNaN(lo) || math.IsNaN(hi) {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(max(n, 1))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Ceil(lo/step-1e-9) * step
	var out []float64
	for v := start; v <= hi+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		out = append(out, v)
		if len(out) > 50 {
			break
		}
	}
	return out
}

// tickLabel formats a tick value compactly.
func tickLabel(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e5 || a < 1e-3:
		return strconv.FormatFloat(v, 'e', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

// SVG renders the chart.
func (c *Chart) SVG() template.HTML {
	w, h := float64(c.W), float64(c.H)
	if w == 0 {
		w = 420
	}
	if h == 0 {
		h = 260
	}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i, x := range s.X {
			if i >= len(s.Y) || math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) || math.IsNaN(x) {
				continue
			}
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	if c.XMin != 0 || c.XMax != 0 {
		xmin, xmax = c.XMin, c.XMax
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="%g" height="%g" viewBox="0 0 %g %g" role="img">`, w, h, w, h)
	fmt.Fprintf(&b, `<title>%s</title><rect width="100%%" height="100%%" fill="#fff"/>`, esc(c.Title))
	fmt.Fprintf(&b, `<text x="%g" y="16" font-size="13" font-weight="600" fill="#222">%s</text>`, padL, esc(c.Title))
	if c.Note != "" {
		fmt.Fprintf(&b, `<text x="%g" y="29" font-size="10" fill="#666">%s</text>`, padL, esc(c.Note))
	}
	if math.IsInf(xmin, 1) {
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="12" fill="#888">no data</text></svg>`, w/2-25, h/2)
		return template.HTML(b.String())
	}
	if c.YMinZero && ymin > 0 {
		ymin = 0
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		ymin, ymax = ymin-1, ymax+1
	}
	span := ymax - ymin
	if !c.YMinZero || ymin < 0 {
		ymin -= 0.05 * span
	}
	ymax += 0.05 * span
	pw, ph := w-padL-padR, h-padT-padB
	px := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return padT + ph - (y-ymin)/(ymax-ymin)*ph }

	// Axes, grid and ticks.
	for _, t := range niceTicks(ymin, ymax, 5) {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#eee"/>`, fmtNum(padL), fmtNum(y), fmtNum(padL+pw), fmtNum(y))
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" text-anchor="end" fill="#444">%s</text>`, fmtNum(padL-4), fmtNum(y+3), esc(tickLabel(t)))
	}
	for _, t := range niceTicks(xmin, xmax, 6) {
		x := px(t)
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#999"/>`, fmtNum(x), fmtNum(padT+ph), fmtNum(x), fmtNum(padT+ph+4))
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" text-anchor="middle" fill="#444">%s</text>`, fmtNum(x), fmtNum(padT+ph+15), esc(tickLabel(t)))
	}
	fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#999"/>`, fmtNum(padL), fmtNum(padT), fmtNum(pw), fmtNum(ph))
	fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="11" text-anchor="middle" fill="#222">%s</text>`, fmtNum(padL+pw/2), fmtNum(h-8), esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(13 %s) rotate(-90)" font-size="11" text-anchor="middle" fill="#222">%s</text>`, fmtNum(padT+ph/2), esc(c.YLabel))

	// Series.
	fmt.Fprintf(&b, `<g clip-path="none">`)
	for _, s := range c.Series {
		color := s.Color
		if color == "" {
			color = "#333"
		}
		width := s.Width
		if width == 0 {
			width = 1.6
		}
		dash := ""
		if s.Dash {
			dash = ` stroke-dasharray="5 3"`
		}
		var segs [][]string
		var cur []string
		flush := func() {
			if len(cur) > 0 {
				segs = append(segs, cur)
				cur = nil
			}
		}
		clampY := func(y float64) float64 { return math.Max(ymin, math.Min(ymax, y)) }
		for i := range s.X {
			if i >= len(s.Y) || math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				flush()
				continue
			}
			y := py(clampY(s.Y[i]))
			if s.Step {
				right := xmax
				if i+1 < len(s.X) {
					right = s.X[i+1]
				}
				cur = append(cur, fmtNum(px(s.X[i]))+","+fmtNum(y), fmtNum(px(right))+","+fmtNum(y))
			} else {
				cur = append(cur, fmtNum(px(s.X[i]))+","+fmtNum(y))
			}
		}
		flush()
		for _, seg := range segs {
			if s.Fill && s.Step {
				first := strings.Split(seg[0], ",")[0]
				last := strings.Split(seg[len(seg)-1], ",")[0]
				base := fmtNum(py(math.Max(ymin, 0)))
				fmt.Fprintf(&b, `<polygon points="%s,%s %s %s,%s" fill="%s" fill-opacity="0.18" stroke="none"/>`,
					first, base, strings.Join(seg, " "), last, base, color)
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%g"%s/>`, strings.Join(seg, " "), color, width, dash)
		}
		if s.Markers {
			for i := range s.X {
				if i < len(s.Y) && !math.IsNaN(s.Y[i]) && !math.IsInf(s.Y[i], 0) {
					fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.4" fill="%s"/>`, fmtNum(px(s.X[i])), fmtNum(py(clampY(s.Y[i]))), color)
				}
			}
		}
	}
	b.WriteString(`</g>`)

	// Legend (top right, inside the plot).
	var names []Series
	for _, s := range c.Series {
		if s.Name != "" {
			names = append(names, s)
		}
	}
	if len(names) > 0 {
		lw := 0.0
		for _, s := range names {
			lw = math.Max(lw, float64(len([]rune(s.Name)))*5.6+30)
		}
		lx, ly := padL+pw-lw-4, padT+4
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="#fff" fill-opacity="0.85" stroke="#ddd"/>`,
			fmtNum(lx), fmtNum(ly), fmtNum(lw), fmtNum(float64(len(names))*13+4))
		for i, s := range names {
			y := ly + 11 + float64(i)*13
			dash := ""
			if s.Dash {
				dash = ` stroke-dasharray="5 3"`
			}
			fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2"%s/>`,
				fmtNum(lx+4), fmtNum(y-3), fmtNum(lx+22), fmtNum(y-3), s.Color, dash)
			fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" fill="#222">%s</text>`, fmtNum(lx+26), fmtNum(y), esc(s.Name))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// Bar is one bar of a BarChart group.
type Bar struct {
	Name    string // legend name (bars with the same name share a colour)
	Value   float64
	Color   string
	Hatched bool // lighter, outlined: e.g. the paper's number
}

// BarGroup is a labelled group of bars.
type BarGroup struct {
	Label string
	Bars  []Bar
}

// BarChart is a grouped bar chart with values in [0, YMax] (fractions shown as percent).
type BarChart struct {
	Title, YLabel string
	W, H          int
	Groups        []BarGroup
	YMax          float64
	Percent       bool
}

// SVG renders the bar chart.
func (c *BarChart) SVG() template.HTML {
	w, h := float64(c.W), float64(c.H)
	if w == 0 {
		w = 560
	}
	if h == 0 {
		h = 260
	}
	ymax := c.YMax
	if ymax <= 0 {
		ymax = 1
	}
	pw, ph := w-padL-padR, h-padT-padB-12
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="%g" height="%g" viewBox="0 0 %g %g" role="img">`, w, h, w, h)
	fmt.Fprintf(&b, `<title>%s</title><rect width="100%%" height="100%%" fill="#fff"/>`, esc(c.Title))
	fmt.Fprintf(&b, `<text x="%g" y="16" font-size="13" font-weight="600" fill="#222">%s</text>`, padL, esc(c.Title))
	py := func(v float64) float64 { return padT + ph - math.Max(0, math.Min(v, ymax))/ymax*ph }
	for _, t := range niceTicks(0, ymax, 5) {
		y := py(t)
		label := c.label(t)
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#eee"/>`, fmtNum(padL), fmtNum(y), fmtNum(padL+pw), fmtNum(y))
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" text-anchor="end" fill="#444">%s</text>`, fmtNum(padL-4), fmtNum(y+3), esc(label))
	}
	fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#999"/>`, fmtNum(padL), fmtNum(padT+ph), fmtNum(padL+pw), fmtNum(padT+ph))
	fmt.Fprintf(&b, `<text transform="translate(13 %s) rotate(-90)" font-size="11" text-anchor="middle" fill="#222">%s</text>`, fmtNum(padT+ph/2), esc(c.YLabel))
	if len(c.Groups) > 0 {
		gw := pw / float64(len(c.Groups))
		for gi, g := range c.Groups {
			gx := padL + float64(gi)*gw
			n := max(len(g.Bars), 1)
			bw := math.Min(28, (gw-10)/float64(n))
			x0 := gx + (gw-bw*float64(n))/2
			for bi, bar := range g.Bars {
				if math.IsNaN(bar.Value) {
					continue
				}
				x := x0 + float64(bi)*bw
				y := py(bar.Value)
				fill, opacity, stroke := colorOr(bar.Color), "0.9", "none"
				if bar.Hatched {
					opacity, stroke = "0.25", bar.Color
				}
				fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="%s" stroke="%s"><title>%s: %s</title></rect>`,
					fmtNum(x+1), fmtNum(y), fmtNum(bw-2), fmtNum(padT+ph-y), fill, opacity, stroke, esc(g.Label+" "+bar.Name), esc(c.label(bar.Value)))
			}
			fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" text-anchor="middle" fill="#222">%s</text>`,
				fmtNum(gx+gw/2), fmtNum(padT+ph+14), esc(g.Label))
		}
		// Legend below the axis.
		seen := map[string]bool{}
		lx := padL
		for _, g := range c.Groups {
			for _, bar := range g.Bars {
				if seen[bar.Name] || bar.Name == "" {
					continue
				}
				seen[bar.Name] = true
				opacity := "0.9"
				if bar.Hatched {
					opacity = "0.25"
				}
				fmt.Fprintf(&b, `<rect x="%s" y="%s" width="10" height="10" fill="%s" fill-opacity="%s" stroke="%s"/>`,
					fmtNum(lx), fmtNum(h-16), colorOr(bar.Color), opacity, colorOr(bar.Color))
				fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" fill="#222">%s</text>`, fmtNum(lx+13), fmtNum(h-7), esc(bar.Name))
				lx += float64(len([]rune(bar.Name)))*5.8 + 28
			}
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// label formats a bar chart value (as a percentage when Percent).
func (c *BarChart) label(v float64) string {
	if c.Percent {
		return strconv.FormatFloat(math.Round(v*1e6)/1e4, 'f', -1, 64) + "%" // rounded: 0.6·100 is 60.00000000000001
	}
	return tickLabel(v)
}

func colorOr(c string) string {
	if c == "" {
		return "#333"
	}
	return c
}

// ParticlePicture is one configuration of a ParticleGrid: particle positions in the picture's
// plane (any origin; the grid centres each picture on its mean) and a label drawn under it.
// No positions draws the label alone (e.g. a failed minimisation).
type ParticlePicture struct {
	X, Y  []float64
	Label string
}

// ParticleGrid is a grid of small particle pictures (rows × columns, e.g. configurations
// before and after minimisation), all on one length scale: one circle per particle, the
// particle Highlight (0-based; −1 for none) drawn in dark grey, the others in Color.
type ParticleGrid struct {
	Title     string
	Note      string
	Columns   []string // column headers (may be shorter than a row)
	Rows      []string // row headers
	Cells     [][]ParticlePicture
	Cell      int // cell size in pixels (default 120)
	Color     string
	Highlight int
}

// SVG renders the grid.
func (g *ParticleGrid) SVG() template.HTML {
	cell := float64(g.Cell)
	if cell <= 0 {
		cell = 120
	}
	cols := 0
	for _, r := range g.Cells {
		cols = max(cols, len(r))
	}
	const left, top, labelH = 70.0, 50.0, 16.0
	w := left + float64(max(cols, 1))*cell + 8
	w = math.Max(w, 16+7.5*float64(max(len([]rune(g.Title)), len([]rune(g.Note))*6/7))) // room for the title
	h := top + float64(len(g.Cells))*(cell+labelH) + 6
	// One scale for all pictures: the largest distance of a particle from its picture's
	// centre, and a radius from the median nearest-neighbour distance.
	extent, nn := 0.0, []float64{}
	centred := make([][]ParticlePicture, len(g.Cells))
	for i, row := range g.Cells {
		for _, p := range row {
			n := min(len(p.X), len(p.Y))
			c := ParticlePicture{Label: p.Label, X: make([]float64, n), Y: make([]float64, n)}
			mx, my := 0.0, 0.0
			for k := range n {
				mx, my = mx+p.X[k], my+p.Y[k]
			}
			if n > 0 {
				mx, my = mx/float64(n), my/float64(n)
			}
			for k := range n {
				c.X[k], c.Y[k] = p.X[k]-mx, p.Y[k]-my
				extent = math.Max(extent, math.Hypot(c.X[k], c.Y[k]))
			}
			for a := range n {
				best := math.Inf(1)
				for b := range n {
					if a != b {
						best = math.Min(best, math.Hypot(c.X[a]-c.X[b], c.Y[a]-c.Y[b]))
					}
				}
				if !math.IsInf(best, 1) {
					nn = append(nn, best)
				}
			}
			centred[i] = append(centred[i], c)
		}
	}
	if !(extent > 0) || math.IsInf(extent, 0) {
		extent = 1
	}
	radius := 0.15 * extent
	if len(nn) > 0 {
		sort.Float64s(nn)
		if m := nn[len(nn)/2]; m > 0 {
			radius = math.Min(radius, 0.3*m)
		}
	}
	scale := (cell/2 - 10) / (extent + radius)
	rpx := math.Max(2.5, math.Min(9, radius*scale))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart particles" width="%g" height="%g" viewBox="0 0 %g %g" role="img">`, w, h, w, h)
	fmt.Fprintf(&b, `<title>%s</title><rect width="100%%" height="100%%" fill="#fff"/>`, esc(g.Title))
	fmt.Fprintf(&b, `<text x="8" y="16" font-size="13" font-weight="600" fill="#222">%s</text>`, esc(g.Title))
	if g.Note != "" {
		fmt.Fprintf(&b, `<text x="8" y="29" font-size="10" fill="#666">%s</text>`, esc(g.Note))
	}
	for j, name := range g.Columns {
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="11" text-anchor="middle" fill="#222">%s</text>`,
			fmtNum(left+(float64(j)+0.5)*cell), fmtNum(top-6), esc(name))
	}
	color := colorOr(g.Color)
	for i, row := range centred {
		y0 := top + float64(i)*(cell+labelH)
		if i < len(g.Rows) {
			fmt.Fprintf(&b, `<text x="8" y="%s" font-size="11" fill="#222">%s</text>`, fmtNum(y0+cell/2+4), esc(g.Rows[i]))
		}
		for j, p := range row {
			x0 := left + float64(j)*cell
			cx, cy := x0+cell/2, y0+cell/2
			fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#ddd"/>`,
				fmtNum(x0+2), fmtNum(y0+2), fmtNum(cell-4), fmtNum(cell-4))
			if len(p.X) == 0 {
				fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" text-anchor="middle" fill="#888">no configuration</text>`, fmtNum(cx), fmtNum(cy))
			}
			for k := range p.X {
				fill := color
				if k == g.Highlight {
					fill = "#222"
				}
				// y up, as in a plot.
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="%s" fill="%s" fill-opacity="0.85" stroke="#fff"><title>particle %d</title></circle>`,
					fmtNum(cx+p.X[k]*scale), fmtNum(cy-p.Y[k]*scale), fmtNum(rpx), fill, k+1)
			}
			fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="10" text-anchor="middle" fill="#222">%s</text>`,
				fmtNum(cx), fmtNum(y0+cell+labelH-5), esc(p.Label))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
