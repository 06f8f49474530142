package filter

import (
	"reflect"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// badSketchFixture adds to newFixture's rows a pair with two sketches and
// a pair whose sketch names another language; every bad sketch is large, so
// letting one into G_l would move the consensus visibly.
func badSketchFixture(t *testing.T) (pairs []schemas.Pair, sks, valid []schemas.Sketch) {
	f := newFixture(t)
	vals := func(v float32) []float32 {
		out := make([]float32, k)
		for i := range out {
			out[i] = v * float32(1+i%3)
		}
		return out
	}
	pairs = append(f.pairs, schemas.Pair{PairID: "x-dupsk", Lang: "en"}, schemas.Pair{PairID: "x-mm", Lang: "de"})
	sks = append(f.sketches,
		schemas.Sketch{PairID: "x-dupsk", Lang: "en", Values: vals(30)},
		schemas.Sketch{PairID: "x-dupsk", Lang: "en", Values: vals(-20)},
		schemas.Sketch{PairID: "x-mm", Lang: "en", Values: vals(50)})
	for _, s := range f.good {
		if s.PairID != "x-orphan" {
			valid = append(valid, s)
		}
	}
	return pairs, sks, valid
}

func failureReason(f Failure) string { return f.PairID + " " + kindOfReason(f.Reason) }

// kindOfReason is the code before ": " of a filter reason.
func kindOfReason(r string) string {
	for i := 0; i+1 < len(r); i++ {
		if r[i] == ':' && r[i+1] == ' ' {
			return r[:i]
		}
	}
	return r
}

func TestValidateKeepsBadSketchesOutOfConsensus(t *testing.T) {
	pairs, sks, valid := badSketchFixture(t)
	aopts := aggregate.Options{K: k, Seed: 5}

	p, s := beam.NewPipelineWithRoot()
	want := aggregate.ConsensusOf(s, aggregate.PerLanguage(s, beam.CreateList(s, valid), aopts), aopts)
	pc, skc := beam.CreateList(s, pairs), beam.CreateList(s, sks)
	val := Validate(s, pc, MetasOf(s, skc), beam.PCollection{})
	ok, failed := Admit(s, skc, val.Excluded, k)
	got := aggregate.ConsensusOf(s, aggregate.PerLanguage(s, ok, aopts), aopts)
	passert.Equals(s, got, want)
	// Rejected at validation: the orphan, both duplicates, the language
	// mismatch and the sketch without a language (its pair says "de").
	passert.Equals(s, beam.ParDo(s, failureReason, val.DeadSketches),
		"x-orphan orphan_sketch", "x-dupsk duplicate_sketch", "x-dupsk duplicate_sketch",
		"x-mm lang_mismatch", "x-nolang lang_mismatch")
	passert.Equals(s, beam.ParDo(s, failureReason, val.PairFailures),
		"x-dupsk duplicate_sketch", "x-mm lang_mismatch", "x-nolang lang_mismatch")
	passert.Equals(s, beam.ParDo(s, failureReason, failed),
		"x-nan invalid_sketch", "x-zero invalid_sketch", "x-dim invalid_sketch")
	passert.Count(s, ok, "admitted", len(valid))
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

// The same through sketch files read in passes (no sketch PCollection).
func TestValidateFilesKeepsBadSketchesOutOfConsensus(t *testing.T) {
	pairs, sks, valid := badSketchFixture(t)
	var written []schemas.Sketch
	for _, sk := range sks {
		if len(sk.Values) == k { // a file holds k values per row by construction
			written = append(written, sk)
		}
	}
	dir := t.TempDir()
	p, s := beam.NewPipelineWithRoot()
	lakeio.Write(s, dir+"/sketches", beam.CreateList(s, written), lakeio.WriteOptions{Shards: 3, RowGroupRows: 16, SketchK: k, SketchSpec: "test"})
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}

	for _, method := range []string{aggregate.Mean, aggregate.EMA} {
		t.Run(method, func(t *testing.T) {
			aopts := aggregate.Options{K: k, Seed: 5, Method: method}
			p, s := beam.NewPipelineWithRoot()
			want := aggregate.ConsensusOf(s, aggregate.PerLanguage(s, beam.CreateList(s, valid), aopts), aopts)
			splits, err := lakeio.Splits(s, dir+"/sketches-*.parquet", reflect.TypeOf(schemas.Sketch{}), lakeio.ReadOptions{SketchK: k})
			if err != nil {
				t.Fatal(err)
			}
			fo := FileOptions{K: k, Spec: "test"}
			val := Validate(s, beam.CreateList(s, pairs), MetasOfFiles(s, splits), beam.PCollection{})
			partials, failed := AggregateFiles(s, splits, val.Excluded, fo, aopts)
			got := aggregate.ConsensusOf(s, aggregate.FromPartials(s, partials, aopts), aopts)
			passert.Equals(s, got, want)
			passert.Equals(s, beam.ParDo(s, failureReason, failed), "x-nan invalid_sketch", "x-zero invalid_sketch")
			scored, unscorable := ScoreFiles(s, splits, val.Excluded, got, fo)
			passert.Count(s, scored, "scored", len(valid))
			passert.Empty(s, unscorable)
			if err := ptest.Run(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func init() {
	beam.RegisterFunction(failureReason)
}
