package filter

import (
	"context"
	"fmt"
	"iter"
	"math"
	"reflect"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/internal/sideinput"
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
//     ranks each language in buckets of contiguous score ranges
//     (rankdist.go) and emits the decisions in blocks of at most
//     decisionBlockRows;
//   - SplitFiles joins each pair with its verdict in two shuffles: by id
//     shard (the pair ids of PairKeysFiles meet that shard's decisions,
//     failures and reference log-probs, and each id's verdict, ~40 bytes,
//     goes to its split), then by split (the split's pieces, one per shard,
//     put back in file order while the whole pairs are read once more),
//     emitting the kept, dropped, decision and dead-letter rows straight to
//     the writers fused after it.
//
// So what Prism holds between stages grows with the number of splits and
// shards, plus the compact per-pair payload of the blocks (ids, scores),
// not with one bookkept element per pair; and no bundle holds per-pair
// state for more than one id shard (about N/joinShards ids), one split, or
// one rank bucket (about Options.RankBucketRows scores; the noise-aware
// fit: one language's scores), never all N.

// joinShards is the number of hash shards of the pair ids in
// ValidateBlocks and SplitFiles: one worker validates and binds about
// N/joinShards ids at a time (~130 bytes each while binding: at 100M pairs
// ~50 MB). More shards cost nothing measurable at 100k pairs on Prism
// (docs/perf/select.md); each split emits at most joinShards blocks.
const joinShards = 256

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
// ids fall in one hash shard, in file order, with the split's key
// (splitKey).
type PairKeyBlock struct {
	Split      string
	IDs, Langs []string
}

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
	key := splitKey(sp)
	for i := range blocks {
		blocks[i].Split = key
	}
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

// RankBlocks is Rank on score blocks, without gathering a language on one
// worker: the language's best-first order is cut into buckets of about
// opts.RankBucketRows rows of contiguous score ranges, each ranked on its
// own (rankdist.go), with the verdicts and Stats of ranking the whole
// language at once. Decisions leave in DecisionBlocks of at most
// decisionBlockRows rows (so no element grows with N: runners limit or
// slow down on very large elements).
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
	return rankBuckets(s, blocks, cutoff, beam.PCollection{}, opts)
}

// rankBuckets is RankBlocks with global-top's cutoff given, and under plan
// when it is valid (RankPlan).
func rankBuckets(s beam.Scope, blocks, cutoff, plan beam.PCollection, opts Options) (decisions, stats beam.PCollection) {
	rows := opts.RankBucketRows
	if rows == 0 {
		rows = DefaultRankBucketRows
	}
	if rows < 1 {
		panic(fmt.Sprintf("filter: RankBucketRows %d must be >= 1 (0: the default)", rows))
	}
	r := newRankFn(opts)
	fits := beam.Create(s, LangFit{}) // unused marker for the other rules
	byLang := beam.ParDo(s, keyScoreBlock, blocks)
	if opts.Keep.Rule == NoiseAware {
		if _, err := gate.FitNoise(nil, r.Noise); err != nil {
			panic(fmt.Sprintf("filter: %v", err))
		}
		fits = beam.ParDo(s, langFit, beam.CombinePerKey(s, &noiseScoresFn{Noise: r.Noise}, byLang))
	}
	hasPlan := plan.IsValid()
	if !hasPlan {
		plan = beam.Create(s, Plan{}) // unused marker
	}
	splitters := beam.CombinePerKey(s, &splittersFn{BucketRows: rows}, byLang)
	parts, counts := beam.ParDo2(s, &assignFn{}, blocks, sideinput.Read(s, splitters))
	counts = beam.CombinePerKey(s, addBucketCounts, counts)
	decisions, statParts := beam.ParDo2(s, &rankBucketFn{R: *r, Plan: hasPlan}, beam.GroupByKey(s, parts),
		sideinput.Read(s, counts), sideinput.Read(s, cutoff), sideinput.Read(s, fits), sideinput.Read(s, plan))
	return decisions, beam.ParDo(s, &langStatsFn{}, beam.GroupByKey(s, statParts))
}

func keyScoreBlock(b ScoreBlock) (string, ScoreBlock) { return b.Lang, b }

// decisionBlockRows caps the rows of a DecisionBlock that RankBlocks or
// DecisionBlocks emit (~30 bytes each with DecisionBlock's coder).
var decisionBlockRows = 1 << 16

// globalCutoffBlocks is globalCutoff on score blocks.
func globalCutoffBlocks(s beam.Scope, blocks beam.PCollection, rho float64) beam.PCollection {
	s = s.Scope("filter.GlobalCutoff")
	hist := beam.Combine(s, &histBlockFn{}, blocks)
	inBin := beam.ParDo(s, &binBlockFn{B: binItemsFn{Rho: rho}}, blocks, sideinput.Read(s, hist))
	bucket := beam.Combine(s, &bucketBlockFn{}, inBin)
	return beam.ParDo(s, &cutoffFn{Rho: rho}, hist, sideinput.Read(s, bucket))
}

type histBlockFn struct{}

func (histBlockFn) CreateAccumulator() Hist { return Hist{Counts: make([]int64, cutoffBins)} }
func (histBlockFn) AddInput(h Hist, b ScoreBlock) Hist {
	for _, x := range b.Rows {
		if finiteScore(x.Score) {
			h.Counts[cutoffBin(x.Score)]++
		}
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
// output) into blocks of at most decisionBlockRows, for SplitFiles.
//
//	PCollection<schemas.Decision> -> PCollection<DecisionBlock>
func DecisionBlocks(s beam.Scope, decisions beam.PCollection) beam.PCollection {
	s = s.Scope("filter.DecisionBlocks")
	mustType("filter.DecisionBlocks", decisions, reflect.TypeOf(schemas.Decision{}))
	return beam.ParDo(s, &decisionBatchFn{}, decisions)
}

type decisionBatchFn struct{ rows []schemas.Decision }

func (f *decisionBatchFn) StartBundle(_ context.Context, _ func(DecisionBlock)) { f.rows = nil }

func (f *decisionBatchFn) ProcessElement(d schemas.Decision, emit func(DecisionBlock)) {
	f.rows = append(f.rows, d)
	if len(f.rows) >= decisionBlockRows {
		emit(DecisionBlock{Rows: f.rows})
		f.rows = nil
	}
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
// The join is two shuffles, so no worker holds more than one hash shard of
// the per-pair verdict state or one split's verdicts, whatever the number
// of pairs:
//
//   - by id shard: the pair ids of every split (pairKeys, PairKeysFiles'
//     blocks, in file order per split and shard) meet that shard's
//     decisions, failures and reference log-probs; bindShardFn encodes the
//     verdict of each id (ShardVerdicts, ~40 bytes per pair) and sends it
//     to the split it came from;
//   - by split: splitBoundFn gets the split and one ShardVerdicts per shard
//     its ids fall in, reads the whole pairs and takes each row's verdict
//     from its shard's piece, in order, emitting the kept, dropped,
//     decision and dead-letter rows to the writers fused after it. The
//     stage has no side inputs (see bind.go for why a long read must not).
//
// failures holds ValidationFiles.DupPairs too: a duplicate_pair reason
// decides before any other failure of the id, as in Split.
//
//	PCollection<lakeio.Split> (pair files), PCollection<KV<int, PairKeyBlock>> (PairKeysFiles of the same splits),
//	PCollection<DecisionBlock>, PCollection<Failure>, PCollection<RefsBlock> -> SplitResult
func SplitFiles(s beam.Scope, pairSplits, pairKeys, decisions, failures, refs beam.PCollection) SplitResult {
	s = s.Scope("filter.SplitFiles")
	mustType("filter.SplitFiles", pairSplits, reflect.TypeOf(lakeio.Split{}))
	mustType("filter.SplitFiles", decisions, reflect.TypeOf(DecisionBlock{}))
	mustType("filter.SplitFiles", failures, reflect.TypeOf(Failure{}))
	mustType("filter.SplitFiles", refs, reflect.TypeOf(RefsBlock{}))
	byShard := beam.CoGroupByKey(s, pairKeys, beam.ParDo(s, shardDecisions, decisions),
		beam.ParDo(s, shardFailure, failures), beam.ParDo(s, shardRefs, refs))
	pieces := beam.ParDo(s, &bindShardFn{}, byShard)
	bySplit := beam.CoGroupByKey(s, beam.ParDo(s, keySplit, pairSplits), pieces)
	kept, dropped, decs, dead := beam.ParDo4(s, &splitBoundFn{}, bySplit)
	return SplitResult{Kept: kept, Dropped: dropped, Decisions: decs, Dead: dead}
}

// shardDecisions splits a DecisionBlock by the hash shard of its ids.
func shardDecisions(b DecisionBlock, emit func(int, DecisionBlock)) {
	for sh, rows := range byIDShard(b.Rows, func(d schemas.Decision) string { return d.PairID }) {
		emit(sh, DecisionBlock{Rows: rows})
	}
}

// shardRefs splits a RefsBlock by the hash shard of its ids.
func shardRefs(b RefsBlock, emit func(int, RefsBlock)) {
	for sh, rows := range byIDShard(b.Rows, func(r Refs) string { return r.PairID }) {
		emit(sh, RefsBlock{Rows: rows})
	}
}

// byIDShard yields the rows of each id shard that has any, in shard order
// and, within a shard, in the order of rows.
func byIDShard[T any](rows []T, id func(T) string) iter.Seq2[int, []T] {
	return func(yield func(int, []T) bool) {
		shards := make([][]T, joinShards)
		for _, r := range rows {
			sh := idShard(id(r))
			shards[sh] = append(shards[sh], r)
		}
		for sh, rs := range shards {
			if len(rs) > 0 && !yield(sh, rs) {
				return
			}
		}
	}
}

func keySplit(sp lakeio.Split) (string, lakeio.Split) { return splitKey(sp), sp }

// decisionTable is the decisions, failures and reference log-probs of one
// id shard by pair id. Strings that repeat (languages, reasons, audit
// names) are stored once.
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

// bind encodes the verdict of pair id into w: the cases of splitFn, in its
// order (a language mismatch is checked by splitBoundFn, which reads the
// pair's language).
func (t *decisionTable) bind(w *verdictWriter, id string) {
	if r, ok := t.dups[id]; ok {
		w.dead(id, r)
		return
	}
	if r, ok := t.fails[id]; ok {
		w.dead(id, r)
		return
	}
	j, ok := t.idx[id]
	switch {
	case !ok:
		w.dead(id, reason(KindNoSketch, "no sketch for this pair"))
	case t.rows[j].n > 1:
		w.dead(id, reason(KindDuplicate, "%d verdicts for one pair", t.rows[j].n))
	default:
		w.decided(id, t, t.rows[j])
	}
}

// bindShardFn binds the verdicts of one id shard: for each split with ids
// in the shard, one ShardVerdicts keyed by the split.
type bindShardFn struct{}

func (f *bindShardFn) ProcessElement(shard int, pkIt func(*PairKeyBlock) bool, decIt func(*DecisionBlock) bool,
	failIt func(*Failure) bool, refIt func(*RefsBlock) bool, emit func(string, ShardVerdicts)) {
	var t decisionTable
	t.load(decIt, failIt, refIt)
	var pk PairKeyBlock
	for pkIt(&pk) {
		var w verdictWriter
		for _, id := range pk.IDs {
			t.bind(&w, id)
		}
		emit(pk.Split, ShardVerdicts{Shard: shard, Strs: w.strs, Rows: w.buf, N: w.n})
	}
}

// splitBoundFn reads the pairs of a split and sends each where its verdict
// (from its id shard's ShardVerdicts) says.
type splitBoundFn struct{}

func (f *splitBoundFn) ProcessElement(ctx context.Context, key string, spIt func(*lakeio.Split) bool, vIt func(*ShardVerdicts) bool,
	kept func(schemas.Pair), dropped func(schemas.Dropped), decisions func(schemas.Decision), dead func(schemas.DeadLetter)) error {
	var sp lakeio.Split
	if !spIt(&sp) {
		return fmt.Errorf("filter: verdicts for split %s, which no pair split has", key)
	}
	var again lakeio.Split
	if spIt(&again) {
		return fmt.Errorf("filter: two pair splits share the key %s", key)
	}
	readers := make([]*verdictReader, joinShards)
	var v ShardVerdicts
	for vIt(&v) {
		if v.Shard < 0 || v.Shard >= joinShards || readers[v.Shard] != nil {
			return fmt.Errorf("filter: %s: bad or repeated verdicts of shard %d", sp.Path, v.Shard)
		}
		readers[v.Shard] = &verdictReader{path: sp.Path, v: v}
		v = ShardVerdicts{}
	}
	deadPair := func(p schemas.Pair, reason string) {
		count(ctx, OutDead, p.Lang)
		dead(schemas.DeadLetter{Stage: Stage, Source: p.PairID, Row: -1, Reason: reason, Payload: payload(p)})
	}
	codec := schemas.PairCodec{}
	err := lakeio.EachBatch(ctx, sp, nil, BatchRows, func(rec arrow.RecordBatch) error {
		ps, err := codec.Decode(rec)
		if err != nil {
			return fmt.Errorf("filter: %s: %w", sp.Path, err)
		}
		for _, p := range ps {
			vr := readers[idShard(p.PairID)]
			if vr == nil {
				return fmt.Errorf("filter: %s: no verdict for pair id %q (file changed during the run?)", sp.Path, p.PairID)
			}
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
	for _, vr := range readers {
		if vr != nil {
			if err := vr.done(); err != nil {
				return err
			}
		}
	}
	return nil
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
	beam.RegisterType(reflect.TypeOf((*bindShardFn)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*splitBoundFn)(nil)).Elem())
	register.Function2x0(shardDecisions)
	register.Function2x0(shardRefs)
	register.Function1x2(keySplit)
	register.Emitter2[int, DecisionBlock]()
	register.Emitter2[int, RefsBlock]()
	register.Emitter2[string, ShardVerdicts]()
	register.Iter1[*lakeio.Split]()
	register.Iter1[*ShardVerdicts]()
	beam.RegisterType(reflect.TypeOf(ShardVerdicts{}))
	register.DoFn4x1[context.Context, BoundSplit, func(ScoreBlock), func(Failure), error](&scoreBlockSplitFn{})
	register.Function1x1(scoreBlockCount)
	register.Function1x2(keyScoreBlock)
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
	for _, t := range []any{PairKeyBlock{}, MetaBlock{}, RefsBlock{}, ScoreBlock{}, LangCount{}} {
		beam.RegisterType(reflect.TypeOf(t))
	}
	beam.RegisterCoder(reflect.TypeOf(DecisionBlock{}), encodeDecisionBlock, decodeDecisionBlock)
}
