package experiment

import (
	"fmt"
	"math"
	"strings"
)

var palette = []string{"#4e79a7", "#bab0ac", "#e15759", "#f28e2b", "#edc948", "#59a14f", "#76b7b2", "#b07aa1",
	"#ff9da7", "#9c755f", "#1f3b73", "#8cd17d", "#d4a6c8", "#499894", "#000000"}

func svgHeader(b *strings.Builder, w, h int, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(b, `<text x="%d" y="20" text-anchor="middle" font-size="14">%s</text>`+"\n", w/2, esc(title))
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// AccuracySVG is a grouped bar chart: held-out accuracy (shared rule) per
// language, one bar per arm, with ±1 std error bars over seeds.
func (res *Results) AccuracySVG() string {
	t := res.Config.Task
	langs := make([]string, 0, len(t.Langs))
	for _, l := range t.Langs {
		langs = append(langs, l.Code+" ("+l.Kind+")")
	}
	const w, h, left, right, top, bottom = 1250, 440, 50, 330, 40, 60
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	var b strings.Builder
	svgHeader(&b, w, h, "Held-out preference accuracy (shared rule), mean ± std over seeds")
	y := func(v float64) float64 { return top + ph*(1-v) }
	for _, v := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.2f</text>`+"\n",
			left, w-right, y(v), y(v), left-5, y(v)+4, v)
	}
	group := pw / float64(len(langs))
	arms := armsRun(res.Runs)
	bw := group * 0.8 / float64(max(len(arms), 1))
	for ai, arm := range arms {
		s := collect(res.Runs, arm, false)
		for li, l := range t.Langs {
			m, sd := s.mean[l.Code], s.std[l.Code]
			if math.IsNaN(m) {
				continue
			}
			x := float64(left) + group*float64(li) + group*0.1 + bw*float64(ai)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y(m), bw, y(0)-y(m), palette[ai%len(palette)])
			cx := x + bw/2
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/>`+"\n", cx, cx, y(math.Min(1, m+sd)), y(math.Max(0, m-sd)))
		}
	}
	for li, name := range langs {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(left)+group*(float64(li)+0.5), h-bottom+18, esc(name))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="black" stroke-dasharray="4 3"/>`+"\n", left, w-right, y(0.5), y(0.5))
	for ai, arm := range arms {
		yy := top + 10 + 20*ai
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", w-right+10, yy, palette[ai%len(palette)], w-right+28, yy+10, esc(arm))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// FidelitySVG plots decision agreement (|score| ≥ FidelityMinScore) against
// log2 k, one line per sketch method, mean over seeds.
func (res *Results) FidelitySVG() string {
	const w, h, left, right, top, bottom = 760, 400, 60, 240, 40, 50
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	type pt struct{ k, v, all float64 }
	series := map[string]map[int][]pt{}
	var methods []string
	kmin, kmax := math.Inf(1), math.Inf(-1)
	lo := 1.0
	for _, f := range res.Fidelity {
		if series[f.Method] == nil {
			series[f.Method] = map[int][]pt{}
			methods = append(methods, f.Method)
		}
		series[f.Method][f.K] = append(series[f.Method][f.K], pt{float64(f.K), f.AgreeBig, f.Agree})
		kmin, kmax = math.Min(kmin, float64(f.K)), math.Max(kmax, float64(f.K))
		lo = math.Min(lo, math.Min(f.AgreeBig, f.Agree))
	}
	lo = math.Floor(lo*10) / 10
	if lo >= 1 {
		lo = 0.9
	}
	var b strings.Builder
	svgHeader(&b, w, h, "ConGrad decisions: sketch vs exact gradients")
	x := func(k float64) float64 {
		if kmax == kmin {
			return left + pw/2
		}
		return left + pw*(math.Log2(k)-math.Log2(kmin))/(math.Log2(kmax)-math.Log2(kmin))
	}
	y := func(v float64) float64 { return top + ph*(1-(v-lo)/(1-lo)) }
	for i := 0; i <= 5; i++ {
		v := lo + (1-lo)*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.2f</text>`+"\n", left, w-right, y(v), y(v), left-5, y(v)+4, v)
	}
	for k := kmin; k <= kmax; k *= 2 {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(k), h-bottom+18, k)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">sketch size k (log scale)</text>`+"\n", left+pw/2, h-10)
	legend := 0
	for mi, m := range methods {
		for vi, which := range []string{"|score| ≥ 0.05", "all pairs"} {
			var path []string
			for k := kmin; k <= kmax; k *= 2 {
				pts := series[m][int(k)]
				if len(pts) == 0 {
					continue
				}
				var vs []float64
				for _, p := range pts {
					vs = append(vs, pick2(vi == 0, p.v, p.all))
				}
				mv, _ := meanStd(vs)
				path = append(path, fmt.Sprintf("%.1f,%.1f", x(k), y(mv)))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(k), y(mv), palette[[]int{0, 2, 5, 3}[mi%4]])
			}
			dash := ""
			if vi == 1 {
				dash = ` stroke-dasharray="5 3"`
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(path, " "), palette[[]int{0, 2, 5, 3}[mi%4]], dash)
			yy := top + 10 + 20*legend
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%d" y="%d">%s, %s</text>`+"\n",
				w-right+8, w-right+28, yy, yy, palette[[]int{0, 2, 5, 3}[mi%4]], dash, w-right+32, yy+4, esc(m), esc(which))
			legend++
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func pick2(first bool, a, b float64) float64 {
	if first {
		return a
	}
	return b
}
