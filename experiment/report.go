package experiment

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Markers delimit the generated part of EXPERIMENTS.md; text outside them
// (design notes, conclusions) is kept when the report is regenerated.
const (
	BeginMarker = "<!-- BEGIN GENERATED: experiment (do not edit by hand) -->"
	EndMarker   = "<!-- END GENERATED -->"
)

// accStats are per-language accuracy statistics of one arm over seeds.
type accStats struct {
	mean, std map[string]float64
}

func collect(runs []RunResult, arm string, own bool) accStats {
	vals := map[string][]float64{}
	for _, r := range runs {
		if r.Arm != arm {
			continue
		}
		m := r.Acc
		if own {
			m = r.OwnAcc
		}
		for l, v := range m {
			vals[l] = append(vals[l], v)
		}
	}
	s := accStats{mean: map[string]float64{}, std: map[string]float64{}}
	for l, v := range vals {
		s.mean[l], s.std[l] = meanStd(v)
	}
	return s
}

// groupMean averages per-seed group means (e.g. all unseen languages) and
// returns their mean and std over seeds.
func groupMean(runs []RunResult, arm string, langs []string) (float64, float64) {
	var per []float64
	for _, r := range runs {
		if r.Arm != arm {
			continue
		}
		s := 0.0
		for _, l := range langs {
			s += r.Acc[l]
		}
		per = append(per, s/float64(len(langs)))
	}
	return meanStd(per)
}

// pairedDiff is the per-seed difference of group means, arm − ref: mean and std.
func pairedDiff(runs []RunResult, arm, ref string, langs []string) (float64, float64) {
	return meanStd(pairedDiffs(runs, arm, ref, langs))
}

// pairedDiffs are the per-seed differences of group means, arm − ref, for
// the seeds that ran both.
func pairedDiffs(runs []RunResult, arm, ref string, langs []string) []float64 {
	group := func(r RunResult) float64 {
		s := 0.0
		for _, l := range langs {
			s += r.Acc[l]
		}
		return s / float64(len(langs))
	}
	refBy := map[uint64]float64{}
	for _, r := range runs {
		if r.Arm == ref {
			refBy[r.Seed] = group(r)
		}
	}
	var d []float64
	for _, r := range runs {
		if v, ok := refBy[r.Seed]; ok && r.Arm == arm {
			d = append(d, group(r)-v)
		}
	}
	return d
}

// armsRun are the arms in table order that have at least one run (a
// results.json of an earlier version lacks the newer arms).
func armsRun(runs []RunResult) []string {
	var out []string
	for _, a := range Arms {
		for _, r := range runs {
			if r.Arm == a {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// ciCell renders a paired difference as mean [95% CI] over seeds, with a
// mark when the interval excludes 0; one seed gives no interval.
func ciCell(d []float64) string {
	m, lo, hi := tInterval(d, 0.95)
	switch {
	case len(d) == 0:
		return "–"
	case len(d) == 1:
		return fmt.Sprintf("%+.3f (1 seed)", m)
	case lo > 0 || hi < 0:
		return fmt.Sprintf("**%+.3f [%+.3f, %+.3f]**", m, lo, hi)
	}
	return fmt.Sprintf("%+.3f [%+.3f, %+.3f]", m, lo, hi)
}

func (t Task) codes(kinds ...string) []string {
	var out []string
	for _, l := range t.Langs {
		for _, k := range kinds {
			if l.Kind == k {
				out = append(out, l.Code)
			}
		}
	}
	return out
}

func pm(m, s float64) string { return fmt.Sprintf("%.3f ± %.3f", m, s) }

// Markdown renders the generated section: tables and links to the plots in imgDir (relative to the report).
func (res *Results) Markdown(imgRel string) string {
	var b strings.Builder
	cfg := res.Config
	t := cfg.Task
	all := make([]string, 0, len(t.Langs))
	for _, l := range t.Langs {
		all = append(all, l.Code)
	}
	fmt.Fprintf(&b, "%s\n\n", BeginMarker)
	fmt.Fprintf(&b, "Seeds %v, %d steps × batch %d per arm, Adam lr %g, β %g, LoRA r=%d on %s (gpu/model %s: %d layers, width %d, %d heads, MLP %d); sketch countsketch k=%d; wall time %s.\n\n",
		cfg.Seeds, cfg.Steps, cfg.BatchSize, cfg.LR, cfg.Beta, cfg.LoRA.Rank, strings.Join(cfg.LoRA.Targets, ","), cfg.Model.ModelType, cfg.Model.NumHiddenLayers, cfg.Model.HiddenSize, cfg.Model.NumAttentionHeads, cfg.Model.IntermediateSize, cfg.SketchK, res.Elapsed.Round(1e9))

	b.WriteString("### Held-out preference accuracy (shared rule), mean ± std over seeds\n\n")
	b.WriteString("| arm | pairs | " + strings.Join(all, " | ") + " | seen clean (h,l) | conflict (c) | unseen (u) |\n")
	b.WriteString("|---|---|" + strings.Repeat("---|", len(all)+3) + "\n")
	groups := [][]string{t.codes("high", "low"), t.codes("conflict"), t.codes("unseen")}
	arms := armsRun(res.Runs)
	for _, arm := range arms {
		s := collect(res.Runs, arm, false)
		var n []float64
		for _, r := range res.Runs {
			if r.Arm == arm {
				n = append(n, float64(r.Train))
			}
		}
		nm, _ := meanStd(n)
		fmt.Fprintf(&b, "| %s | %.0f |", arm, nm)
		for _, l := range all {
			fmt.Fprintf(&b, " %s |", pm(s.mean[l], s.std[l]))
		}
		for _, g := range groups {
			if len(g) == 0 {
				b.WriteString(" – |")
				continue
			}
			m, sd := groupMean(res.Runs, arm, g)
			fmt.Fprintf(&b, " **%s** |", pm(m, sd))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n![accuracy per language and arm](%s/accuracy.svg)\n\n", imgRel)

	for _, ref := range []string{ArmAll, ArmRandom} {
		fmt.Fprintf(&b, "### Paired difference to %s (same seed: same base model, data and LoRA init), mean [95%% t-interval] over %d seeds\n\n", ref, len(cfg.Seeds))
		b.WriteString("Bold: the interval excludes 0.\n\n| arm | seen clean (h,l) | conflict (c) | unseen (u) |\n|---|---|---|---|\n")
		for _, arm := range arms {
			if arm == ref || arm == ArmAll {
				continue
			}
			fmt.Fprintf(&b, "| %s |", arm)
			for _, g := range groups {
				if len(g) == 0 {
					b.WriteString(" – |")
					continue
				}
				d := pairedDiffs(res.Runs, arm, ref, g)
				cell := ciCell(d)
				if len(d) > 1 && len(d) != len(cfg.Seeds) {
					cell += fmt.Sprintf(" (%d seeds)", len(d)) // a merged or partial run
				}
				fmt.Fprintf(&b, " %s |", cell)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

	if cf := t.codes("conflict"); len(cf) > 0 {
		b.WriteString("### Conflict languages on their own preference\n\n| arm | " + strings.Join(cf, " | ") + " |\n|---|" + strings.Repeat("---|", len(cf)) + "\n")
		for _, arm := range arms {
			s := collect(res.Runs, arm, true)
			fmt.Fprintf(&b, "| %s |", arm)
			for _, l := range cf {
				fmt.Fprintf(&b, " %s |", pm(s.mean[l], s.std[l]))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

	b.WriteString("### What each arm trained on (mean over seeds)\n\nPairs kept per language, and in brackets the share whose judged label agrees with the shared rule.\n\n")
	seen := t.codes("high", "low", "conflict")
	b.WriteString("| arm | " + strings.Join(seen, " | ") + " |\n|---|" + strings.Repeat("---|", len(seen)) + "\n")
	for _, arm := range arms {
		fmt.Fprintf(&b, "| %s |", arm)
		for _, l := range seen {
			var kept, corr, n float64
			for _, r := range res.Runs {
				if r.Arm == arm {
					kept += float64(r.KeptBy[l])
					corr += float64(r.Correct[l])
					n++
				}
			}
			if kept == 0 {
				b.WriteString(" 0 |")
				continue
			}
			fmt.Fprintf(&b, " %.0f (%.0f%%) |", kept/n, 100*corr/kept)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	if len(res.Diags) > 0 {
		b.WriteString("### Selection diagnostics (no training; mean over seeds)\n\nPairs kept per language (share with the correct label) and the mean score cos(v_i, g*) per language.\n\n")
		b.WriteString("| selection | " + strings.Join(seen, " | ") + " |\n|---|" + strings.Repeat("---|", len(seen)) + "\n")
		for _, name := range []string{DiagSketch, DiagExact, DiagNoSurgery, DiagLeaveOut} {
			fmt.Fprintf(&b, "| %s |", name)
			for _, l := range seen {
				var kept, corr, score, n float64
				for _, d := range res.Diags {
					if d.Name == name {
						kept += float64(d.KeptBy[l])
						corr += float64(d.Correct[l])
						score += d.MeanScore[l]
						n++
					}
				}
				if n == 0 {
					b.WriteString(" – |")
					continue
				}
				share := 0.0
				if kept > 0 {
					share = 100 * corr / kept
				}
				fmt.Fprintf(&b, " %.0f (%.0f%%), s̄=%+.3f |", kept/n, share, score/n)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

	res.gateTables(&b, seen)

	if len(res.Alone) > 0 {
		b.WriteString("### Interference check: each seen language trained alone vs jointly (all pairs)\n\nSame budget; accuracy on the language itself (shared rule; own preference for conflict languages).\n\n")
		b.WriteString("| language | kind | alone | joint | joint − alone |\n|---|---|---|---|---|\n")
		for _, l := range t.Langs {
			if l.Pairs == 0 {
				continue
			}
			own := l.Conflict
			var alone, joint []float64
			for _, r := range res.Alone {
				if r.Arm == ArmAlonePref+" "+l.Code {
					alone = append(alone, pick(own, r.OwnAcc, r.Acc)[l.Code])
				}
			}
			for _, r := range res.Runs {
				if r.Arm == ArmAll {
					joint = append(joint, pick(own, r.OwnAcc, r.Acc)[l.Code])
				}
			}
			am, as := meanStd(alone)
			jm, js := meanStd(joint)
			kind := l.Kind
			if own {
				kind += " (own pref.)"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %+.3f |\n", l.Code, kind, pm(am, as), pm(jm, js), jm-am)
		}
		b.WriteString("\n")
	}

	if len(res.Fidelity) > 0 {
		fmt.Fprintf(&b, "### Sketch fidelity: ConGrad (mean, positive) decisions on sketches vs exact gradients\n\n")
		fmt.Fprintf(&b, "Agreement over all pairs, over pairs with |exact score| ≥ %.2f, and the correlation of scores; mean over seeds. LoRA gradient dimension d = %d (%d non-zero at fresh LoRA).\n\n", FidelityMinScore, res.GradDim, res.GradNonZero)
		b.WriteString("| method | k | agree (all) | agree (|score| ≥ 0.05) | score corr. |\n|---|---|---|---|---|\n")
		type key struct {
			m string
			k int
		}
		agg := map[key][][3]float64{}
		var keys []key
		for _, f := range res.Fidelity {
			kk := key{f.Method, f.K}
			if _, ok := agg[kk]; !ok {
				keys = append(keys, kk)
			}
			agg[kk] = append(agg[kk], [3]float64{f.Agree, f.AgreeBig, f.ScoreCorr})
		}
		sort.SliceStable(keys, func(i, j int) bool {
			if keys[i].m != keys[j].m {
				return keys[i].m < keys[j].m
			}
			return keys[i].k < keys[j].k
		})
		for _, kk := range keys {
			var a, ab, c []float64
			for _, v := range agg[kk] {
				a, ab, c = append(a, v[0]), append(ab, v[1]), append(c, v[2])
			}
			am, as := meanStd(a)
			bm, bs := meanStd(ab)
			cm, _ := meanStd(c)
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %.4f |\n", kk.m, kk.k, pm(am, as), pm(bm, bs), cm)
		}
		fmt.Fprintf(&b, "\n![fidelity vs k](%s/fidelity.svg)\n\n", imgRel)
	}

	if len(res.Conflicts) > 0 {
		var proj []float64
		for _, c := range res.Conflicts {
			proj = append(proj, float64(c.Projections))
		}
		pmean, _ := meanStd(proj)
		c := res.Conflicts[0]
		fmt.Fprintf(&b, "PCGrad projections fired, mean over seeds: %.1f.\n\n", pmean)
		fmt.Fprintf(&b, "### Conflict map (seed %d): cosine of the per-language directions G_l (countsketch k=%d); PCGrad projections fired: %d\n\n", c.Seed, cfg.SketchK, c.Projections)
		writeCosineTable(&b, c.Langs, c.Cosine)
	}
	b.WriteString(EndMarker + "\n")
	return b.String()
}

func pick(own bool, a, b map[string]float64) map[string]float64 {
	if own {
		return a
	}
	return b
}

// Write puts the report into dir: EXPERIMENTS.md (replacing only the
// generated section of the task version if the file has its markers),
// img/accuracy.svg, img/fidelity.svg and img/results.json (task v2: the
// v2- prefixed files and the v2 markers, so both reports share docs/).
func (res *Results) Write(dir string) error {
	img := filepath.Join(dir, "img")
	if err := os.MkdirAll(img, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	pre := res.Config.Task.imgPrefix()
	if err := os.WriteFile(filepath.Join(img, pre+"accuracy.svg"), []byte(res.AccuracySVG()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if len(res.Fidelity) > 0 {
		if err := os.WriteFile(filepath.Join(img, pre+"fidelity.svg"), []byte(res.FidelitySVG()), 0o644); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	js, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return fmt.Errorf("report: json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(img, pre+"results.json"), js, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	path := filepath.Join(dir, "EXPERIMENTS.md")
	begin, end := res.Config.Task.markers()
	gen := res.Markdown("img")
	if res.Config.Task.V2() {
		gen = res.MarkdownV2("img")
	}
	old, err := os.ReadFile(path)
	var out string
	switch {
	case err == nil && strings.Contains(string(old), begin) && strings.Contains(string(old)[strings.Index(string(old), begin):], end):
		s := string(old)
		i := strings.Index(s, begin)
		j := i + strings.Index(s[i:], end) + len(end)
		out = s[:i] + strings.TrimSuffix(gen, "\n") + s[j:]
	case err == nil:
		out = strings.TrimRight(string(old), "\n") + "\n\n" + gen
	case os.IsNotExist(err):
		out = "# Experiments\n\n" + gen
	default:
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// gateTables renders the language gates, the noise fits and the decision
// audit of the issue-13 variants (nothing when the run has none).
func (res *Results) gateTables(b *strings.Builder, seen []string) {
	if len(res.Gates) > 0 {
		b.WriteString("### Language gates (no training): cos(G_l, reference) with its 95% bootstrap interval, mean over seeds, and how many seeds gated the language\n\n")
		b.WriteString("Leave-out: reference = sum of the other languages' G_j; anchor: reference = mean sketch of the trusted dev set. A language is gated when the whole interval is below 0.\n\n")
		b.WriteString("| gate | " + strings.Join(seen, " | ") + " |\n|---|" + strings.Repeat("---|", len(seen)) + "\n")
		for _, kind := range []string{"leave-out", "anchor"} {
			fmt.Fprintf(b, "| %s |", kind)
			for _, l := range seen {
				var c, lo, hi []float64
				gated := 0
				for _, g := range res.Gates {
					if g.Gate == kind && g.Lang == l {
						c, lo, hi = append(c, g.Cos), append(lo, g.Lo), append(hi, g.Hi)
						if g.Gated {
							gated++
						}
					}
				}
				if len(c) == 0 {
					b.WriteString(" – |")
					continue
				}
				cm, _ := meanStd(c)
				lm, _ := meanStd(lo)
				hm, _ := meanStd(hi)
				fmt.Fprintf(b, " %+.2f [%+.2f, %+.2f], gated %d/%d |", cm, lm, hm, gated, len(c))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(res.Noise) > 0 {
		b.WriteString("### Noise-aware thresholds: per-language mirrored-mixture fit on the default scores, mean over seeds\n\n")
		b.WriteString("η̂: estimated share of flipped labels; τ_l: the threshold; kept: pairs above τ_l (share with the correct label).\n\n")
		b.WriteString("| | " + strings.Join(seen, " | ") + " |\n|---|" + strings.Repeat("---|", len(seen)) + "\n")
		rows := []struct {
			name string
			f    func(NoiseRow) float64
			fmt  string
		}{
			{"μ̂", func(r NoiseRow) float64 { return r.Mu }, "%+.3f"},
			{"σ̂", func(r NoiseRow) float64 { return r.Sigma }, "%.3f"},
			{"η̂", func(r NoiseRow) float64 { return r.Eta }, "%.2f"},
			{"τ_l", func(r NoiseRow) float64 { return r.Tau }, "%+.3f"},
		}
		for _, row := range rows {
			fmt.Fprintf(b, "| %s |", row.name)
			for _, l := range seen {
				var v []float64
				for _, r := range res.Noise {
					if r.Lang == l {
						v = append(v, row.f(r))
					}
				}
				if len(v) == 0 {
					b.WriteString(" – |")
					continue
				}
				m, _ := meanStd(v)
				fmt.Fprintf(b, " "+row.fmt+" |", m)
			}
			b.WriteString("\n")
		}
		// The true share of wrong labels, from the all-pairs run's data, to
		// set against η̂.
		b.WriteString("| true wrong share |")
		for _, l := range seen {
			var kept, corr float64
			for _, r := range res.Runs {
				if r.Arm == ArmAll {
					kept += float64(r.KeptBy[l])
					corr += float64(r.Correct[l])
				}
			}
			if kept == 0 {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(b, " %.2f |", 1-corr/kept)
		}
		b.WriteString("\n| kept |")
		for _, l := range seen {
			var kept, corr, n, fb float64
			for _, r := range res.Noise {
				if r.Lang == l {
					kept += float64(r.Kept)
					corr += float64(r.KeptCorrect)
					n++
					if r.Fallback != "" {
						fb++
					}
				}
			}
			if n == 0 || kept == 0 {
				b.WriteString(" 0 |")
				continue
			}
			note := ""
			if fb > 0 {
				note = fmt.Sprintf(", fallback %.0f/%.0f", fb, n)
			}
			fmt.Fprintf(b, " %.0f (%.0f%%)%s |", kept/n, 100*corr/kept, note)
		}
		b.WriteString("\n\n")
	}
	if len(res.Audit) > 0 {
		b.WriteString("### Decision audit of the gate variants: pairs by the rule that decided them (sum over seeds)\n\n| arm | reason | pairs |\n|---|---|---|\n")
		for _, arm := range Arms {
			m := res.Audit[arm]
			reasons := make([]string, 0, len(m))
			for why := range m {
				reasons = append(reasons, why)
			}
			sort.Strings(reasons)
			for _, why := range reasons {
				fmt.Fprintf(b, "| %s | %s | %d |\n", arm, why, m[why])
			}
		}
		b.WriteString("\n")
	}
}

// writeCosineTable writes the per-language cosine matrix as a Markdown table.
func writeCosineTable(b *strings.Builder, langs []string, cos [][]float64) {
	b.WriteString("| | " + strings.Join(langs, " | ") + " |\n|---|" + strings.Repeat("---|", len(langs)) + "\n")
	for i, l := range langs {
		fmt.Fprintf(b, "| %s |", l)
		for j := range langs {
			fmt.Fprintf(b, " %+.2f |", cos[i][j])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}
