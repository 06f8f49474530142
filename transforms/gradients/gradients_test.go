package gradients

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/dpo"
	"github.com/congrad-beam/congrad/schemas"
)

func TestMain(m *testing.M) { ptest.MainWithDefault(m, "prism") }

func opts() Options {
	spec := sketch.DefaultSpec()
	spec.K = 128
	return Options{Model: "tiny", Spec: spec, Batch: 4, Buckets: 3, LoRARank: 2}
}

func testPairs(n int) []schemas.Pair {
	langs := []string{"en", "de", "ru", "zh"}
	texts := map[string][3]string{
		"en": {"Why is the sky blue?", "Air scatters blue light more.", "Because."},
		"de": {"Warum ist der Himmel blau?", "Die Luft streut blaues Licht.", "Darum."},
		"ru": {"Почему небо голубое?", "Воздух рассеивает синий свет.", "Потому."},
		"zh": {"天空为什么是蓝色的？", "空气散射蓝光更多。", "因为。"},
	}
	var ps []schemas.Pair
	for i := 0; i < n; i++ {
		l := langs[i%len(langs)]
		tx := texts[l]
		ps = append(ps, schemas.Pair{PairID: fmt.Sprintf("%s-%03d", l, i), Lang: l,
			Prompt: fmt.Sprintf("%s (%d)", tx[0], i), Chosen: tx[1], Rejected: tx[2]})
	}
	return ps
}

// sketchLine projects a sketch to a string so passert compares it exactly.
func sketchLine(s schemas.Sketch) string {
	return fmt.Sprintf("%s|%s|%d|%v|%.12g|%.12g|%.12g", s.PairID, s.Lang, s.Step, s.Values, s.Loss, s.RefChosenLogp, s.RefRejectedLogp)
}

func deadSource(d schemas.DeadLetter) string { return d.Source + "|" + d.Stage }

func init() {
	register.Function1x1(sketchLine)
	register.Function1x1(deadSource)
}

// direct computes the same sketches in a plain loop with the same batches
// (sorted ids per hash bucket, cut into Batch): the reference the transform
// must equal bit for bit.
func direct(t testing.TB, o Options, ps []schemas.Pair) []schemas.Sketch {
	t.Helper()
	x, err := Extractor(o)
	if err != nil {
		t.Fatal(err)
	}
	buckets := map[int][]schemas.Pair{}
	for _, p := range ps {
		b := int(hash(p.PairID) % uint64(o.Buckets))
		buckets[b] = append(buckets[b], p)
	}
	var out []schemas.Sketch
	for _, bp := range buckets {
		sort.Slice(bp, func(i, j int) bool { return bp[i].PairID < bp[j].PairID })
		for s := 0; s < len(bp); s += o.Batch {
			var in []dpo.Input
			for _, p := range bp[s:min(s+o.Batch, len(bp))] {
				in = append(in, dpo.Input{PairID: p.PairID, Prompt: p.Prompt, Chosen: p.Chosen, Rejected: p.Rejected})
			}
			res, err := x.Extract(in)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				if r.Err != "" {
					continue
				}
				p := bp[s+i]
				out = append(out, schemas.Sketch{PairID: p.PairID, Lang: p.Lang, Step: int64(hash("step:"+p.PairID) % uint64(o.Steps)),
					Values: r.Sketch, Loss: r.Loss, RefChosenLogp: r.RefChosenLogp, RefRejectedLogp: r.RefRejectedLogp})
			}
		}
	}
	return out
}

func TestSketchesEqualDirectLoopAndDeadLetters(t *testing.T) {
	o := opts()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	ps := testPairs(14)
	bad := []schemas.Pair{
		{PairID: "bad-empty", Lang: "en", Prompt: "Hi?", Chosen: "Hello.", Rejected: ""},
	}
	// The bad pair shares a bucket (so a batch) with good ones: batch
	// composition changes float rounding, so the reference must see it too.
	want := direct(t, o, append(append([]schemas.Pair{}, ps...), bad...))
	if len(want) != len(ps) {
		t.Fatalf("direct loop sketched %d of %d pairs", len(want), len(ps))
	}
	var wantLines []any
	for _, s := range want {
		if math.IsNaN(s.Loss) {
			t.Fatal("NaN loss in fixture")
		}
		wantLines = append(wantLines, sketchLine(s))
	}
	p, s := beam.NewPipelineWithRoot()
	sks, dead := Sketches(s, beam.CreateList(s, append(append([]schemas.Pair{}, ps...), bad...)), o)
	passert.Equals(s, beam.ParDo(s, sketchLine, sks), wantLines...)
	passert.Equals(s, beam.ParDo(s, deadSource, dead), "bad-empty|"+Stage)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkGradientStage compares the transform on Prism with the same
// extraction in a plain loop (same batches), in one run: the ratio is the
// Beam overhead of the gradient stage. Reported as beam/loop.
func BenchmarkGradientStage(b *testing.B) {
	o := opts()
	o.Spec.K = 1024
	o.Batch, o.Buckets = 8, 4
	if err := o.Validate(); err != nil {
		b.Fatal(err)
	}
	ps := testPairs(96)
	direct(b, o, ps[:8]) // compile the graphs outside the timing
	var loop, beamT time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		direct(b, o, ps)
		loop += time.Since(t0)
		t0 = time.Now()
		p, s := beam.NewPipelineWithRoot()
		sks, _ := Sketches(s, beam.CreateList(s, ps), o)
		passert.Count(s, sks, "sketches", len(ps))
		if err := ptest.Run(p); err != nil {
			b.Fatal(err)
		}
		beamT += time.Since(t0)
	}
	b.ReportMetric(float64(len(ps)*b.N)/loop.Seconds(), "loop_pairs/s")
	b.ReportMetric(float64(len(ps)*b.N)/beamT.Seconds(), "beam_pairs/s")
	b.ReportMetric(beamT.Seconds()/loop.Seconds(), "beam/loop")
}

// Two rows with one pair id: which one is extracted must not depend on the
// order they arrive in.
func TestPairLessOrderIndependent(t *testing.T) {
	rows := []schemas.Pair{
		{PairID: "p1", Lang: "en", Prompt: "x", Chosen: "b", Rejected: "c"},
		{PairID: "p1", Lang: "en", Prompt: "x", Chosen: "a", Rejected: "c"},
		{PairID: "p0", Lang: "de", Prompt: "y", Chosen: "a", Rejected: "c"},
		{PairID: "p1", Lang: "de", Prompt: "x", Chosen: "z", Rejected: "c"},
	}
	var first []schemas.Pair
	for perm := 0; perm < 24; perm++ {
		ps := append([]schemas.Pair(nil), rows...)
		// a deterministic shuffle per perm
		for i := len(ps) - 1; i > 0; i-- {
			j := (perm*7 + i*3) % (i + 1)
			ps[i], ps[j] = ps[j], ps[i]
		}
		sort.Slice(ps, func(i, j int) bool { return pairLess(ps[i], ps[j]) })
		if first == nil {
			first = ps
			continue
		}
		if !reflect.DeepEqual(ps, first) {
			t.Fatalf("perm %d: order %v differs from %v", perm, ps, first)
		}
	}
	if first[0].PairID != "p0" || first[1].Lang != "de" || first[2].Chosen != "a" {
		t.Fatalf("unexpected order %v", first)
	}
}
