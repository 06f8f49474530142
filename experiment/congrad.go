package experiment

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/pcgrad"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/train"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// SelectOptions is one ConGrad variant: how per-language directions are
// accumulated and which keep rule applies. Everything else is the library default.
type SelectOptions struct {
	Accum string  // "mean" (default) or "ema"
	Gamma float64 // ema γ
	Keep  keep.Options
	Seed  uint64 // PCGrad permutation seed
	// NoSurgery replaces PCGrad by the plain sum g* = Σ_l G_l (a diagnostic,
	// not a ConGrad option): it isolates what the surgery changes.
	NoSurgery bool
}

// Selection is ConGrad's output on one set of per-pair vectors.
type Selection struct {
	Kept   []bool
	Scores []float64
	PCGrad pcgrad.Result
}

// selectPairs runs ConGrad (METHOD.md §4–§6) on per-pair vectors, which are
// either exact gradients or their sketches: per-language directions, PCGrad
// consensus g*, score = cos(v_i, g*), keep rule. steps[i] is pair i's
// gradient-stage mini-batch (used by ema).
func selectPairs(vecs [][]float32, ids, langs []string, steps []int64, o SelectOptions) (Selection, error) {
	if len(vecs) == 0 || len(vecs) != len(langs) || len(vecs) != len(ids) || len(vecs) != len(steps) {
		return Selection{}, fmt.Errorf("select: %d vectors, %d ids, %d langs, %d steps", len(vecs), len(ids), len(langs), len(steps))
	}
	k := len(vecs[0])
	dirs := map[string][]float32{}
	switch o.Accum {
	case "", "mean":
		means := map[string]*accum.Mean{}
		for i, v := range vecs {
			if means[langs[i]] == nil {
				means[langs[i]] = accum.NewMean(k)
			}
			if err := means[langs[i]].Add(v); err != nil {
				return Selection{}, fmt.Errorf("select: mean of %s: %w", langs[i], err)
			}
		}
		for l, m := range means {
			r, err := m.Result()
			if err != nil {
				return Selection{}, fmt.Errorf("select: mean of %s: %w", l, err)
			}
			dirs[l] = r
		}
	case "ema":
		type key struct {
			lang string
			step int64
		}
		batches := map[key]*accum.Mean{}
		for i, v := range vecs {
			kk := key{langs[i], steps[i]}
			if batches[kk] == nil {
				batches[kk] = accum.NewMean(k)
			}
			if err := batches[kk].Add(v); err != nil {
				return Selection{}, fmt.Errorf("select: batch mean: %w", err)
			}
		}
		emas := map[string]*accum.EMA{}
		for kk, m := range batches {
			mean, err := m.Result()
			if err != nil {
				return Selection{}, err
			}
			if emas[kk.lang] == nil {
				emas[kk.lang] = accum.NewEMA(k, o.Gamma)
			}
			if err := emas[kk.lang].AddBatch(kk.step, mean); err != nil {
				return Selection{}, fmt.Errorf("select: ema of %s: %w", kk.lang, err)
			}
		}
		for l, e := range emas {
			r, err := e.Result()
			if err != nil {
				return Selection{}, fmt.Errorf("select: ema of %s: %w", l, err)
			}
			dirs[l] = r
		}
	default:
		return Selection{}, fmt.Errorf("select: unknown accumulator %q (want mean or ema)", o.Accum)
	}
	res, err := pcgrad.Consensus(dirs, o.Seed)
	if err != nil {
		return Selection{}, fmt.Errorf("select: pcgrad: %w", err)
	}
	if o.NoSurgery {
		sum := make([]float32, k)
		for _, l := range res.Langs {
			for j, v := range dirs[l] {
				sum[j] += v
			}
		}
		res.Consensus = sum
	}
	target, err := vec.NewTarget(res.Consensus)
	if err != nil {
		return Selection{}, fmt.Errorf("select: consensus: %w", err)
	}
	scored := make([]keep.Scored, len(vecs))
	sel := Selection{Kept: make([]bool, len(vecs)), Scores: make([]float64, len(vecs)), PCGrad: res}
	for i, v := range vecs {
		c, err := target.Cosine(v)
		if err != nil {
			return Selection{}, fmt.Errorf("select: score of %s: %w", ids[i], err)
		}
		scored[i] = keep.Scored{PairID: ids[i], Lang: langs[i], Score: c}
		sel.Scores[i] = c
	}
	verdicts, err := keep.Decide(scored, o.Keep)
	if err != nil {
		return Selection{}, fmt.Errorf("select: keep: %w", err)
	}
	pos := make(map[string]int, len(ids))
	for i, id := range ids {
		pos[langs[i]+"\x00"+id] = i
	}
	for _, v := range verdicts {
		i, ok := pos[v.Lang+"\x00"+v.PairID]
		if !ok {
			return Selection{}, fmt.Errorf("select: verdict for unknown pair %s/%s", v.Lang, v.PairID)
		}
		sel.Kept[i] = v.Kept
	}
	return sel, nil
}

// gradSteps assigns pairs to gradient-stage mini-batches of size b in a
// seeded shuffled order, as a pipeline reading shuffled input would.
func gradSteps(n, b int, seed uint64) []int64 {
	rng := rand.New(rand.NewPCG(seed, 0x73746570)) // "step"
	steps := make([]int64, n)
	for pos, i := range rng.Perm(n) {
		steps[i] = int64(pos / b)
	}
	return steps
}

// sketchAll sketches every pair's gradient with spec. countsketch goes
// through sketch.Sketcher block by block, as the pipeline does. gaussian
// uses the same public contract (Spec.GaussianColumn) as one matrix product
// over the coordinates that are non-zero in some pair, because the exact
// per-pair Sketcher costs k·d long-accumulator additions per pair; a test
// checks the two paths agree.
func sketchAll(pg *train.PairGradients, spec sketch.Spec) ([][]float32, error) {
	out := make([][]float32, len(pg.Grads))
	if spec.Method != sketch.Gaussian {
		sk, err := sketch.New(spec)
		if err != nil {
			return nil, err
		}
		for i, g := range pg.Grads {
			sk.Reset()
			off := 0
			for p, name := range pg.Names {
				if err := sk.Add(name, 0, g[off:off+pg.Sizes[p]]); err != nil {
					return nil, fmt.Errorf("sketch pair %d param %s: %w", i, name, err)
				}
				off += pg.Sizes[p]
			}
			out[i] = sk.Sketch()
		}
		return out, nil
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	type coord struct {
		param string
		j     int
		flat  int
	}
	var nz []coord
	off := 0
	for p, name := range pg.Names {
		for j := 0; j < pg.Sizes[p]; j++ {
			if slices.ContainsFunc(pg.Grads, func(g []float32) bool { return g[off+j] != 0 }) {
				nz = append(nz, coord{name, j, off + j})
			}
		}
		off += pg.Sizes[p]
	}
	k, n, m := spec.K, len(pg.Grads), len(nz)
	S := blas32.General{Rows: k, Cols: m, Stride: m, Data: make([]float32, k*m)}
	col := make([]float32, k)
	for c, z := range nz {
		spec.GaussianColumn(z.param, z.j, col)
		for r := 0; r < k; r++ {
			S.Data[r*m+c] = col[r]
		}
	}
	G := blas32.General{Rows: m, Cols: n, Stride: n, Data: make([]float32, m*n)}
	for i, g := range pg.Grads {
		for c, z := range nz {
			G.Data[c*n+i] = g[z.flat]
		}
	}
	R := blas32.General{Rows: k, Cols: n, Stride: n, Data: make([]float32, k*n)}
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, S, G, 0, R)
	for i := range out {
		out[i] = make([]float32, k)
		for r := 0; r < k; r++ {
			out[i][r] = R.Data[r*n+i]
		}
	}
	return out, nil
}
