package bench

// The chart: horizontal grouped bars, one row per measurement and one bar
// per target, so that a reader sees at a glance where lockfs sits between
// the kernel (tmpfs) and the FUSE floor (the no-op server). Times are on a
// log scale (they span four decades); rates are drawn as their inverse
// (µs per operation) so that every bar reads "shorter is faster". Server
// RSS gets its own linear panel. Bars that are not real lock numbers (a
// handoff on a server without mutual exclusion) are hatched.
//
// Drawn with the standard library's image and image/png and the Go fonts
// of golang.org/x/image: a chart this simple does not need a plotting
// library.

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Layout, in pixels.
const (
	chartW    = 1500
	labelW    = 420 // row labels
	ratioW    = 250 // ratio text right of the bars
	margin    = 20
	barH      = 11
	barGap    = 2
	rowPad    = 9
	groupHead = 24
)

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colText       = color.RGBA{30, 30, 30, 255}
	colMuted      = color.RGBA{110, 110, 110, 255}
	colGrid       = color.RGBA{215, 215, 215, 255}
	colGridMinor  = color.RGBA{238, 238, 238, 255}
	colBand       = color.RGBA{246, 247, 250, 255}

	// By target kind; other targets take the palette in order.
	kindColors = map[string]color.RGBA{
		"tmpfs":        {44, 160, 44, 255},
		"noop":         {140, 140, 140, 255},
		"noop-log":     {188, 170, 120, 255},
		"lockfs":       {31, 119, 180, 255},
		"lockfs-quiet": {120, 180, 225, 255},
	}
	palette = []color.RGBA{{255, 127, 14, 255}, {148, 103, 189, 255}, {214, 39, 40, 255}, {23, 190, 207, 255}, {227, 119, 194, 255}}
)

type fonts struct{ regular, small, bold, title font.Face }

func loadFonts() (*fonts, error) {
	reg, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, err
	}
	bold, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return nil, err
	}
	face := func(f *opentype.Font, size float64) (font.Face, error) {
		return opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	}
	var fs fonts
	if fs.regular, err = face(reg, 13); err != nil {
		return nil, err
	}
	if fs.small, err = face(reg, 11); err != nil {
		return nil, err
	}
	if fs.bold, err = face(bold, 13); err != nil {
		return nil, err
	}
	if fs.title, err = face(bold, 18); err != nil {
		return nil, err
	}
	return &fs, nil
}

// canvas wraps the image with the few drawing primitives the chart needs.
type canvas struct {
	img *image.RGBA
	f   *fonts
}

func (c *canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1), image.NewUniform(col), image.Point{}, draw.Src)
}

// hatch fills a rectangle with a pale tint and diagonal stripes.
func (c *canvas) hatch(x0, y0, x1, y1 int, col color.RGBA) {
	pale := color.RGBA{uint8((int(col.R) + 3*255) / 4), uint8((int(col.G) + 3*255) / 4), uint8((int(col.B) + 3*255) / 4), 255}
	c.rect(x0, y0, x1, y1, pale)
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			if (x+y)%6 < 2 {
				c.img.SetRGBA(x, y, col)
			}
		}
	}
}

// text draws s with its baseline at y; align is 'l', 'r' or 'c' around x.
// It returns the width.
func (c *canvas) text(face font.Face, x, y int, s string, col color.Color, align byte) int {
	d := &font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: face}
	w := d.MeasureString(s).Round()
	switch align {
	case 'r':
		x -= w
	case 'c':
		x -= w / 2
	}
	d.Dot = fixed.P(x, y)
	d.DrawString(s)
	return w
}

func (c *canvas) width(face font.Face, s string) int {
	return (&font.Drawer{Face: face}).MeasureString(s).Round()
}

// row is one measurement in a panel.
type row struct {
	m     *Measurement
	label string
	group string
}

// isTime reports whether a unit goes in the time panel.
func isTime(unit string) bool { return unit != "MiB" }

// plotValue is what a bar shows: µs per operation for rates, the value
// otherwise.
func plotValue(m *Measurement, v float64) float64 {
	if m.Unit == "ops/s" {
		return 1e6 / v
	}
	return v
}

// groupTitles head the groups of rows in the time panel; rssTitles in
// the RSS panel.
var (
	groupTitles = map[string]string{
		"setlk": "lock + unlock on an open file", "ofd": "lock + unlock on an open file", "flock": "lock + unlock on an open file",
		"oslo": "lock + unlock on an open file", "sparse": "a lock now and then: one oslo cycle every 10 ms",
		"handoff":    "handoff between two processes (F_SETLKW)",
		"throughput": "throughput of P processes (bar: 1 / total rate)", "files": "many files",
		"locks": "many locks held by one process: one per file", "ranges": "many locks held by one process: byte ranges of one file",
	}
	rssTitles = map[string]string{
		"files": "many files", "locks": "many whole-file locks, one per file", "ranges": "many byte-range locks on one file",
	}
)

// WritePNG draws the chart of r to path.
func WritePNG(r *Result, path string) error {
	img, err := Render(r)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Render draws the chart of r.
func Render(r *Result) (*image.RGBA, error) {
	fs, err := loadFonts()
	if err != nil {
		return nil, err
	}
	var timeRows, rssRows []row
	for _, m := range r.Measurements {
		label := m.Title
		if m.Unit == "ops/s" {
			label += " (1/rate)"
		}
		switch {
		case isTime(m.Unit):
			timeRows = append(timeRows, row{m: m, label: label, group: groupTitles[m.Group]})
		case !strings.Contains(m.ID, ".before."):
			// The RSS before a step is the one after the step before
			// it: the table has it, the chart would only be longer.
			rssRows = append(rssRows, row{m: m, label: label, group: rssTitles[m.Group]})
		}
	}
	panelH := func(rows []row) int {
		if len(rows) == 0 {
			return 0
		}
		rowH := len(panelTargets(r, rows))*(barH+barGap) + rowPad
		groups := 0
		for i, rw := range rows {
			if i == 0 || rw.group != rows[i-1].group {
				groups++
			}
		}
		return 60 + len(rows)*rowH + groups*groupHead + 30
	}
	headerH := 110
	height := headerH + panelH(timeRows) + panelH(rssRows) + 40 + 16*len(noteLines(r))
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, chartW, height)), f: fs}
	c.rect(0, 0, chartW, height, colBackground)

	colors := map[string]color.RGBA{}
	next := 0
	for _, t := range r.Targets {
		if col, ok := kindColors[t.Kind]; ok {
			colors[t.Name] = col
		} else {
			colors[t.Name] = palette[next%len(palette)]
			next++
		}
	}

	// Header: title, conditions, legend.
	y := margin + 18
	c.text(fs.title, margin, y, "lockbench: where lockfs sits between the kernel (tmpfs) and the FUSE floor (no-op server)", colText, 'l')
	y += 22
	cond := fmt.Sprintf("%s · %d rounds (scale steps %d), median shown · %d CPUs %s · Linux %s · %s · load average %s → %s",
		r.Started.Format("2006-01-02 15:04 MST"), r.Config.Rounds, r.Config.ScaleRounds, r.Host.CPUs, r.Host.CPUModel, r.Host.Kernel, r.Host.GoVersion,
		r.Host.LoadStart, r.Host.LoadEnd)
	c.text(fs.regular, margin, y, cond, colMuted, 'l')
	y += 26
	x := margin
	for _, t := range r.Targets {
		c.rect(x, y-11, x+22, y+1, colors[t.Name])
		x += 28
		x += c.text(fs.bold, x, y, t.Name, colText, 'l') + 24
	}
	c.hatch(x, y-11, x+22, y+1, colMuted)
	c.text(fs.regular, x+28, y, "hatched: not a real lock number (the server has no mutual exclusion)", colText, 'l')
	y += 24

	if len(timeRows) > 0 {
		y = c.panel(r, timeRows, colors, y, true,
			"time per operation, median of the rounds (µs, log scale; shorter is faster)")
	}
	if len(rssRows) > 0 {
		y = c.panel(r, rssRows, colors, y, false, "RSS of the serving process (MiB, linear; n/a for tmpfs)")
	}
	y += 10
	for _, l := range noteLines(r) {
		c.text(fs.small, margin, y, l, colMuted, 'l')
		y += 16
	}
	return c.img, nil
}

// panelTargets are the targets with a value in some row of a panel: the
// RSS panel has no tmpfs bars.
func panelTargets(r *Result, rows []row) []Target {
	var out []Target
	for _, t := range r.Targets {
		for _, rw := range rows {
			if s := rw.m.Results[t.Name]; s != nil && len(s.Rounds) > 0 {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// noteLines are the result's notes, wrapped.
func noteLines(r *Result) []string {
	var out []string
	for _, n := range r.Notes {
		line := "• "
		for _, w := range strings.Fields(n) {
			if len(line)+len(w) > 230 {
				out = append(out, line)
				line = "   "
			}
			line += w + " "
		}
		out = append(out, line)
	}
	return out
}

// panel draws one panel of rows starting at y and returns the y below it.
func (c *canvas) panel(r *Result, rows []row, colors map[string]color.RGBA, y int, logScale bool, title string) int {
	fs := c.f
	c.text(fs.bold, margin, y+14, title, colText, 'l')
	y += 30
	x0, x1 := margin+labelW, chartW-margin-ratioW

	// Scale.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, rw := range rows {
		for _, s := range rw.m.Results {
			if len(s.Rounds) == 0 {
				continue
			}
			v := plotValue(rw.m, s.Median)
			if v > 0 && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	var pos func(v float64) int
	var ticks []float64
	if logScale {
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		pos = func(v float64) int {
			v = math.Max(v, lo)
			return x0 + int(math.Round((math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*float64(x1-x0)))
		}
		for d := lo; d <= hi*1.001; d *= 10 {
			ticks = append(ticks, d)
		}
	} else {
		lo = 0
		step := niceStep(hi / 6)
		hi = math.Ceil(hi/step) * step
		pos = func(v float64) int { return x0 + int(math.Round(v/hi*float64(x1-x0))) }
		for v := 0.0; v <= hi*1.001; v += step {
			ticks = append(ticks, v)
		}
	}
	top := y + 16
	targets := panelTargets(r, rows)
	// Height of the rows.
	h := 0
	for i, rw := range rows {
		if i == 0 || rw.group != rows[i-1].group {
			h += groupHead
		}
		h += len(targets)*(barH+barGap) + rowPad
	}
	bottom := top + h
	// Grid.
	if logScale {
		for _, d := range ticks[:len(ticks)-1] {
			for k := 2; k <= 9; k++ {
				x := pos(d * float64(k))
				c.rect(x, top, x+1, bottom, colGridMinor)
			}
		}
	}
	for _, v := range ticks {
		x := pos(v)
		c.rect(x, top, x+1, bottom, colGrid)
		label := fmtTick(v, logScale)
		c.text(fs.small, x, top-4, label, colMuted, 'c')
		c.text(fs.small, x, bottom+13, label, colMuted, 'c')
	}

	y = top
	for i, rw := range rows {
		if i == 0 || rw.group != rows[i-1].group {
			y += groupHead
			c.text(fs.bold, margin, y-7, rw.group, colText, 'l')
		}
		rh := len(targets)*(barH+barGap) + rowPad
		if i%2 == 0 {
			c.rect(margin, y, x0-4, y+rh-rowPad/2, colBand)
		}
		c.text(fs.regular, margin+6, y+rh/2+3, rw.label, colText, 'l')
		by := y + 2
		for _, t := range targets {
			s := rw.m.Results[t.Name]
			col := colors[t.Name]
			if s == nil || len(s.Rounds) == 0 {
				c.text(fs.small, x0+4, by+barH-1, "n/a", colMuted, 'l')
				by += barH + barGap
				continue
			}
			v := plotValue(rw.m, s.Median)
			xe := max(pos(v), x0+1)
			if s.Real {
				c.rect(x0, by, xe, by+barH, col)
			} else {
				c.hatch(x0, by, xe, by+barH, col)
			}
			label := FormatValue(s.Median) + " " + rw.m.Unit
			if rw.m.Unit == "ops/s" {
				label = FormatValue(v) + " µs/op (" + label + ")"
			}
			if !s.Real {
				label += " not real"
			}
			if xe+4+c.width(fs.small, label) > x1+8 {
				// No room right of a long bar: write inside it.
				in := colBackground
				if !s.Real {
					in = colText
				}
				c.text(fs.small, xe-4, by+barH-1, label, in, 'r')
			} else {
				c.text(fs.small, xe+4, by+barH-1, label, colMuted, 'l')
			}
			by += barH + barGap
		}
		// Ratios of the non-reference targets.
		ry := y + rh/2 + 3
		var parts []string
		for _, p := range r.RatioPairs(false) {
			if v := rw.m.Ratio(p[0], p[1]); !math.IsNaN(v) {
				parts = append(parts, fmt.Sprintf("%s/%s %s", p[0], p[1], formatRatio(v)))
			}
		}
		if len(parts) > 0 {
			c.text(fs.small, x1+12, ry, strings.Join(parts, "  "), colText, 'l')
		}
		y += rh
	}
	return bottom + 30
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64, logScale bool) string {
	if !logScale {
		return fmt.Sprintf("%g", v)
	}
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%g s", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%g ms", v/1e3)
	default:
		return fmt.Sprintf("%g µs", v)
	}
}

func formatRatio(v float64) string { return "×" + FormatRatio(v) }
