package report

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// The pictures are plain SVG 1.1 written by hand: no plotting dependency,
// byte-identical output for the same report, readable in any browser.

const font = `font-family="DejaVu Sans, Arial, sans-serif"`

func svgOpen(b *bytes.Buffer, w, h int, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="12">`+"\n", w, h, w, h, font)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="15" font-weight="bold" text-anchor="middle">%s</text>`+"\n", w/2, html.EscapeString(title))
}

// diverging maps [-1, 1] to blue - white - red (conflict is blue).
func diverging(v float64) string {
	if math.IsNaN(v) {
		return "#cccccc"
	}
	v = math.Max(-1, math.Min(1, v))
	lerp := func(a, b float64, t float64) int { return int(math.Round(a + (b-a)*t)) }
	if v < 0 {
		t := -v
		return fmt.Sprintf("#%02x%02x%02x", lerp(255, 33, t), lerp(255, 102, t), lerp(255, 172, t))
	}
	return fmt.Sprintf("#%02x%02x%02x", lerp(255, 178, v), lerp(255, 24, v), lerp(255, 43, v))
}

// ConflictSVG draws the L×L cosine matrix of the language directions, with
// each cell's value; negative cells (conflicts) are blue.
func ConflictSVG(r *Report) []byte {
	var b bytes.Buffer
	L := len(r.Langs)
	cell := 44
	if L > 14 {
		cell = 28
	}
	left, top := 60, 70
	w := left + L*cell + 120
	h := top + L*cell + 60
	svgOpen(&b, w, h, "Language directions: cos(G_i, G_j)")
	fmt.Fprintf(&b, `<text x="%d" y="44" text-anchor="middle" fill="#555">blue = conflicting gradients; PCGrad projections fired: %d</text>`+"\n", w/2, r.Projections)
	for i := 0; i < L; i++ {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, top+i*cell+cell/2, html.EscapeString(r.Langs[i]))
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", left+i*cell+cell/2, top-6, html.EscapeString(r.Langs[i]))
		for j := 0; j < L; j++ {
			v := math.NaN()
			if i < len(r.Conflict) && j < len(r.Conflict[i]) {
				v = r.Conflict[i][j]
			}
			x, y := left+j*cell, top+i*cell
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#ffffff"/>`+"\n", x, y, cell, cell, diverging(v))
			txt := "n/a"
			if !math.IsNaN(v) {
				txt = fmt.Sprintf("%.2f", v)
			}
			fill := "#000000"
			if math.Abs(v) > 0.6 {
				fill = "#ffffff"
			}
			if cell >= 40 {
				fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" dominant-baseline="middle" font-size="10" fill="%s">%s</text>`+"\n", x+cell/2, y+cell/2, fill, txt)
			}
		}
	}
	// Colour bar.
	bx, by, bh := left+L*cell+30, top, L*cell
	for k := 0; k < 20; k++ {
		v := 1 - 2*float64(k)/19
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="16" height="%d" fill="%s"/>`+"\n", bx, by+k*bh/20, bh/20+1, diverging(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">+1</text>`+"\n", bx+20, by+10)
	fmt.Fprintf(&b, `<text x="%d" y="%d">0</text>`+"\n", bx+20, by+bh/2+4)
	fmt.Fprintf(&b, `<text x="%d" y="%d">-1</text>`+"\n", bx+20, by+bh)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// ScoresSVG draws one histogram of cos(s_i, g*) per language with the keep
// threshold as a red line.
func ScoresSVG(r *Report) []byte {
	var b bytes.Buffer
	n := len(r.Languages)
	cols := 3
	if n < cols {
		cols = max(n, 1)
	}
	rows := (n + cols - 1) / cols
	pw, ph := 260, 150
	w, h := cols*pw+20, rows*ph+60
	svgOpen(&b, w, h, fmt.Sprintf("Scores cos(s_i, g*) per language, rule %s (green: kept side, red: threshold)", r.Rule))
	for idx, l := range r.Languages {
		ox, oy := 10+(idx%cols)*pw, 40+(idx/cols)*ph
		x0, y0, iw, ih := ox+30, oy+22, pw-45, ph-52
		var peak int64 = 1
		for _, c := range l.Histogram {
			peak = max(peak, c)
		}
		thr := "none"
		if !math.IsNaN(l.Cutoff) && !math.IsInf(l.Cutoff, 0) {
			thr = fmt.Sprintf("%.3f", l.Cutoff)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text><text x="%d" y="%d" fill="#555">n=%d kept=%d <tspan fill="#d62728">threshold %s</tspan></text>`+"\n",
			x0, oy+14, html.EscapeString(l.Lang), x0+30, oy+14, l.Pairs, l.Kept, thr)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#f7f7f7" stroke="#bbbbbb"/>`+"\n", x0, y0, iw, ih)
		bw := float64(iw) / float64(max(len(l.Histogram), 1))
		for i, c := range l.Histogram {
			if c == 0 {
				continue
			}
			bh := float64(ih) * float64(c) / float64(peak)
			center := -1 + (float64(i)+0.5)*2/float64(len(l.Histogram))
			fill := "#4c78a8"
			if center > l.Cutoff {
				fill = "#54a24b"
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", float64(x0)+float64(i)*bw, float64(y0+ih)-bh, math.Max(bw-0.5, 0.5), bh, fill)
		}
		// Axis: -1, 0, 1.
		for _, t := range []float64{-1, 0, 1} {
			x := float64(x0) + (t+1)/2*float64(iw)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10">%g</text>`+"\n", x, y0+ih+12, t)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-size="10">%d</text>`+"\n", x0-3, y0+8, peak)
		if !math.IsNaN(l.Cutoff) && !math.IsInf(l.Cutoff, 0) {
			x := float64(x0) + (math.Max(-1, math.Min(1, l.Cutoff))+1)/2*float64(iw)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#d62728" stroke-width="2"/>`+"\n", x, y0-2, x, y0+ih)
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// KeptSVG draws the fraction of pairs kept per language as horizontal bars.
func KeptSVG(r *Report) []byte {
	var b bytes.Buffer
	n := len(r.Languages)
	rowH, left, barW := 24, 60, 360
	w, h := left+barW+140, 60+n*rowH+30
	svgOpen(&b, w, h, "Pairs kept per language")
	for i, l := range r.Languages {
		y := 40 + i*rowH
		frac := 0.0
		if l.Pairs > 0 {
			frac = float64(l.Kept) / float64(l.Pairs)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, y+rowH/2, html.EscapeString(l.Lang))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#eeeeee"/>`+"\n", left, y+3, barW, rowH-6)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#54a24b"/>`+"\n", left, y+3, frac*float64(barW), rowH-6)
		fmt.Fprintf(&b, `<text x="%d" y="%d" dominant-baseline="middle">%.0f%% (%d/%d)</text>`+"\n", left+barW+6, y+rowH/2, 100*frac, l.Kept, l.Pairs)
	}
	for _, t := range []float64{0, 0.5, 1} {
		x := float64(left) + t*float64(barW)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10">%.0f%%</text>`+"\n", x, 40+n*rowH+14, 100*t)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
