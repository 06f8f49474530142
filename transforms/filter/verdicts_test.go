package filter

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// TestVerdictsRoundTrip: what bindShardFn encodes, splitBoundFn reads back
// row for row, and a second read that does not match the first (another id,
// more or fewer rows) is an error naming the file, never a wrong join.
func TestVerdictsRoundTrip(t *testing.T) {
	tab := &decisionTable{strIx: map[string]uint32{}}
	row := func(lang, rsn string, score float64, rank int64, kept, ref bool) decRow {
		r := decRow{score: score, rank: rank, kept: kept, hasRef: ref, n: 1,
			lang: tab.str(lang), reason: tab.str(rsn), scoreType: tab.str("pair"), target: tab.str("consensus"),
			rule: tab.str("positive"), gate: tab.str("")}
		if ref {
			r.refC, r.refR = -12.5, math.NaN()
		}
		return r
	}
	var w verdictWriter
	w.decided("a", tab, row("en", "kept", 0.25, 3, true, true))
	w.dead("b", "no_sketch: no sketch for this pair")
	w.decided("c", tab, row("de", "conflict", -0.5, -1, false, false))
	w.dead("d", "no_sketch: no sketch for this pair")
	b := ShardVerdicts{Strs: w.strs, Rows: w.buf, N: w.n}
	const path = "/lake/pairs-00000-of-00001.parquet"
	if len(b.Strs) != 9 {
		t.Fatalf("strings stored %d times, want 9 distinct: %q", len(b.Strs), b.Strs)
	}

	r := verdictReader{path: path, v: b}
	va, _ := r.next("a")
	vb, _ := r.next("b")
	vc, _ := r.next("c")
	vd, err := r.next("d")
	if err != nil || r.done() != nil {
		t.Fatal(err, r.done())
	}
	if va.dead != "" || va.lang != "en" || va.reason != "kept" || va.score != 0.25 || va.rank != 3 || !va.kept ||
		!va.hasRef || va.refC != -12.5 || !math.IsNaN(va.refR) || va.scoreType != "pair" || va.rule != "positive" {
		t.Errorf("a: %+v", va)
	}
	if vb.dead != "no_sketch: no sketch for this pair" || vd.dead != vb.dead {
		t.Errorf("b, d: %+v %+v", vb, vd)
	}
	if vc.dead != "" || vc.lang != "de" || vc.kept || vc.hasRef || vc.rank != -1 || vc.score != -0.5 {
		t.Errorf("c: %+v", vc)
	}

	bad := []struct {
		name string
		read func(r *verdictReader) error
		want string
	}{
		{"other id", func(r *verdictReader) error { _, err := r.next("x"); return err }, `pair id "x" differs`},
		{"more rows", func(r *verdictReader) error {
			for _, id := range []string{"a", "b", "c", "d"} {
				r.next(id)
			}
			_, err := r.next("e")
			return err
		}, "more rows"},
		{"fewer rows", func(r *verdictReader) error { r.next("a"); return r.done() }, "has 1 rows, 4 when"},
		{"truncated", func(r *verdictReader) error {
			r.v.Rows = r.v.Rows[:len(r.v.Rows)-3]
			for _, id := range []string{"a", "b", "c", "d"} {
				if _, err := r.next(id); err != nil {
					return err
				}
			}
			return r.done()
		}, "row 3"},
	}
	for _, c := range bad {
		r := verdictReader{path: path, v: b}
		err := c.read(&r)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "pairs-00000-of-00001.parquet") {
			t.Errorf("%s: %v, want an error with %q and the file", c.name, err, c.want)
		}
	}
}

// SplitFiles' two-stage join called directly on one pair file: bindShardFn
// sends each shard's verdicts to the split, splitBoundFn puts each row's
// verdict back in file order from its shard's piece. A piece that is
// missing, repeated or out of order, verdicts for no split, or two splits
// under one key are errors naming what is wrong, never a wrong join.
func TestShardJoinDirect(t *testing.T) {
	dir := t.TempDir()
	var pairs []schemas.Pair
	var decs DecisionBlock
	wantKept, wantDropped, wantDead := 0, 0, 0
	for i := range 1000 { // several ids per shard
		id := fmt.Sprintf("p%04d", i)
		pairs = append(pairs, schemas.Pair{PairID: id, Lang: "en", Prompt: "q", Chosen: "c", Rejected: "r"})
		switch {
		case i%5 == 0: // every fifth pair has no sketch
			wantDead++
		case i%2 == 0:
			wantKept++
		default:
			wantDropped++
		}
		if i%5 != 0 {
			decs.Rows = append(decs.Rows, schemas.Decision{PairID: id, Lang: "en", Score: float64(i), Kept: i%2 == 0, Reason: "r"})
		}
	}
	p, s := beam.NewPipelineWithRoot()
	lakeio.Write(s, dir+"/pairs", beam.CreateList(s, pairs), lakeio.WriteOptions{Shards: 1})
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(dir + "/pairs-*.parquet")
	if len(files) != 1 {
		t.Fatalf("pair files %q", files)
	}
	sp := lakeio.Split{Path: files[0], Format: lakeio.Parquet, Start: 0, End: 1}
	ctx := metrics.SetPTransformID(metrics.SetBundleID(context.Background(), "b"), "t")

	// The first stage, as the runner would group it.
	keys := make([]PairKeyBlock, joinShards)
	for _, pr := range pairs {
		k := &keys[idShard(pr.PairID)]
		k.Split, k.IDs, k.Langs = splitKey(sp), append(k.IDs, pr.PairID), append(k.Langs, pr.Lang)
	}
	decsBy := map[int][]DecisionBlock{}
	shardDecisions(decs, func(sh int, b DecisionBlock) { decsBy[sh] = append(decsBy[sh], b) })
	var pieces []ShardVerdicts
	for sh, k := range keys {
		if len(k.IDs) == 0 {
			continue
		}
		(&bindShardFn{}).ProcessElement(sh, iterOf([]PairKeyBlock{k}), iterOf(decsBy[sh]), iterOf[Failure](nil), iterOf[RefsBlock](nil),
			func(key string, v ShardVerdicts) {
				if key != splitKey(sp) {
					t.Fatalf("verdicts keyed %q, want the split's %q", key, splitKey(sp))
				}
				pieces = append(pieces, v)
			})
	}
	if len(pieces) < 2 {
		t.Fatalf("%d pieces: the ids should span several shards", len(pieces))
	}

	run := func(splits []lakeio.Split, vs []ShardVerdicts) (kept, dropped, dead []string, err error) {
		err = (&splitBoundFn{}).ProcessElement(ctx, splitKey(sp), iterOf(splits), iterOf(vs),
			func(p schemas.Pair) { kept = append(kept, p.PairID) },
			func(d schemas.Dropped) { dropped = append(dropped, d.Pair.PairID) },
			func(schemas.Decision) {},
			func(d schemas.DeadLetter) { dead = append(dead, d.Source+" "+kindOfReason(d.Reason)) })
		return
	}
	kept, dropped, dead, err := run([]lakeio.Split{sp}, pieces)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != wantKept || len(dropped) != wantDropped || len(dead) != wantDead ||
		dead[0] != "p0000 no_sketch" || kept[0] != "p0002" || dropped[0] != "p0001" {
		t.Fatalf("kept %q\ndropped %q\ndead %q", kept, dropped, dead)
	}
	for i := 1; i < len(kept); i++ {
		if kept[i] <= kept[i-1] {
			t.Fatalf("kept out of file order: %q", kept)
		}
	}

	// Out of order: the rows of one piece swapped.
	swapped := slices.Clone(pieces)
	n := 0
	for i, v := range swapped {
		if v.N >= 2 {
			n++
			var w verdictWriter
			ids := slices.Clone(keys[v.Shard].IDs)
			ids[0], ids[1] = ids[1], ids[0]
			for _, id := range ids {
				w.dead(id, "x")
			}
			swapped[i] = ShardVerdicts{Shard: v.Shard, Strs: w.strs, Rows: w.buf, N: w.n}
			break
		}
	}
	if n == 0 {
		t.Fatal("no shard with two ids to swap")
	}
	bad := []struct {
		name   string
		splits []lakeio.Split
		vs     []ShardVerdicts
		want   string
	}{
		{"missing piece", []lakeio.Split{sp}, pieces[1:], "no verdict for pair id"},
		{"repeated piece", []lakeio.Split{sp}, append(slices.Clone(pieces), pieces[0]), "repeated verdicts of shard"},
		{"out of order", []lakeio.Split{sp}, swapped, "differs from the first read"},
		{"no split", nil, pieces, "which no pair split has"},
		{"two splits", []lakeio.Split{sp, sp}, pieces, "two pair splits share the key"},
	}
	for _, c := range bad {
		if _, _, _, err := run(c.splits, c.vs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// iterOf is a Beam-style iterator over xs.
func iterOf[T any](xs []T) func(*T) bool {
	return func(x *T) bool {
		if len(xs) == 0 {
			return false
		}
		*x, xs = xs[0], xs[1:]
		return true
	}
}

// RankBlocks' and DecisionBlocks' decisions leave in blocks of at most
// decisionBlockRows rows, the same rows in the same order as one uncapped
// block.
func TestRankBlockChunks(t *testing.T) {
	var sb ScoreBlock
	sb.Lang = "en"
	for i := range 8 {
		sb.Rows = append(sb.Rows, keep.Scored{PairID: fmt.Sprintf("p%d", i), Lang: "en", Score: float64(i%3) - 0.5})
	}
	rank := func(cap int) (sizes []int, rows []schemas.Decision) {
		defer func(old int) { decisionBlockRows = old }(decisionBlockRows)
		decisionBlockRows = cap
		f := &rankBucketFn{R: *newRankFn(rankOptions("test", Options{Keep: keep.Options{Rule: keep.Top, Rho: 0.5}}))}
		counts := []string{bucketKey("en", 0)}
		err := f.ProcessElement(context.Background(), bucketKey("en", 0), iterOf([]ScoreBlock{sb}),
			func(k *string, c *BucketCount) bool {
				if len(counts) == 0 {
					return false
				}
				*k, *c, counts = counts[0], BucketCount{N: 8, Finite: 8}, counts[1:]
				return true
			}, iterOf[keep.Cutoff](nil), iterOf[LangFit](nil), iterOf[Plan](nil),
			func(b DecisionBlock) { sizes, rows = append(sizes, len(b.Rows)), append(rows, b.Rows...) }, func(string, StatsPart) {})
		if err != nil {
			t.Fatal(err)
		}
		return sizes, rows
	}
	oneSizes, one := rank(1 << 16)
	sizes, chunked := rank(3)
	if !slices.Equal(oneSizes, []int{8}) || !slices.Equal(sizes, []int{3, 3, 2}) {
		t.Fatalf("block sizes %v uncapped, %v capped at 3", oneSizes, sizes)
	}
	if !slices.EqualFunc(one, chunked, func(a, b schemas.Decision) bool { return a == b }) {
		t.Fatalf("rows differ:\n%v\n%v", one, chunked)
	}

	defer func(old int) { decisionBlockRows = old }(decisionBlockRows)
	decisionBlockRows = 3
	var batched []schemas.Decision
	sizes = nil
	collect := func(b DecisionBlock) { sizes, batched = append(sizes, len(b.Rows)), append(batched, b.Rows...) }
	f := &decisionBatchFn{}
	f.StartBundle(context.Background(), collect)
	for _, d := range one {
		f.ProcessElement(d, collect)
	}
	f.FinishBundle(context.Background(), collect)
	if !slices.Equal(sizes, []int{3, 3, 2}) || !slices.Equal(batched, one) {
		t.Fatalf("DecisionBlocks: sizes %v, rows %v", sizes, batched)
	}
}

// DecisionBlock's coder gives back every field of every row, rejects any
// truncation or trailing garbage with an error (never a panic), is
// deterministic, and is smaller than Beam's schema coder on rows like
// RankBlocks'.
func TestDecisionBlockCoder(t *testing.T) {
	var b DecisionBlock
	for i := range 1000 {
		b.Rows = append(b.Rows, schemas.Decision{PairID: fmt.Sprintf("pair-%07d", i), Lang: []string{"en", "de", "sw"}[i%3],
			Score: float64(i)/1000 - 0.3, Rank: i - 4, Kept: i%4 != 0, Reason: []string{"score>tau", "score<=tau"}[i%2],
			ScoreType: "pair", Target: "g*", Rule: "positive tau=0", Gate: "none"})
	}
	// Every field is set in some row, so a field the coder forgot fails.
	rv := reflect.ValueOf(b.Rows[6]) // ranks run from -4 (the coder takes any int)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Fatalf("fixture leaves %s zero", rv.Type().Field(i).Name)
		}
	}
	enc := encodeDecisionBlock(b)
	if again := encodeDecisionBlock(b); !slices.Equal(enc, again) {
		t.Fatal("two encodings of one block differ")
	}
	got, err := decodeDecisionBlock(enc)
	if err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip: %v\n%+v", err, got.Rows[:2])
	}
	if got, err := decodeDecisionBlock(encodeDecisionBlock(DecisionBlock{})); err != nil || got.Rows != nil {
		t.Fatalf("empty block: %+v %v", got, err)
	}
	for n := range len(enc) - 1 {
		if n > 200 && n < len(enc)-200 && n%97 != 0 {
			continue // every cut near the ends, a sample in between
		}
		if _, err := decodeDecisionBlock(enc[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(enc))
		}
	}
	if _, err := decodeDecisionBlock(append(slices.Clone(enc), 0)); err == nil {
		t.Fatal("trailing byte: no error")
	}
	bad := slices.Clone(enc)
	bad[len(bad)-1] = 7 // the last row's kept flag
	if _, err := decodeDecisionBlock(bad); err == nil {
		t.Fatal("kept flag 7: no error")
	}

	// The pipeline uses it (Beam's schema coder prints as R[...]).
	if c := beam.NewCoder(typex.New(reflect.TypeOf(DecisionBlock{}))).String(); strings.HasPrefix(c, "R[") {
		t.Fatalf("DecisionBlock's coder is %s, not its own", c)
	}
	schemaEnc, err := coder.RowEncoderForStruct(reflect.TypeOf(DecisionBlock{}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := schemaEnc(b, &buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rows: %d bytes (%.1f a row), Beam's schema coder %d (%.1f a row)", len(b.Rows), len(enc),
		float64(len(enc))/float64(len(b.Rows)), buf.Len(), float64(buf.Len())/float64(len(b.Rows)))
	if 2*len(enc) > buf.Len() {
		t.Fatalf("%d bytes, not under half the schema coder's %d", len(enc), buf.Len())
	}
}
