package experiment

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Markers of the task-v2 section of EXPERIMENTS.md (the v1 section keeps
// BeginMarker/EndMarker, so both can live in one file).
const (
	BeginMarkerV2 = "<!-- BEGIN GENERATED: experiment v2 (do not edit by hand) -->"
	EndMarkerV2   = "<!-- END GENERATED: experiment v2 -->"
)

// imgPrefix names the plot and results files of a task version, so a v2
// report never overwrites the v1 files in the same img/ folder.
func (t Task) imgPrefix() string {
	if t.V2() {
		return "v2-"
	}
	return ""
}

func (t Task) markers() (string, string) {
	if t.V2() {
		return BeginMarkerV2, EndMarkerV2
	}
	return BeginMarker, EndMarker
}

// groupOf is a language group's mean accuracy of one run (own: the
// conflict languages' own preference).
func groupOf(r RunResult, langs []string, own bool) float64 {
	m := r.Acc
	if own {
		m = r.OwnAcc
	}
	s := 0.0
	for _, l := range langs {
		s += m[l]
	}
	return s / float64(len(langs))
}

// pairedDiffsOwn is pairedDiffs on the own-preference accuracy.
func pairedDiffsOwn(runs []RunResult, arm, ref string, langs []string) []float64 {
	refBy := map[uint64]float64{}
	for _, r := range runs {
		if r.Arm == ref {
			refBy[r.Seed] = groupOf(r, langs, true)
		}
	}
	var d []float64
	for _, r := range runs {
		if v, ok := refBy[r.Seed]; ok && r.Arm == arm {
			d = append(d, groupOf(r, langs, true)-v)
		}
	}
	return d
}

func runSeeds(runs []RunResult) []uint64 {
	var out []uint64
	for _, r := range runs {
		if !slices.Contains(out, r.Seed) {
			out = append(out, r.Seed)
		}
	}
	slices.Sort(out)
	return out
}

// MarkdownV2 renders the generated section of a task-v2 run.
func (res *Results) MarkdownV2(imgRel string) string {
	var b strings.Builder
	cfg := res.Config
	t := cfg.Task
	begin, end := t.markers()
	all := make([]string, 0, len(t.Langs))
	for _, l := range t.Langs {
		all = append(all, l.Code)
	}
	seeds := runSeeds(res.Runs)
	arms := armsRun(res.Runs)
	clean, conf, unseen := t.codes("high", "low"), t.codes("conflict"), t.codes("unseen")
	cpu := 0.0
	for _, r := range res.Runs {
		cpu += r.CPU
	}
	for _, s := range res.SeedSetup {
		cpu += s.CPU
	}
	fmt.Fprintf(&b, "%s\n\n", begin)
	fmt.Fprintf(&b, "Task v2: seeds %v (%d); %d self-rewarding rounds × %d steps × batch %d per arm (%d steps in all), Adam lr %g, β %g, LoRA r=%d on %s (gpu/model %s: %d layers, width %d, %d heads, MLP %d, untied head: %v); %d candidates per prompt; sketch countsketch k=%d; %d held-out pairs per language; wall time %s and CPU %.0f s, summed over the merged runs.\n\n",
		seeds, len(seeds), t.Rounds, stepsPerRound(cfg), cfg.BatchSize, stepsPerRound(cfg)*t.Rounds, cfg.LR, cfg.Beta, cfg.LoRA.Rank, strings.Join(cfg.LoRA.Targets, ","),
		cfg.Model.ModelType, cfg.Model.NumHiddenLayers, cfg.Model.HiddenSize, cfg.Model.NumAttentionHeads, cfg.Model.IntermediateSize, !cfg.Model.Tied(),
		t.Candidates, cfg.SketchK, t.EvalPairs, res.Elapsed.Round(1e9), cpu)
	if len(seeds) < DefaultSeeds {
		fmt.Fprintf(&b, "**Preliminary: %d of %d seeds.** No default may be chosen from these tables.\n\n", len(seeds), DefaultSeeds)
	}

	b.WriteString("#### Final accuracy (model after the last round, implicit reward vs π_0, shared rule), mean ± std over seeds\n\n")
	b.WriteString("| arm | pairs (all rounds) | " + strings.Join(all, " | ") + " | seen clean (h,l) | conflict (shared rule) | conflict (own pref.) | unseen (u) |\n")
	b.WriteString("|---|---|" + strings.Repeat("---|", len(all)+4) + "\n")
	for _, arm := range arms {
		s := collect(res.Runs, arm, false)
		var n, gc, gs, go_, gu []float64
		for _, r := range res.Runs {
			if r.Arm == arm {
				n = append(n, float64(r.Train))
				gc = append(gc, groupOf(r, clean, false))
				gs = append(gs, groupOf(r, conf, false))
				go_ = append(go_, groupOf(r, conf, true))
				gu = append(gu, groupOf(r, unseen, false))
			}
		}
		nm, _ := meanStd(n)
		fmt.Fprintf(&b, "| %s | %.0f |", arm, nm)
		for _, l := range all {
			fmt.Fprintf(&b, " %s |", pm(s.mean[l], s.std[l]))
		}
		for _, g := range [][]float64{gc, gs, go_, gu} {
			m, sd := meanStd(g)
			fmt.Fprintf(&b, " **%s** |", pm(m, sd))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n![accuracy per language and arm](%s/%saccuracy.svg)\n\n", imgRel, t.imgPrefix())

	for _, ref := range []string{ArmAll, ArmRandom} {
		if !slices.Contains(arms, ref) {
			continue
		}
		fmt.Fprintf(&b, "#### Paired difference to %s (same seed: same base model, round-0 data, prompts and sampling noise), mean [95%% t-interval] over seeds\n\n", ref)
		b.WriteString("Bold: the interval excludes 0. A cell says how many seeds it rests on when that is not every seed.\n\n")
		b.WriteString("| arm | seen clean (h,l) | conflict (shared rule) | conflict (own pref.) | unseen (u) |\n|---|---|---|---|---|\n")
		for _, arm := range arms {
			if arm == ref || arm == ArmAll {
				continue
			}
			fmt.Fprintf(&b, "| %s |", arm)
			for gi, d := range [][]float64{pairedDiffs(res.Runs, arm, ref, clean), pairedDiffs(res.Runs, arm, ref, conf),
				pairedDiffsOwn(res.Runs, arm, ref, conf), pairedDiffs(res.Runs, arm, ref, unseen)} {
				_ = gi
				cell := ciCell(d)
				if len(d) > 1 && len(d) != len(seeds) {
					cell += fmt.Sprintf(" (%d seeds)", len(d))
				}
				fmt.Fprintf(&b, " %s |", cell)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

	// Accuracy by round.
	fmt.Fprintf(&b, "#### Accuracy after each round (first %d held-out pairs per language; the last round on all %d), mean over seeds: seen clean / unseen\n\n", min(EvalRoundPairs, t.EvalPairs), t.EvalPairs)
	b.WriteString("| arm |")
	for r := 0; r < t.Rounds; r++ {
		fmt.Fprintf(&b, " after round %d |", r)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", t.Rounds) + "\n")
	for _, arm := range arms {
		fmt.Fprintf(&b, "| %s |", arm)
		for r := 0; r < t.Rounds; r++ {
			var c, u []float64
			for _, run := range res.Runs {
				if run.Arm == arm && r < len(run.Rounds) {
					rr := RunResult{Acc: run.Rounds[r].Acc}
					c = append(c, groupOf(rr, clean, false))
					u = append(u, groupOf(rr, unseen, false))
				}
			}
			cm, _ := meanStd(c)
			um, _ := meanStd(u)
			fmt.Fprintf(&b, " %.3f / %.3f |", cm, um)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	seen := t.codes("high", "low", "conflict")
	// Judge quality per round (the all-pairs arm's trajectory).
	if slices.Contains(arms, ArmAll) {
		b.WriteString("#### The judge by round (all-pairs trajectory; round 0: synthetic Bradley–Terry judge, later rounds: the policy's implicit reward), mean over seeds\n\n")
		b.WriteString("Share of pairs whose label agrees with the shared rule (ties, equal shared quality, count as not agreeing; their share in brackets).\n\n")
		b.WriteString("| round | " + strings.Join(seen, " | ") + " |\n|---|" + strings.Repeat("---|", len(seen)) + "\n")
		for r := 0; r < t.Rounds; r++ {
			fmt.Fprintf(&b, "| %d |", r)
			for _, l := range seen {
				var n, c, tie float64
				for _, run := range res.Runs {
					if run.Arm == ArmAll && r < len(run.Rounds) {
						n += float64(run.Rounds[r].PairsBy[l])
						c += float64(run.Rounds[r].PairsCorrect[l])
						tie += float64(run.Rounds[r].PairsTie[l])
					}
				}
				if n == 0 {
					b.WriteString(" – |")
					continue
				}
				fmt.Fprintf(&b, " %.2f (%.2f) |", c/n, tie/n)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

	b.WriteString("#### What each arm trained on (sum over rounds, mean over seeds)\n\nPairs kept per language, and in brackets the share whose label agrees with the shared rule; for conflict languages also the share that agrees with their own (biased) rule.\n\n")
	b.WriteString("| arm | " + strings.Join(seen, " | ") + " |\n|---|" + strings.Repeat("---|", len(seen)) + "\n")
	for _, arm := range arms {
		fmt.Fprintf(&b, "| %s |", arm)
		for _, l := range seen {
			var kept, corr, own, n float64
			for _, r := range res.Runs {
				if r.Arm == arm {
					n++
					for _, st := range r.Rounds {
						kept += float64(st.KeptBy[l])
						corr += float64(st.Correct[l])
						own += float64(st.OwnCorrect[l])
					}
				}
			}
			if kept == 0 {
				b.WriteString(" 0 |")
				continue
			}
			if slices.Contains(conf, l) {
				fmt.Fprintf(&b, " %.0f (%.0f%%; own %.0f%%) |", kept/n, 100*corr/kept, 100*own/kept)
				continue
			}
			fmt.Fprintf(&b, " %.0f (%.0f%%) |", kept/n, 100*corr/kept)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	if len(res.Gates) > 0 {
		b.WriteString("#### Language gates by round: how many seeds closed each language\n\n")
		b.WriteString("Round 0 is shared by every arm; later rounds are the gate arm's own trajectory (leave-out: ConGrad leave-out gate; anchor: ConGrad anchor gate). In brackets the mean cos(G_l, reference).\n\n")
		b.WriteString("| gate | round | " + strings.Join(seen, " | ") + " |\n|---|---|" + strings.Repeat("---|", len(seen)) + "\n")
		for _, kind := range []string{"leave-out", "anchor"} {
			for r := 0; r < t.Rounds; r++ {
				fmt.Fprintf(&b, "| %s | %d |", kind, r)
				for _, l := range seen {
					var c []float64
					gated := 0
					for _, g := range res.Gates {
						if g.Gate == kind && g.Lang == l && g.Round == r {
							c = append(c, g.Cos)
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
					fmt.Fprintf(&b, " %d/%d (%+.2f) |", gated, len(c), cm)
				}
				b.WriteString("\n")
			}
		}
		b.WriteString("\n")
	}
	r0 := *res
	r0.Gates = nil
	r0.Noise = nil
	for _, n := range res.Noise {
		if n.Round == 0 && n.Arm == "" {
			r0.Noise = append(r0.Noise, n)
		}
	}
	if len(r0.Noise) > 0 {
		b.WriteString("Noise-aware fits below are round 0 (shared data); the true wrong share is round 0's.\n\n")
	}
	r0.gateTables(&b, seen)

	// Cost per (seed, arm).
	b.WriteString("#### Cost per (seed, arm) on this machine, median over seeds\n\n")
	b.WriteString("Wall and CPU seconds of one arm's trajectory (generation, judging, gradients where the rule needs them, training, evaluation), beyond the seed's shared setup (base model, held-out sets, round-0 data, gradients and every arm's round-0 selection).\n\n")
	b.WriteString("| arm | wall s | CPU s |\n|---|---|---|\n")
	median := func(x []float64) float64 {
		if len(x) == 0 {
			return 0
		}
		x = slices.Clone(x)
		slices.Sort(x)
		if len(x)%2 == 1 {
			return x[len(x)/2]
		}
		return (x[len(x)/2-1] + x[len(x)/2]) / 2
	}
	for _, arm := range arms {
		var w, c []float64
		for _, r := range res.Runs {
			if r.Arm == arm {
				w, c = append(w, r.Wall), append(c, r.CPU)
			}
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f |\n", arm, median(w), median(c))
	}
	var sw, sc []float64
	for _, s := range res.SeedSetup {
		sw, sc = append(sw, s.Wall), append(sc, s.CPU)
	}
	fmt.Fprintf(&b, "| (seed setup) | %.1f | %.1f |\n\n", median(sw), median(sc))

	if len(res.Conflicts) > 0 {
		c := res.Conflicts[0]
		fmt.Fprintf(&b, "#### Conflict map (seed %d, round 0): cosine of the per-language directions G_l; PCGrad projections fired: %d\n\n", c.Seed, c.Projections)
		writeCosineTable(&b, c.Langs, c.Cosine)
	}
	b.WriteString(end + "\n")
	return b.String()
}

// MergeResults combines the results.json of several runs (chunks of seeds,
// or extra arms): every (arm, seed) run once (the first file that has it;
// runs are deterministic, so a repeat is the same run), seed-level rows
// from the first file that ran the seed, arm-level gate and noise rows with
// their run. The files must share the task and training settings.
func MergeResults(paths []string) (*Results, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("merge: no results files")
	}
	var out *Results
	var key string
	haveRun := map[string]bool{}
	haveSeed := map[uint64]bool{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		var r Results
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("merge %s: %w", p, err)
		}
		k := settingsKey(r.Config)
		if out == nil {
			out = &Results{Config: r.Config, GradDim: r.GradDim, GradNonZero: r.GradNonZero, Audit: map[string]map[string]int{}}
			out.Config.Seeds, out.Config.Arms = nil, nil
			key = k
		} else if k != key {
			return nil, fmt.Errorf("merge: %s was run with other task or training settings than %s", p, paths[0])
		}
		out.Elapsed += r.Elapsed
		fileSeeds := map[uint64]bool{}
		for _, s := range r.Config.Seeds {
			if !haveSeed[s] {
				fileSeeds[s] = true
			}
		}
		taken := map[string]bool{}
		for _, run := range r.Runs {
			rk := fmt.Sprintf("%s\x00%d", run.Arm, run.Seed)
			if haveRun[rk] {
				continue
			}
			haveRun[rk], taken[rk] = true, true
			out.Runs = append(out.Runs, run)
		}
		armRow := func(arm string, seed uint64) bool {
			if arm == "" {
				return fileSeeds[seed]
			}
			return taken[fmt.Sprintf("%s\x00%d", arm, seed)]
		}
		for _, g := range r.Gates {
			if armRow(g.Arm, g.Seed) {
				out.Gates = append(out.Gates, g)
			}
		}
		for _, n := range r.Noise {
			if armRow(n.Arm, n.Seed) {
				out.Noise = append(out.Noise, n)
			}
		}
		for _, d := range r.Diags {
			if fileSeeds[d.Seed] {
				out.Diags = append(out.Diags, d)
			}
		}
		for _, c := range r.Conflicts {
			if fileSeeds[c.Seed] {
				out.Conflicts = append(out.Conflicts, c)
			}
		}
		for _, f := range r.Fidelity {
			if fileSeeds[f.Seed] {
				out.Fidelity = append(out.Fidelity, f)
			}
		}
		for _, a := range r.Alone {
			if fileSeeds[a.Seed] {
				out.Alone = append(out.Alone, a)
			}
		}
		for _, s := range r.SeedSetup {
			if fileSeeds[s.Seed] {
				out.SeedSetup = append(out.SeedSetup, s)
			}
		}
		if !r.Config.Task.V2() { // v1 audits are per run file; summed as they are
			for arm, m := range r.Audit {
				if out.Audit[arm] == nil {
					out.Audit[arm] = map[string]int{}
				}
				for why, c := range m {
					out.Audit[arm][why] += c
				}
			}
		}
		for s := range fileSeeds {
			haveSeed[s] = true
		}
	}
	if out.Config.Task.V2() { // recomputed from the runs, so nothing is counted twice
		for _, run := range out.Runs {
			for _, st := range run.Rounds {
				for why, c := range st.Reasons {
					if out.Audit[run.Arm] == nil {
						out.Audit[run.Arm] = map[string]int{}
					}
					out.Audit[run.Arm][why] += c
				}
			}
		}
	}
	out.Config.Seeds = runSeeds(out.Runs)
	for _, r := range out.Runs {
		for k, a := range ArmKeys {
			if a == r.Arm && !slices.Contains(out.Config.Arms, k) {
				out.Config.Arms = append(out.Config.Arms, k)
			}
		}
	}
	sort.Strings(out.Config.Arms)
	sort.SliceStable(out.Runs, func(i, j int) bool { return out.Runs[i].Seed < out.Runs[j].Seed })
	return out, nil
}

// settingsKey is the part of a config that must agree between merged runs.
func settingsKey(c Config) string {
	c.Seeds, c.Arms, c.FidelityKs, c.Alone = nil, nil, nil, false
	js, _ := json.Marshal(c)
	return string(js)
}

// expandPaths splits a comma-separated list of files and globs.
func expandPaths(spec string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%q: no such file", p)
		}
		out = append(out, m...)
	}
	return out, nil
}
