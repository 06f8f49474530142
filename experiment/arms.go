package experiment

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/vec"
)

// Baselines at ConGrad's keep ratio and the issue-13 variants (congrad/gate).
const (
	ArmMargin   = "judge margin (ConGrad's ratio)"
	ArmBalanced = "per-language balanced (ConGrad's ratio)"
	ArmLoss     = "small loss after warm-up (ConGrad's ratio)"
	ArmOwnMean  = "own-language mean, no PCGrad (ConGrad's ratio)"
	ArmLESS     = "LESS-style dev cosine (ConGrad's ratio)"
	ArmNoise    = "ConGrad noise-aware τ_l"
	ArmGate     = "ConGrad leave-out gate"
	ArmGroup    = "ConGrad group scores"
	ArmAnchor   = "ConGrad anchor gate (dev)"
	ArmLOO      = "ConGrad leave-out scores, no gate"
	ArmGateGrp  = "ConGrad leave-out gate + group scores"
)

// ArmKeys are the short names of the arms for --arms.
var ArmKeys = map[string]string{
	"all": ArmAll, "random": ArmRandom, "margin": ArmMargin, "balanced": ArmBalanced, "loss": ArmLoss,
	"ownmean": ArmOwnMean, "less": ArmLESS, "congrad": ArmCongrad, "ema": ArmCongrEMA, "top": ArmCongrTop,
	"noise": ArmNoise, "gate": ArmGate, "group": ArmGroup, "anchor": ArmAnchor, "oracle": ArmOracle,
	"loo": ArmLOO, "gategroup": ArmGateGrp,
}

// trainedArms is cfg.Arms resolved to arm names in table order (all arms
// when empty); the loss baseline brings in the all-pairs run, its warm-up.
func trainedArms(cfg Config) ([]string, error) {
	if len(cfg.Arms) == 0 {
		return Arms, nil
	}
	want := map[string]bool{}
	for _, k := range cfg.Arms {
		a, ok := ArmKeys[k]
		if !ok {
			return nil, fmt.Errorf("experiment: unknown arm %q", k)
		}
		want[a] = true
	}
	if want[ArmLoss] {
		want[ArmAll] = true
	}
	var out []string
	for _, a := range Arms {
		if want[a] {
			out = append(out, a)
		}
	}
	return out, nil
}

// GateRow is one language-level gate decision of one seed.
type GateRow struct {
	Seed          uint64
	Gate          string // "leave-out" or "anchor"
	Lang          string
	Cos, Lo, Hi   float64
	Gated         bool
	ConsensusLang int // languages (plus anchor) in the consensus after gating
	// Task v2: the round, and for rounds after 0 the arm whose trajectory
	// produced the data (round 0 is shared: Arm "").
	Round int    `json:",omitempty"`
	Arm   string `json:",omitempty"`
}

// NoiseRow is one language's noise fit (ArmNoise) of one seed.
type NoiseRow struct {
	Seed                 uint64
	Lang                 string
	Mu, Sigma, Eta, Tau  float64
	Fallback             string
	Kept, N, KeptCorrect int
	Round                int    `json:",omitempty"`
	Arm                  string `json:",omitempty"`
}

// topN returns the indices of the n largest scores (ties: lower index
// first), sorted ascending: the score-based baselines keep exactly
// ConGrad's count.
func topN(scores []float64, n int) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	idx = slices.Clone(idx[:min(n, len(idx))])
	slices.Sort(idx)
	return idx
}

// balancedSubset keeps n pairs spread as evenly as possible over the
// languages (water-filling: a language with fewer pairs than its share
// gives all of them and the rest is shared by the others), a seeded random
// choice within each language.
func balancedSubset(langs []string, n int, seed uint64) []int {
	by := map[string][]int{}
	var order []string
	for i, l := range langs {
		if _, ok := by[l]; !ok {
			order = append(order, l)
		}
		by[l] = append(by[l], i)
	}
	slices.Sort(order)
	quota := map[string]int{}
	left, open := min(n, len(langs)), slices.Clone(order)
	for left > 0 && len(open) > 0 {
		share := max(left/len(open), 1)
		var still []string
		for _, l := range open {
			take := min(share, len(by[l])-quota[l], left)
			quota[l] += take
			left -= take
			if quota[l] < len(by[l]) {
				still = append(still, l)
			}
		}
		open = still
	}
	var out []int
	for li, l := range order {
		rng := rand.New(rand.NewPCG(seed, uint64(li)+0x62616c)) // "bal"
		idx := slices.Clone(by[l])
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		out = append(out, idx[:quota[l]]...)
	}
	slices.Sort(out)
	return out
}

// cosines scores every vector against one target.
func cosines(vecs [][]float32, target []float32) ([]float64, error) {
	t, err := vec.NewTarget(target)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(vecs))
	for i, v := range vecs {
		if out[i], err = t.Cosine(v); err != nil {
			return nil, fmt.Errorf("pair %d: %w", i, err)
		}
	}
	return out, nil
}

// ownMeanScores scores each pair against its own language's mean G_l (no
// PCGrad, no other language): a per-language outlier score.
func ownMeanScores(vecs [][]float32, langs []string) ([]float64, error) {
	dirs, _, err := gate.Means(vecs, langs)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(vecs))
	for i, v := range vecs {
		c, err := vec.Cosine(v, dirs[langs[i]])
		if err != nil {
			return nil, fmt.Errorf("pair %d: %w", i, err)
		}
		out[i] = c
	}
	return out, nil
}

// keptFrom maps verdicts back to pair indices.
func keptFrom(vs []keep.Verdict, ids, langs []string) ([]int, map[string]int, error) {
	pos := make(map[string]int, len(ids))
	for i, id := range ids {
		pos[langs[i]+"\x00"+id] = i
	}
	reasons := map[string]int{}
	var out []int
	for _, v := range vs {
		i, ok := pos[v.Lang+"\x00"+v.PairID]
		if !ok {
			return nil, nil, fmt.Errorf("verdict for unknown pair %s/%s", v.Lang, v.PairID)
		}
		reasons[v.Reason]++
		if v.Kept {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return out, reasons, nil
}

func scored(ids, langs []string, scores []float64) []keep.Scored {
	out := make([]keep.Scored, len(ids))
	for i := range ids {
		out[i] = keep.Scored{PairID: ids[i], Lang: langs[i], Score: scores[i]}
	}
	return out
}

// variantSubsets runs the four gate variants on the sketches: noise-aware
// τ_l on the default scores, leave-out gate, group scores against g*, and
// the anchor gate with the dev-set mean. It returns the kept indices per
// arm, the reason counts per arm (the audit), and the gate and noise rows.
func variantSubsets(cfg Config, seed uint64, sk [][]float32, ids, langs []string, def Selection, anchor []float32, correct []bool) (map[string][]int, map[string]map[string]int, []GateRow, []NoiseRow, error) {
	subsets := map[string][]int{}
	audit := map[string]map[string]int{}
	var gates []GateRow
	var noise []NoiseRow
	positive := keep.Options{Rule: keep.Positive}

	// Noise-aware per-language thresholds on the default scores.
	vs, fits, err := gate.DecideNoiseAware(scored(ids, langs, def.Scores), gate.DefaultNoiseOptions())
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("noise-aware: %w", err)
	}
	if subsets[ArmNoise], audit[ArmNoise], err = keptFrom(vs, ids, langs); err != nil {
		return nil, nil, nil, nil, err
	}
	for _, l := range sortedLangs(fits) {
		f := fits[l]
		row := NoiseRow{Seed: seed, Lang: l, Mu: f.Mu, Sigma: f.Sigma, Eta: f.Eta, Tau: f.Tau, Fallback: f.Fallback}
		for i := range ids {
			if langs[i] == l {
				row.N++
				if def.Scores[i] > f.Tau {
					row.Kept++
					if correct[i] {
						row.KeptCorrect++
					}
				}
			}
		}
		noise = append(noise, row)
	}

	o := gate.DefaultGateOptions()
	o.Seed, o.Boot.Seed = seed, seed
	// Leave-own-language-out gate; open languages scored against g*_{-l}.
	g, err := gate.GateLeaveOut(sk, langs, o)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("leave-out gate: %w", err)
	}
	scores := make([]float64, len(sk))
	targets := map[string]*vec.Target{}
	for i, v := range sk {
		l := langs[i]
		if gated, _ := g.Gated(l); gated {
			scores[i] = math.Inf(-1) // never kept; Apply writes the gate's reason
			continue
		}
		t := targets[l]
		if t == nil {
			target := g.Consensus.Consensus
			if r, ok := g.LeaveOut[l]; ok {
				target = r.Consensus
			}
			if t, err = vec.NewTarget(target); err != nil {
				return nil, nil, nil, nil, fmt.Errorf("leave-out target %s: %w", l, err)
			}
			targets[l] = t
		}
		if scores[i], err = t.Cosine(v); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	if vs, err = keep.Decide(scored(ids, langs, scores), positive); err != nil {
		return nil, nil, nil, nil, err
	}
	if subsets[ArmGate], audit[ArmGate], err = keptFrom(gate.Apply(vs, g), ids, langs); err != nil {
		return nil, nil, nil, nil, err
	}
	groups, err := gate.Groups(langs, cfg.GroupSize, seed)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	// The same gate, open languages scored by groups against g*_{-l}.
	gscores := make([]float64, len(sk))
	for _, l := range sortedLangs(targets) {
		var idx []int
		for i := range sk {
			if langs[i] == l {
				idx = append(idx, i)
			}
		}
		sub, grp := make([][]float32, len(idx)), make([]int, len(idx))
		for j, i := range idx {
			sub[j], grp[j] = sk[i], groups[i]
		}
		target := g.Consensus.Consensus
		if r, ok := g.LeaveOut[l]; ok {
			target = r.Consensus
		}
		s, err := gate.GroupScores(sub, grp, target)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("gate+group %s: %w", l, err)
		}
		for j, i := range idx {
			gscores[i] = s[j]
		}
	}
	for i := range sk {
		if gated, _ := g.Gated(langs[i]); gated {
			gscores[i] = math.Inf(-1)
		}
	}
	if vs, err = keep.Decide(scored(ids, langs, gscores), positive); err != nil {
		return nil, nil, nil, nil, err
	}
	if subsets[ArmGateGrp], audit[ArmGateGrp], err = keptFrom(gate.Apply(gate.GroupReasons(vs), g), ids, langs); err != nil {
		return nil, nil, nil, nil, err
	}

	// Leave-out scores without any gate: every pair of l against g*_{-l}
	// over all other languages (isolates the target from the gate).
	dirs, _, err := gate.Means(sk, langs)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	loo, err := gate.LeaveOneOut(dirs, seed)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	lscores := make([]float64, len(sk))
	for _, l := range sortedLangs(loo) {
		t, err := vec.NewTarget(loo[l].Consensus)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("leave-out target %s: %w", l, err)
		}
		for i, v := range sk {
			if langs[i] == l {
				if lscores[i], err = t.Cosine(v); err != nil {
					return nil, nil, nil, nil, err
				}
			}
		}
	}
	if vs, err = keep.Decide(scored(ids, langs, lscores), positive); err != nil {
		return nil, nil, nil, nil, err
	}
	if subsets[ArmLOO], audit[ArmLOO], err = keptFrom(vs, ids, langs); err != nil {
		return nil, nil, nil, nil, err
	}
	for _, lg := range g.Langs {
		gates = append(gates, GateRow{Seed: seed, Gate: "leave-out", Lang: lg.Lang, Cos: lg.Cos.Value, Lo: lg.Cos.Lo, Hi: lg.Cos.Hi, Gated: lg.Gated, ConsensusLang: len(g.Consensus.Langs)})
	}

	// Group scores against the default consensus g*.
	gs, err := gate.GroupScores(sk, groups, def.PCGrad.Consensus)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("group scores: %w", err)
	}
	if vs, err = keep.Decide(scored(ids, langs, gs), positive); err != nil {
		return nil, nil, nil, nil, err
	}
	if subsets[ArmGroup], audit[ArmGroup], err = keptFrom(gate.GroupReasons(vs), ids, langs); err != nil {
		return nil, nil, nil, nil, err
	}

	// Anchor gate with the dev-set mean; scores against its consensus.
	ga, err := gate.GateAnchor(sk, langs, anchor, o)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("anchor gate: %w", err)
	}
	as, err := cosines(sk, ga.Consensus.Consensus)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("anchor scores: %w", err)
	}
	if vs, err = keep.Decide(scored(ids, langs, as), positive); err != nil {
		return nil, nil, nil, nil, err
	}
	if subsets[ArmAnchor], audit[ArmAnchor], err = keptFrom(gate.Apply(vs, ga), ids, langs); err != nil {
		return nil, nil, nil, nil, err
	}
	for _, lg := range ga.Langs {
		gates = append(gates, GateRow{Seed: seed, Gate: "anchor", Lang: lg.Lang, Cos: lg.Cos.Value, Lo: lg.Cos.Lo, Hi: lg.Cos.Hi, Gated: lg.Gated, ConsensusLang: len(ga.Consensus.Langs)})
	}
	return subsets, audit, gates, noise, nil
}

func sortedLangs[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
