package filter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"weak"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// The block path of select on files (issue 12): pairs and sketches both
// come as file splits, and nothing per pair crosses a stage boundary as an
// element of its own. What moves between stages are blocks, each holding
// the rows of one split (or one language, or one hash shard) in one
// element:
//
//   - PairKeysFiles / MetaBlocksFiles read the small columns of the pair
//     and sketch files and emit, per split, one block per hash shard of the
//     pair ids (joinShards shards) plus per-language row counts;
//   - ValidateBlocks groups the blocks by shard (a CoGroupByKey over
//     splits × shards elements, not over pairs) and decides, per id, what
//     Validate and Split decided per id before: excluded ids, dead sketch
//     rows, pair failures, duplicated pair ids, orphan failures, and one
//     block of reference log-probs per shard;
//   - ScoreFilesBlocks scores every admitted sketch of a split and emits one
//     block of (id, language, score) per language per split; RankBlocks
//     groups them by language and emits each language's decisions as one
//     block;
//   - SplitFiles reads the pair files twice more: the pair_id column, to
//     bind each row's decision, failure and reference log-probs (side
//     inputs held as one compact table per process, decisionTable: about
//     100 bytes per pair) into the split element as verdicts (~40 bytes per
//     pair), then, in a stage without side inputs, the whole pairs, emitting
//     the kept, dropped, decision and dead-letter rows straight to the
//     writers fused after it.
//
// So what Prism holds between stages grows with the number of splits and
// shards, plus the compact per-pair payload of the blocks (ids, scores),
// not with one bookkept element per pair.

// joinShards is the number of hash shards of the pair ids in
// ValidateBlocks: one worker validates about N/joinShards ids.
const joinShards = 16

// idShard is the hash shard of a pair id (FNV-1a, 32 bits).
func idShard(id string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % joinShards)
}

// PairKeyBlock is the (pair id, language) of some pairs of one split whose
// ids fall in one hash shard.
type PairKeyBlock struct{ IDs, Langs []string }

// MetaBlock is the Meta rows of some sketches of one split whose ids fall in
// one hash shard.
type MetaBlock struct{ Rows []Meta }

// RefsBlock is the reference log-probs of the valid sketches of one shard.
type RefsBlock struct{ Rows []Refs }

// ScoreBlock is the scores of the admitted sketches of one language in one
// split.
type ScoreBlock struct {
	Lang string
	Rows []keep.Scored
}

// DecisionBlock is decisions of one language (or, on the method path, of
// one bundle).
type DecisionBlock struct{ Rows []schemas.Decision }

// PairFiles lists the pair files of glob for SelectFiles-style reading
// (PCollection<lakeio.Split>), checking their columns when the pipeline
// starts.
func PairFiles(s beam.Scope, glob string) (beam.PCollection, error) {
	return lakeio.Splits(s.Scope("filter.PairFiles"), glob, reflect.TypeOf(schemas.Pair{}), lakeio.ReadOptions{})
}

// PairKeysFiles reads the pair_id and lang columns of pair file splits.
//
//	PCollection<lakeio.Split> -> (PCollection<KV<int, PairKeyBlock>>, PCollection<LangCount> (pair rows per language and split))
func PairKeysFiles(s beam.Scope, splits beam.PCollection) (keys, counts beam.PCollection) {
	s = s.Scope("filter.PairKeysFiles")
	mustType("filter.PairKeysFiles", splits, reflect.TypeOf(lakeio.Split{}))
	return beam.ParDo2(s, &pairKeySplitFn{}, splits)
}

type pairKeySplitFn struct{}

func (f *pairKeySplitFn) ProcessElement(ctx context.Context, sp lakeio.Split, emit func(int, PairKeyBlock), count func(LangCount)) error {
	blocks := make([]PairKeyBlock, joinShards)
	langs := map[string]int64{}
	err := lakeio.EachBatch(ctx, sp, []string{"pair_id", "lang"}, BatchRows*64, func(rec arrow.RecordBatch) error {
		ids, ok1 := column(rec, "pair_id").(stringCol)
		ls, ok2 := column(rec, "lang").(stringCol)
		if !ok1 || !ok2 {
			return fmt.Errorf("filter: %s: pair_id and lang must be string columns", sp.Path)
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			id, l := ids.Value(i), ls.Value(i)
			b := &blocks[idShard(id)]
			b.IDs, b.Langs = append(b.IDs, id), append(b.Langs, l)
			langs[l]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for sh, b := range blocks {
		if len(b.IDs) > 0 {
			emit(sh, b)
		}
	}
	emitCounts(langs, count)
	return nil
}

func emitCounts(m map[string]int64, count func(LangCount)) {
	for _, l := range sortedMapKeys(m) {
		count(LangCount{Lang: l, N: m[l]})
	}
}

func column(rec arrow.RecordBatch, name string) arrow.Array {
	if idx := rec.Schema().FieldIndices(name); len(idx) > 0 {
		return rec.Column(idx[0])
	}
	return nil
}

// MetaBlocksFiles reads the Meta columns (the values column is not read) of
// sketch file splits into per-shard blocks.
//
//	PCollection<lakeio.Split> -> (PCollection<KV<int, MetaBlock>>, PCollection<LangCount> (sketch rows per language and split))
func MetaBlocksFiles(s beam.Scope, splits beam.PCollection) (metas, counts beam.PCollection) {
	s = s.Scope("filter.MetaBlocksFiles")
	mustType("filter.MetaBlocksFiles", splits, reflect.TypeOf(lakeio.Split{}))
	return beam.ParDo2(s, &metaBlockSplitFn{}, splits)
}

type metaBlockSplitFn struct{}

func (f *metaBlockSplitFn) ProcessElement(ctx context.Context, sp lakeio.Split, emit func(int, MetaBlock), count func(LangCount)) error {
	blocks := make([]MetaBlock, joinShards)
	langs := map[string]int64{}
	err := eachMeta(ctx, sp, func(m Meta) {
		b := &blocks[idShard(m.PairID)]
		b.Rows = append(b.Rows, m)
		langs[m.Lang]++
	})
	if err != nil {
		return err
	}
	for sh, b := range blocks {
		if len(b.Rows) > 0 {
			emit(sh, b)
		}
	}
	emitCounts(langs, count)
	return nil
}

// ValidationFiles is what ValidateBlocks produces.
type ValidationFiles struct {
	Excluded     beam.PCollection // PCollection<string>, as Validation.Excluded
	DeadSketches beam.PCollection // PCollection<Failure>, as Validation.DeadSketches
	PairFailures beam.PCollection // PCollection<Failure>, as Validation.PairFailures
	Refs         beam.PCollection // PCollection<RefsBlock>: one block per shard
	// DupPairs names each pair id that several pairs share, with the
	// dead-letter reason of every such pair (PCollection<Failure>).
	DupPairs beam.PCollection
	// Orphans are the dead letters of upstream failures whose pair id no
	// pair carries (PCollection<schemas.DeadLetter>).
	Orphans beam.PCollection
}

// ValidateBlocks is Validate on blocks: the same decisions per pair id,
// plus those Split made per id (duplicated pair ids, failures without a
// pair), taken here because SplitFiles sees one pair at a time.
//
//	PCollection<KV<int, PairKeyBlock>>, PCollection<KV<int, MetaBlock>>, PCollection<Failure> (or invalid) -> ValidationFiles
func ValidateBlocks(s beam.Scope, pairKeys, metas, upstream beam.PCollection) ValidationFiles {
	s = s.Scope("filter.ValidateBlocks")
	if !upstream.IsValid() {
		upstream = beam.CreateList(s, []Failure{})
	}
	mustType("filter.ValidateBlocks", upstream, reflect.TypeOf(Failure{}))
	g := beam.CoGroupByKey(s, pairKeys, metas, beam.ParDo(s, shardFailure, upstream))
	outs := beam.ParDoN(s, &validateShardFn{}, g)
	// Every excluded id has at least one dead sketch row.
	return ValidationFiles{Excluded: beam.ParDo(s, failureID, outs[0]), DeadSketches: outs[0], PairFailures: outs[1],
		Refs: outs[2], DupPairs: outs[3], Orphans: outs[4]}
}

func shardFailure(f Failure) (int, Failure) { return idShard(f.PairID), f }
func failureID(f Failure) string            { return f.PairID }

type validateShardFn struct{}

func (f *validateShardFn) ProcessElement(ctx context.Context, _ int, pkIt func(*PairKeyBlock) bool, mIt func(*MetaBlock) bool,
	upIt func(*Failure) bool, deadSketch func(Failure), pairFail func(Failure),
	refsOut func(RefsBlock), dups func(Failure), orphan func(schemas.DeadLetter)) {
	type pairInfo struct {
		n    int
		lang string
	}
	pairs := map[string]pairInfo{}
	var pk PairKeyBlock
	for pkIt(&pk) {
		for i, id := range pk.IDs {
			p := pairs[id]
			if p.n == 0 {
				p.lang = pk.Langs[i]
			}
			p.n++
			pairs[id] = p
		}
	}
	metas := map[string][]Meta{}
	var mb MetaBlock
	for mIt(&mb) {
		for _, m := range mb.Rows {
			metas[m.PairID] = append(metas[m.PairID], m)
		}
	}
	up := map[string][]Failure{}
	var fl Failure
	for upIt(&fl) {
		up[fl.PairID] = append(up[fl.PairID], fl)
	}
	var refs RefsBlock
	for _, id := range sortedMapKeys(metas) {
		ms := metas[id]
		p := pairs[id]
		rejectAll := func(r string) {
			for _, m := range ms {
				deadSketch(Failure{PairID: id, Lang: m.Lang, Reason: r})
			}
		}
		// The cases of validateFn, in its order.
		switch {
		case id == "":
			rejectAll(reason(KindInvalid, "sketch without pair_id"))
		case p.n == 0:
			rejectAll(reason(KindOrphan, "no pair with this pair_id"))
		case len(ms) > 1:
			r := reason(KindDuplicate, "%d sketches share this pair_id", len(ms))
			rejectAll(r)
			if p.n == 1 {
				pairFail(Failure{PairID: id, Lang: p.lang, Reason: r})
			}
		case p.n > 1:
			rejectAll(reason(KindPairDead, "%d pairs share this pair_id", p.n))
		case len(up[id]) > 0:
			rejectAll(reason(KindPairDead, "the pair failed upstream"))
		case ms[0].Lang != p.lang:
			r := reason(KindLangMismatch, "sketch language %q differs from pair language %q", ms[0].Lang, p.lang)
			rejectAll(r)
			pairFail(Failure{PairID: id, Lang: p.lang, Reason: r})
		default:
			if m := ms[0]; !math.IsNaN(m.RefChosenLogp) {
				refs.Rows = append(refs.Rows, Refs{PairID: id, RefChosenLogp: m.RefChosenLogp, RefRejectedLogp: m.RefRejectedLogp})
			}
		}
	}
	if len(refs.Rows) > 0 {
		refsOut(refs)
	}
	// What splitFn decided per id without looking at a single pair.
	for _, id := range sortedMapKeys(pairs) {
		if n := pairs[id].n; n > 1 {
			dups(Failure{PairID: id, Reason: reason(KindDuplicatePair, "%d pairs share this pair_id", n)})
		}
	}
	for _, id := range sortedMapKeys(up) {
		if pairs[id].n > 0 {
			continue
		}
		for _, fl := range up[id] {
			count(ctx, OutOrphan, fl.Lang)
			orphan(schemas.DeadLetter{Stage: Stage, Source: id, Row: -1, Reason: reason(KindOrphan, "failure without pair: %s", fl.Reason)})
		}
	}
}

// ScoreFilesBlocks is ScoreFiles emitting one ScoreBlock per language per
// split instead of one keep.Scored per sketch.
//
//	PCollection<lakeio.Split>, PCollection<string>, singleton PCollection<aggregate.Consensus>
//	  -> (PCollection<ScoreBlock>, PCollection<Failure>)
func ScoreFilesBlocks(s beam.Scope, splits, excluded, consensus beam.PCollection, o FileOptions) (blocks, failed beam.PCollection) {
	s = s.Scope("filter.ScoreFilesBlocks")
	mustType("filter.ScoreFilesBlocks", splits, reflect.TypeOf(lakeio.Split{}))
	mustType("filter.ScoreFilesBlocks", consensus, reflect.TypeOf(aggregate.Consensus{}))
	return beam.ParDo2(s, &scoreBlockSplitFn{Files: o}, bindSplits(s, splits, excluded, consensus))
}

type scoreBlockSplitFn struct {
	Files FileOptions
}

func (f *scoreBlockSplitFn) ProcessElement(ctx context.Context, b BoundSplit, emit func(ScoreBlock), bad func(Failure)) error {
	byLang := map[string][]keep.Scored{}
	ok := func(x keep.Scored) { byLang[x.Lang] = append(byLang[x.Lang], x) }
	ex, cons := b.excludedOf(), beamiter.Of(b.Cons)
	var sc scorer
	err := eachSketch(ctx, b.Split, f.Files, func(sk schemas.Sketch) error {
		if ex[sk.PairID] || checkSketch(sk, f.Files.K) != "" {
			return nil
		}
		sc.score(sk, cons, ok, bad)
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range sortedMapKeys(byLang) {
		emit(ScoreBlock{Lang: l, Rows: byLang[l]})
	}
	return nil
}

// ScoreBlockCounts counts the rows of score blocks per language (one
// LangCount per block).
//
//	PCollection<ScoreBlock> -> PCollection<LangCount>
func ScoreBlockCounts(s beam.Scope, blocks beam.PCollection) beam.PCollection {
	return beam.ParDo(s.Scope("filter.ScoreBlockCounts"), scoreBlockCount, blocks)
}

func scoreBlockCount(b ScoreBlock) LangCount { return LangCount{Lang: b.Lang, N: int64(len(b.Rows))} }

// RankBlocks is Rank on score blocks: one language's blocks are grouped on
// one worker, ranked and decided as Rank does, and its decisions leave as
// one DecisionBlock.
//
//	PCollection<ScoreBlock> -> (PCollection<DecisionBlock>, PCollection<Stats>)
func RankBlocks(s beam.Scope, blocks beam.PCollection, opts Options) (decisions, stats beam.PCollection) {
	s = s.Scope("filter.RankBlocks")
	opts = rankOptions("filter.RankBlocks", opts)
	mustType("filter.RankBlocks", blocks, reflect.TypeOf(ScoreBlock{}))
	cutoff := beam.Create(s, keep.Cutoff{Keep: -1}) // unused marker for per-language rules
	if opts.Keep.Rule == keep.GlobalTop {
		cutoff = globalCutoffBlocks(s, blocks, opts.Keep.Rho)
	}
	byLang := beam.GroupByKey(s, beam.ParDo(s, keyScoreBlock, blocks))
	return beam.ParDo2(s, &rankBlockFn{R: *newRankFn(opts)}, byLang, beam.SideInput{Input: cutoff})
}

func keyScoreBlock(b ScoreBlock) (string, ScoreBlock) { return b.Lang, b }

type rankBlockFn struct{ R rankFn }

func (f *rankBlockFn) ProcessElement(lang string, blocks func(*ScoreBlock) bool, cutoffs func(*keep.Cutoff) bool,
	emit func(DecisionBlock), emitStats func(Stats)) error {
	var items []keep.Scored
	var b ScoreBlock
	for blocks(&b) {
		items = append(items, b.Rows...)
	}
	var out DecisionBlock
	out.Rows = make([]schemas.Decision, 0, len(items))
	if err := f.R.rank(lang, items, cutoffs, func(d schemas.Decision) { out.Rows = append(out.Rows, d) }, emitStats); err != nil {
		return err
	}
	emit(out)
	return nil
}

// globalCutoffBlocks is globalCutoff on score blocks.
func globalCutoffBlocks(s beam.Scope, blocks beam.PCollection, rho float64) beam.PCollection {
	s = s.Scope("filter.GlobalCutoff")
	hist := beam.Combine(s, &histBlockFn{}, blocks)
	inBin := beam.ParDo(s, &binBlockFn{B: binItemsFn{Rho: rho}}, blocks, beam.SideInput{Input: hist})
	bucket := beam.Combine(s, &bucketBlockFn{}, inBin)
	return beam.ParDo(s, &cutoffFn{Rho: rho}, hist, beam.SideInput{Input: bucket})
}

type histBlockFn struct{}

func (histBlockFn) CreateAccumulator() Hist { return Hist{Counts: make([]int64, cutoffBins)} }
func (histBlockFn) AddInput(h Hist, b ScoreBlock) Hist {
	for _, x := range b.Rows {
		h.Counts[cutoffBin(x.Score)]++
	}
	return h
}
func (histBlockFn) MergeAccumulators(a, b Hist) Hist { return histFn{}.MergeAccumulators(a, b) }
func (histBlockFn) ExtractOutput(h Hist) Hist        { return h }

type binBlockFn struct{ B binItemsFn }

// ProcessElement emits a block's rows that fall in the cutoff bin as one
// Bucket (none when there are none).
func (f *binBlockFn) ProcessElement(b ScoreBlock, hist func(*Hist) bool, emit func(Bucket)) {
	var out Bucket
	for _, x := range b.Rows {
		f.B.ProcessElement(x, hist, func(x keep.Scored) { out.Items = append(out.Items, x) })
	}
	if len(out.Items) > 0 {
		emit(out)
	}
}

type bucketBlockFn struct{}

func (bucketBlockFn) CreateAccumulator() Bucket { return Bucket{} }
func (bucketBlockFn) AddInput(a, b Bucket) Bucket {
	a.Items = append(a.Items, b.Items...)
	return a
}
func (bucketBlockFn) MergeAccumulators(a, b Bucket) Bucket { return bucketBlockFn{}.AddInput(a, b) }
func (bucketBlockFn) ExtractOutput(b Bucket) Bucket        { return b }

// DecisionBlocks batches per-element decisions (the method path's RankPlan
// output) into blocks, one per bundle, for SplitFiles.
//
//	PCollection<schemas.Decision> -> PCollection<DecisionBlock>
func DecisionBlocks(s beam.Scope, decisions beam.PCollection) beam.PCollection {
	s = s.Scope("filter.DecisionBlocks")
	mustType("filter.DecisionBlocks", decisions, reflect.TypeOf(schemas.Decision{}))
	return beam.ParDo(s, &decisionBatchFn{}, decisions)
}

type decisionBatchFn struct{ rows []schemas.Decision }

func (f *decisionBatchFn) StartBundle(_ context.Context, _ func(DecisionBlock)) { f.rows = nil }

func (f *decisionBatchFn) ProcessElement(d schemas.Decision, _ func(DecisionBlock)) {
	f.rows = append(f.rows, d)
}

func (f *decisionBatchFn) FinishBundle(_ context.Context, emit func(DecisionBlock)) {
	if len(f.rows) > 0 {
		emit(DecisionBlock{Rows: f.rows})
	}
	f.rows = nil
}

// SplitFiles is Split for pairs read from files: each pair split is read
// in one call and every pair is joined with its decision, failures,
// reference log-probs and duplicate mark. Each pair leaves in exactly one
// of Kept, Dropped or Dead with the reason Split would give it; failures
// without a pair are ValidateBlocks' Orphans.
//
// The join runs in two stages (see bind.go for why a long read must not
// have side inputs on Prism): bindPairsFn, with the decisions, failures and
// reference log-probs as side inputs (one compact table per process), reads
// only the pair_id column of a split and binds the verdict of each row into
// the split element; after a Reshuffle, splitBoundFn reads the whole pairs
// and emits the kept, dropped, decision and dead-letter rows to the writers
// fused after it, with no side inputs.
//
// failures holds ValidationFiles.DupPairs too: a duplicate_pair reason
// decides before any other failure of the id, as in Split.
//
//	PCollection<lakeio.Split> (pair files), PCollection<DecisionBlock>, PCollection<Failure>,
//	PCollection<RefsBlock> -> SplitResult
func SplitFiles(s beam.Scope, pairSplits, decisions, failures, refs beam.PCollection) SplitResult {
	s = s.Scope("filter.SplitFiles")
	mustType("filter.SplitFiles", pairSplits, reflect.TypeOf(lakeio.Split{}))
	mustType("filter.SplitFiles", decisions, reflect.TypeOf(DecisionBlock{}))
	mustType("filter.SplitFiles", failures, reflect.TypeOf(Failure{}))
	mustType("filter.SplitFiles", refs, reflect.TypeOf(RefsBlock{}))
	bound := beam.ParDo(s, &bindPairsFn{Table: newTableToken()}, pairSplits,
		beam.SideInput{Input: decisions}, beam.SideInput{Input: failures}, beam.SideInput{Input: refs})
	kept, dropped, decs, dead := beam.ParDo4(s, &splitBoundFn{}, beam.Reshuffle(s, bound))
	return SplitResult{Kept: kept, Dropped: dropped, Decisions: decs, Dead: dead}
}

// decisionTable is the side inputs of SplitFiles by pair id. Strings that
// repeat (languages, reasons, audit names) are stored once.
type decisionTable struct {
	idx   map[string]int32
	rows  []decRow
	strs  []string
	strIx map[string]uint32
	fails map[string]string // first failure reason (in reason order)
	dups  map[string]string
}

type decRow struct {
	score                                 float64
	refC, refR                            float64
	rank                                  int64
	lang, reason, scoreType, target, rule uint32
	gate                                  uint32
	n                                     uint16 // decisions for this id
	kept, hasRef                          bool
}

func (t *decisionTable) str(s string) uint32 {
	if i, ok := t.strIx[s]; ok {
		return i
	}
	i := uint32(len(t.strs))
	t.strs = append(t.strs, s)
	t.strIx[s] = i
	return i
}

func (t *decisionTable) load(decIt func(*DecisionBlock) bool, failIt func(*Failure) bool, refIt func(*RefsBlock) bool) {
	t.idx, t.strIx, t.fails, t.dups = map[string]int32{}, map[string]uint32{}, map[string]string{}, map[string]string{}
	var b DecisionBlock
	for decIt(&b) {
		for _, d := range b.Rows {
			if i, ok := t.idx[d.PairID]; ok {
				t.rows[i].n++
				continue
			}
			t.idx[d.PairID] = int32(len(t.rows))
			t.rows = append(t.rows, decRow{score: d.Score, rank: int64(d.Rank), kept: d.Kept, n: 1,
				lang: t.str(d.Lang), reason: t.str(d.Reason), scoreType: t.str(d.ScoreType), target: t.str(d.Target),
				rule: t.str(d.Rule), gate: t.str(d.Gate)})
		}
	}
	var fl Failure
	for failIt(&fl) {
		if strings.HasPrefix(fl.Reason, KindDuplicatePair+kindSep) {
			t.dups[fl.PairID] = fl.Reason
			continue
		}
		if r, ok := t.fails[fl.PairID]; !ok || fl.Reason < r {
			t.fails[fl.PairID] = fl.Reason
		}
	}
	var rb RefsBlock
	for refIt(&rb) {
		for _, r := range rb.Rows {
			if i, ok := t.idx[r.PairID]; ok {
				t.rows[i].refC, t.rows[i].refR, t.rows[i].hasRef = r.RefChosenLogp, r.RefRejectedLogp, true
			}
		}
	}
}

// bindPairsFn binds each pair split's verdicts (BoundPairs). The table is
// read-only once loaded and is shared by every instance of the DoFn in a
// process that carries the same Table token (one per SplitFiles call):
// Prism (and an SDK harness running bundles in parallel) builds one DoFn
// instance per concurrent bundle, and at 1M pairs five private copies of
// the table (~130 MB each) were most of select's peak memory (docs/perf/select.md).
//
// An instance holds the table only while a bundle runs. Between bundles
// the process keeps a weak reference, so a bundle that starts while
// another still uses the table (or before the next GC) shares it, and once
// the bind stage is over the table is garbage: the runner tears DoFns down
// only at the end of the job, and before this the table stayed live
// through the pair read and the writers after it (~130 MB at 1M pairs).
type bindPairsFn struct {
	Table string // process-wide key of the shared table
	t     *decisionTable
	user  bool // counted as a user of the Table entry
}

// sharedTables holds the decision tables by token, with their users.
var sharedTables = struct {
	sync.Mutex
	m map[string]*sharedTable
}{m: map[string]*sharedTable{}}

type sharedTable struct {
	mu    sync.Mutex // held while loading
	t     weak.Pointer[decisionTable]
	users int
}

// acquireTable returns the table of token, loading it with load unless a
// live one is still reachable. first counts the caller as a user of the
// entry (see releaseTable); the caller must keep the returned pointer for
// as long as it uses the table.
func acquireTable(token string, first bool, load func() *decisionTable) *decisionTable {
	sharedTables.Lock()
	st := sharedTables.m[token]
	if st == nil {
		st = &sharedTable{}
		sharedTables.m[token] = st
	}
	if first {
		st.users++
	}
	sharedTables.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if t := st.t.Value(); t != nil {
		return t
	}
	t := load()
	st.t = weak.Make(t)
	return t
}

// releaseTable drops one user of token's entry; the last one removes it.
func releaseTable(token string) {
	sharedTables.Lock()
	defer sharedTables.Unlock()
	if st := sharedTables.m[token]; st != nil {
		if st.users--; st.users <= 0 {
			delete(sharedTables.m, token)
		}
	}
}

// newTableToken is a key no other SplitFiles of this or another pipeline
// in the process uses.
func newTableToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("filter.SplitFiles: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// FinishBundle lets go of the table (see bindPairsFn). Beam requires the
// side inputs of ProcessElement in its signature; they are not read.
func (f *bindPairsFn) FinishBundle(func(*DecisionBlock) bool, func(*Failure) bool, func(*RefsBlock) bool) {
	f.t = nil
}

func (f *bindPairsFn) Teardown() {
	f.t = nil
	if f.user {
		f.user = false
		releaseTable(f.Table)
	}
}

func (f *bindPairsFn) ProcessElement(ctx context.Context, sp lakeio.Split,
	decIt func(*DecisionBlock) bool, failIt func(*Failure) bool, refIt func(*RefsBlock) bool) (BoundPairs, error) {
	if f.t == nil {
		load := func() *decisionTable {
			t := &decisionTable{}
			t.load(decIt, failIt, refIt)
			return t
		}
		f.t = acquireTable(f.Table, !f.user, load)
		f.user = true
	}
	t := f.t
	var b verdictWriter
	err := lakeio.EachBatch(ctx, sp, []string{"pair_id"}, BatchRows*64, func(rec arrow.RecordBatch) error {
		ids, ok := column(rec, "pair_id").(stringCol)
		if !ok {
			return fmt.Errorf("filter: %s: pair_id must be a string column", sp.Path)
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			id := ids.Value(i)
			// The cases of splitFn, in its order (a language mismatch is
			// checked by splitBoundFn, which reads the pair's language).
			if r, ok := t.dups[id]; ok {
				b.dead(id, r)
				continue
			}
			if r, ok := t.fails[id]; ok {
				b.dead(id, r)
				continue
			}
			j, ok := t.idx[id]
			switch {
			case !ok:
				b.dead(id, reason(KindNoSketch, "no sketch for this pair"))
			case t.rows[j].n > 1:
				b.dead(id, reason(KindDuplicate, "%d verdicts for one pair", t.rows[j].n))
			default:
				b.decided(id, t, t.rows[j])
			}
		}
		return nil
	})
	if err != nil {
		return BoundPairs{}, err
	}
	return BoundPairs{Split: sp, Strs: b.strs, Rows: b.buf, N: b.n}, nil
}

// splitBoundFn reads the pairs of a bound split and sends each where its
// verdict says.
type splitBoundFn struct{}

func (f *splitBoundFn) ProcessElement(ctx context.Context, b BoundPairs,
	kept func(schemas.Pair), dropped func(schemas.Dropped), decisions func(schemas.Decision), dead func(schemas.DeadLetter)) error {
	deadPair := func(p schemas.Pair, reason string) {
		count(ctx, OutDead, p.Lang)
		dead(schemas.DeadLetter{Stage: Stage, Source: p.PairID, Row: -1, Reason: reason, Payload: payload(p)})
	}
	vr := verdictReader{b: b}
	codec := schemas.PairCodec{}
	err := lakeio.EachBatch(ctx, b.Split, nil, BatchRows, func(rec arrow.RecordBatch) error {
		ps, err := codec.Decode(rec)
		if err != nil {
			return fmt.Errorf("filter: %s: %w", b.Split.Path, err)
		}
		for _, p := range ps {
			v, err := vr.next(p.PairID)
			if err != nil {
				return err
			}
			if v.dead != "" {
				deadPair(p, v.dead)
				continue
			}
			if v.lang != p.Lang {
				deadPair(p, reason(KindLangMismatch, "sketch language %q differs from pair language %q", v.lang, p.Lang))
				continue
			}
			if v.hasRef && !math.IsNaN(v.refC) {
				p.RefChosenLogp, p.RefRejectedLogp = v.refC, v.refR
			}
			d := schemas.Decision{PairID: p.PairID, Lang: v.lang, Score: v.score, Rank: int(v.rank), Kept: v.kept,
				Reason: v.reason, ScoreType: v.scoreType, Target: v.target, Rule: v.rule, Gate: v.gate}
			decisions(d)
			if d.Kept {
				count(ctx, OutKept, p.Lang)
				kept(p)
			} else {
				count(ctx, OutDropped, p.Lang)
				dropped(schemas.Dropped{Pair: p, Score: d.Score, Rank: d.Rank, Reason: d.Reason})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return vr.done()
}

// eachMeta calls fn with the Meta rows of a sketch split (the values
// column is not read).
func eachMeta(ctx context.Context, sp lakeio.Split, fn func(Meta)) error {
	return lakeio.EachBatch(ctx, sp, metaCols, BatchRows*64, func(rec arrow.RecordBatch) error {
		ids, ok1 := column(rec, "pair_id").(stringCol)
		langs, ok2 := column(rec, "lang").(stringCol)
		if !ok1 || !ok2 {
			return fmt.Errorf("filter: %s: pair_id and lang must be string columns", sp.Path)
		}
		refC, _ := column(rec, "ref_chosen_logps").(*array.Float64)
		refR, _ := column(rec, "ref_rejected_logps").(*array.Float64)
		ref := func(a *array.Float64, i int) float64 {
			if a == nil || a.IsNull(i) {
				return math.NaN()
			}
			return a.Value(i)
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			fn(Meta{PairID: ids.Value(i), Lang: langs.Value(i), RefChosenLogp: ref(refC, i), RefRejectedLogp: ref(refR, i)})
		}
		return nil
	})
}

func registerBlocks() {
	register.DoFn4x1[context.Context, lakeio.Split, func(int, PairKeyBlock), func(LangCount), error](&pairKeySplitFn{})
	register.DoFn4x1[context.Context, lakeio.Split, func(int, MetaBlock), func(LangCount), error](&metaBlockSplitFn{})
	register.Function1x2(shardFailure)
	register.Function1x1(failureID)
	// validateShardFn and splitBoundFn run once per shard or split, so
	// reflection's per-call cost does not matter and they are registered
	// by type. (This package's compile needs ~7 GB with or
	// without their generic register.DoFnNxM instantiations; measured,
	// cause not found yet.)
	beam.RegisterType(reflect.TypeOf((*validateShardFn)(nil)).Elem())
	register.DoFn5x2[context.Context, lakeio.Split, func(*DecisionBlock) bool, func(*Failure) bool, func(*RefsBlock) bool, BoundPairs, error](&bindPairsFn{})
	beam.RegisterType(reflect.TypeOf((*splitBoundFn)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf(BoundPairs{}))
	register.DoFn4x1[context.Context, BoundSplit, func(ScoreBlock), func(Failure), error](&scoreBlockSplitFn{})
	register.Function1x1(scoreBlockCount)
	register.Function1x2(keyScoreBlock)
	register.DoFn5x1[string, func(*ScoreBlock) bool, func(*keep.Cutoff) bool, func(DecisionBlock), func(Stats), error](&rankBlockFn{})
	register.Combiner2[Hist, ScoreBlock](&histBlockFn{})
	register.DoFn3x0[ScoreBlock, func(*Hist) bool, func(Bucket)](&binBlockFn{})
	register.Combiner2[Bucket, Bucket](&bucketBlockFn{})
	register.Emitter1[Bucket]()
	register.DoFn2x0[schemas.Decision, func(DecisionBlock)](&decisionBatchFn{})
	register.Emitter2[int, PairKeyBlock]()
	register.Emitter2[int, MetaBlock]()
	register.Emitter1[LangCount]()
	register.Emitter1[RefsBlock]()
	register.Emitter1[ScoreBlock]()
	register.Emitter1[DecisionBlock]()
	register.Iter1[*PairKeyBlock]()
	register.Iter1[*MetaBlock]()
	register.Iter1[*RefsBlock]()
	register.Iter1[*ScoreBlock]()
	register.Iter1[*DecisionBlock]()
	for _, t := range []any{PairKeyBlock{}, MetaBlock{}, RefsBlock{}, ScoreBlock{}, DecisionBlock{}, LangCount{}} {
		beam.RegisterType(reflect.TypeOf(t))
	}
}
