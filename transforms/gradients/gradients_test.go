package gradients

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/dpo"
	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/schemas"
)

func TestMain(m *testing.M) { ptest.MainWithDefault(m, "prism") }

func opts() Options {
	spec := sketch.DefaultSpec()
	spec.K = 128
	return Options{Model: "tiny", Spec: spec, Batch: 4, LoRARank: 2, MaxLen: 256}
}

// testPairs are n pairs in 4 languages; every third prompt is repeated a few
// times, so the pairs fall into several padded lengths (64, 128, 256 tokens
// with the tiny model's tokenizer).
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
		prompt := fmt.Sprintf("%s (%d)", tx[0], i)
		if i%3 == 0 {
			prompt = strings.Repeat(prompt+" ", 1+i%4)
		}
		ps = append(ps, schemas.Pair{PairID: fmt.Sprintf("%s-%03d", l, i), Lang: l,
			Prompt: prompt, Chosen: tx[1], Rejected: tx[2]})
	}
	return ps
}

// bits prints every number of an output exactly (float bit patterns).
func bits(o dpo.Output) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%x|%x|%x|%x|%d|%d|%q|", o.PairID, math.Float64bits(o.Loss), math.Float64bits(o.Z),
		math.Float64bits(o.RefChosenLogp), math.Float64bits(o.RefRejectedLogp), o.ChosenTokens, o.RejectedTokens, o.Err)
	for _, v := range o.Sketch {
		fmt.Fprintf(&b, "%x,", math.Float32bits(v))
	}
	return b.String()
}

// sketchLine projects a sketch to a string with every number's exact bits,
// so passert compares them exactly.
func sketchLine(s schemas.Sketch) string {
	return fmt.Sprintf("%s|%s|%d|%x", s.PairID, s.Lang, s.Step, math.Float64bits(s.Norm)) +
		bits(dpo.Output{PairID: s.PairID, Sketch: s.Values, Loss: s.Loss, Z: s.Z, RefChosenLogp: s.RefChosenLogp,
			RefRejectedLogp: s.RefRejectedLogp, ChosenTokens: s.ChosenTokens, RejectedTokens: s.RejectedTokens})
}

func deadLine(d schemas.DeadLetter) string { return d.Source + "|" + d.Stage + "|" + d.Reason }

func init() {
	register.Function1x1(sketchLine)
	register.Function1x1(deadLine)
}

// alone extracts every pair in a device call of its own (one real row, the
// others padding): the reference, independent of any batching.
func alone(t testing.TB, o Options, ps []schemas.Pair) map[string]dpo.Output {
	t.Helper()
	x, err := Extractor(o)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dpo.Output{}
	for _, p := range ps {
		r, err := x.Extract([]dpo.Input{input(p)})
		if err != nil {
			t.Fatal(err)
		}
		out[p.PairID] = r[0]
	}
	return out
}

// classes groups pairs by padded length (the stage's batching rule).
func classes(t testing.TB, o Options, ps []schemas.Pair) map[int][]schemas.Pair {
	t.Helper()
	sh, err := sharedFor(o)
	if err != nil {
		t.Fatal(err)
	}
	by := map[int][]schemas.Pair{}
	for _, p := range ps {
		c, ok := sh.padClass(input(p))
		if !ok {
			t.Fatalf("pair %s does not encode", p.PairID)
		}
		by[c] = append(by[c], p)
	}
	return by
}

// TestPairResultIndependentOfBatchMates is what makes batching inside a
// bundle deterministic: a pair's sketch, loss, z and reference log-probs are
// bit-identical whichever pairs of its padded length share its device call,
// at whichever row, with however many padding rows. Checked for batches of 4
// and 8 with the count sketch and for the Gaussian sketch.
func TestPairResultIndependentOfBatchMates(t *testing.T) {
	gauss, b8 := opts(), opts()
	gauss.Spec.Method = sketch.Gaussian
	b8.Batch = 8
	for name, o := range map[string]Options{"batch4": opts(), "batch8": b8, "gaussian": gauss} {
		t.Run(name, func(t *testing.T) {
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			ps := testPairs(3 * o.Batch)
			ref := alone(t, o, ps)
			x, _ := Extractor(o)
			by := classes(t, o, ps)
			if len(by) < 2 {
				t.Fatalf("fixture has %d padded lengths, want several", len(by))
			}
			checked := 0
			for c, cp := range by {
				// Every pair at every row, with changing mates, and batches
				// of every size from 1 to Batch (Batch-size padding rows).
				for _, size := range []int{1, o.Batch / 2, o.Batch} {
					if size > len(cp) {
						continue
					}
					for rot := 0; rot < min(len(cp), o.Batch+1); rot++ {
						var b []dpo.Input
						for k := 0; k < size; k++ {
							b = append(b, input(cp[(rot+k*(1+rot%2))%len(cp)]))
						}
						if hasDup(b) {
							continue
						}
						got, err := x.Extract(b)
						if err != nil {
							t.Fatal(err)
						}
						for _, r := range got {
							if r.Err != "" {
								t.Fatalf("%s: %s", r.PairID, r.Err)
							}
							if bits(r) != bits(ref[r.PairID]) {
								t.Fatalf("padded length %d, batch %v: %s differs from its extraction alone", c, ids(b), r.PairID)
							}
							checked++
						}
					}
				}
			}
			// Mixing padded lengths is what the stage avoids: the shorter
			// pairs are then computed at the longer T. Logged, not asserted
			// (whether rounding changes is the backend's business).
			var mixed []dpo.Input
			for _, cp := range by {
				mixed = append(mixed, input(cp[0]))
			}
			got, _ := x.Extract(mixed[:min(len(mixed), o.Batch)])
			differ := 0
			for _, r := range got {
				if bits(r) != bits(ref[r.PairID]) {
					differ++
				}
			}
			t.Logf("%d rows checked bit for bit; a batch mixing %d padded lengths changed %d of its %d pairs", checked, len(by), differ, len(got))
		})
	}
}

// TestNoSlotIsSpecial puts a pair whose rejected sequence fills its padded
// length exactly (so its last scored position is among the last rows of the
// model's matrix products) at every row of a full device call and wants the
// bits of its extraction alone. It fails without the reserved padding rows
// (padSlots); the log shows how many rows differed without them.
func TestNoSlotIsSpecial(t *testing.T) {
	m := mustModel(t)
	for _, method := range []sketch.Method{sketch.CountSketch, sketch.Gaussian} {
		for _, b := range []int{4, 8} {
			o := opts()
			o.Spec.Method, o.Batch = method, b
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			x, err := Extractor(o)
			if err != nil {
				t.Fatal(err)
			}
			bare := o.dpo()
			bare.Batch = o.Batch // no reserved rows
			xb, err := dpo.NewExtractor(m, bare)
			if err != nil {
				t.Fatal(err)
			}
			for _, T := range []int{32, 64} {
				target := exactLength(t, m, o, T)
				mates := make([]dpo.Input, b)
				for i := range mates {
					mates[i] = dpo.Input{PairID: fmt.Sprint("mate", i), Prompt: strings.Repeat("p", T/2+1),
						Chosen: "ok", Rejected: strings.Repeat("r", 10+i%3)}
				}
				ref, _ := x.Extract([]dpo.Input{target})
				refBare, _ := xb.Extract([]dpo.Input{target})
				differBare := 0
				for slot := 0; slot < b; slot++ {
					call := append([]dpo.Input{}, mates...)
					call[slot] = target
					got, err := x.Extract(call)
					if err != nil {
						t.Fatal(err)
					}
					if got[slot].Err != "" || bits(got[slot]) != bits(ref[0]) {
						t.Fatalf("%s, batch %d, padded length %d: the pair at row %d differs from its extraction alone", method, b, T, slot)
					}
					if g, _ := xb.Extract(call); bits(g[slot]) != bits(refBare[0]) {
						differBare++
					}
				}
				t.Logf("%s, batch %d, T %d: every row identical; without reserved padding rows %d of %d rows differed", method, b, T, differBare, b)
			}
		}
	}
}

// exactLength is a pair whose longer sequence has exactly T tokens.
func exactLength(t *testing.T, m *model.Model, o Options, T int) dpo.Input {
	t.Helper()
	for extra := 0; extra < T; extra++ {
		in := dpo.Input{PairID: "target", Prompt: strings.Repeat("p", T/2), Chosen: "ok", Rejected: strings.Repeat("r", 10+extra)}
		e, err := dpo.Encode(m, in, o.MaxLen, dpo.TruncatePrompt)
		if err != nil {
			t.Fatal(err)
		}
		if e.Len() == T && dpo.PadLen(e.Len(), o.MaxLen) == T {
			return in
		}
	}
	t.Fatalf("no pair of exactly %d tokens", T)
	return dpo.Input{}
}

func mustModel(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Open("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func hasDup(b []dpo.Input) bool {
	seen := map[string]bool{}
	for _, p := range b {
		if seen[p.PairID] {
			return true
		}
		seen[p.PairID] = true
	}
	return false
}

func ids(b []dpo.Input) []string {
	var s []string
	for _, p := range b {
		s = append(s, p.PairID)
	}
	return s
}

// TestSketchesEqualDirectLoopAndDeadLetters runs the transform on Prism and
// wants every pair's sketch row bit-identical to the pair extracted alone in
// a plain loop, and the unusable pair as a dead letter with Extract's reason.
func TestSketchesEqualDirectLoopAndDeadLetters(t *testing.T) {
	o := opts()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	ps := testPairs(14)
	bad := schemas.Pair{PairID: "bad-empty", Lang: "en", Prompt: "Hi?", Chosen: "Hello.", Rejected: ""}
	all := append(append([]schemas.Pair{}, ps...), bad)
	if len(classes(t, o, ps)) < 2 {
		t.Fatal("fixture has one padded length, want several")
	}
	ref := alone(t, o, all)
	var wantLines []any
	for _, p := range ps {
		r := ref[p.PairID]
		if r.Err != "" || math.IsNaN(r.Loss) {
			t.Fatalf("fixture pair %s: %q %v", p.PairID, r.Err, r.Loss)
		}
		wantLines = append(wantLines, sketchLine(toSketch(p, r, o.Steps)))
	}
	if ref[bad.PairID].Err == "" {
		t.Fatal("bad pair extracted")
	}
	p, s := beam.NewPipelineWithRoot()
	sks, dead := Sketches(s, beam.CreateList(s, all), o)
	passert.Equals(s, beam.ParDo(s, sketchLine, sks), wantLines...)
	passert.Equals(s, beam.ParDo(s, deadLine, dead), "bad-empty|"+Stage+"|"+ref[bad.PairID].Err)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

// bundle drives an extractFn by hand, as the SDK does for one bundle.
type bundle struct {
	f     *extractFn
	sks   []schemas.Sketch
	dead  []schemas.DeadLetter
	emitS func(schemas.Sketch)
	emitD func(schemas.DeadLetter)
}

func newBundle(t *testing.T, o Options, extract func([]dpo.Input) ([]dpo.Output, error)) *bundle {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	b := &bundle{f: &extractFn{Opts: o, extract: extract}}
	b.emitS = func(s schemas.Sketch) { b.sks = append(b.sks, s) }
	b.emitD = func(d schemas.DeadLetter) { b.dead = append(b.dead, d) }
	if err := b.f.Setup(); err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeOutputs answers every pair with a one-value sketch.
func fakeOutputs(in []dpo.Input) []dpo.Output {
	out := make([]dpo.Output, len(in))
	for i, p := range in {
		out[i] = dpo.Output{PairID: p.PairID, Sketch: []float32{float32(i + 1)}, Loss: 0.5}
	}
	return out
}

// TestProcessElementDoesNotWaitForTheDevice: while device calls run (here:
// blocked), ProcessElement keeps taking pairs until queueDepth full batches
// wait, so the stage fused before it (generation) is not held up; finished
// calls are emitted by later ProcessElement calls, the rest in FinishBundle,
// every pair once, each call holding pairs of one padded length only.
func TestProcessElementDoesNotWaitForTheDevice(t *testing.T) {
	release := make(chan struct{})
	var calls [][]string
	started := make(chan struct{}, 100)
	o := opts()
	o.Batch = 2
	var sh *shared
	b := newBundle(t, o, func(in []dpo.Input) ([]dpo.Output, error) {
		started <- struct{}{}
		<-release
		var c []string
		for _, p := range in {
			t, _ := sh.padClass(p)
			c = append(c, fmt.Sprintf("%s@%d", p.PairID, t))
		}
		calls = append(calls, c)
		return fakeOutputs(in), nil
	})
	sh = b.f.sh
	ctx := context.Background()
	ps := testPairs(24)
	by := classes(t, o, ps)
	b.f.StartBundle(ctx, b.emitS, b.emitD)
	// One batch in the device, queueDepth waiting: 1+queueDepth full
	// batches of one padded length go in without blocking.
	var long []schemas.Pair
	for _, cp := range by {
		if len(cp) >= 2*(1+queueDepth) {
			long = cp
		}
	}
	if long == nil {
		t.Fatal("fixture: no padded length with enough pairs")
	}
	fed := make(chan error)
	go func() {
		for _, p := range long[:o.Batch*(1+queueDepth)] {
			if err := b.f.ProcessElement(ctx, p, b.emitS, b.emitD); err != nil {
				fed <- err
				return
			}
		}
		fed <- nil
	}()
	select {
	case err := <-fed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ProcessElement waited for the device")
	}
	<-started
	close(release)
	for _, p := range ps {
		if contains(long[:o.Batch*(1+queueDepth)], p) {
			continue
		}
		if err := b.f.ProcessElement(ctx, p, b.emitS, b.emitD); err != nil {
			t.Fatal(err)
		}
	}
	early := len(b.sks)
	if err := b.f.FinishBundle(ctx, b.emitS, b.emitD); err != nil {
		t.Fatal(err)
	}
	if early == 0 {
		t.Error("nothing was emitted before FinishBundle")
	}
	var got []string
	for _, s := range b.sks {
		got = append(got, s.PairID)
	}
	sort.Strings(got)
	var want []string
	for _, p := range ps {
		want = append(want, p.PairID)
	}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) || len(b.dead) != 0 {
		t.Fatalf("emitted %v (dead %v), want each of %v once", got, b.dead, want)
	}
	for _, c := range calls {
		if len(c) > o.Batch {
			t.Fatalf("device call %v larger than the batch", c)
		}
		for _, x := range c {
			if x[strings.Index(x, "@"):] != c[0][strings.Index(c[0], "@"):] {
				t.Fatalf("device call %v mixes padded lengths", c)
			}
		}
	}
}

func contains(ps []schemas.Pair, p schemas.Pair) bool {
	for _, q := range ps {
		if q.PairID == p.PairID {
			return true
		}
	}
	return false
}

// TestDeviceFailureFailsTheBundle: a failed device call fails the bundle
// (ProcessElement or FinishBundle returns it), and the next bundle of the
// same instance starts clean.
func TestDeviceFailureFailsTheBundle(t *testing.T) {
	fail := true
	b := newBundle(t, opts(), func(in []dpo.Input) ([]dpo.Output, error) {
		if fail {
			return nil, errors.New("device lost")
		}
		return fakeOutputs(in), nil
	})
	ctx := context.Background()
	ps := testPairs(10)
	run := func() error {
		b.sks, b.dead = nil, nil
		b.f.StartBundle(ctx, b.emitS, b.emitD)
		for _, p := range ps {
			if err := b.f.ProcessElement(ctx, p, b.emitS, b.emitD); err != nil {
				return err
			}
		}
		return b.f.FinishBundle(ctx, b.emitS, b.emitD)
	}
	if err := run(); err == nil || !strings.Contains(err.Error(), "device lost") {
		t.Fatalf("bundle error %v, want the device failure", err)
	}
	fail = false
	if err := run(); err != nil || len(b.sks) != len(ps) {
		t.Fatalf("retry: %v, %d sketches of %d", err, len(b.sks), len(ps))
	}
	b.f.Teardown()
}

// BenchmarkGradientStage compares the transform on Prism with the same
// extraction in a plain loop (the same batches: pairs of one padded length,
// cut into Batch), in one run: the ratio is the Beam overhead of the
// gradient stage. Reported as beam/loop.
func BenchmarkGradientStage(b *testing.B) {
	o := opts()
	o.Spec.K = 1024
	o.Batch = 8
	if err := o.Validate(); err != nil {
		b.Fatal(err)
	}
	ps := testPairs(96)
	x, err := Extractor(o)
	if err != nil {
		b.Fatal(err)
	}
	by := classes(b, o, ps)
	loop := func() {
		for _, cp := range by {
			for s := 0; s < len(cp); s += o.Batch {
				var in []dpo.Input
				for _, p := range cp[s:min(s+o.Batch, len(cp))] {
					in = append(in, input(p))
				}
				if _, err := x.Extract(in); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	loop() // compile the graphs outside the timing
	var loopT, beamT time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		loop()
		loopT += time.Since(t0)
		t0 = time.Now()
		p, s := beam.NewPipelineWithRoot()
		sks, _ := Sketches(s, beam.CreateList(s, ps), o)
		passert.Count(s, sks, "sketches", len(ps))
		if err := ptest.Run(p); err != nil {
			b.Fatal(err)
		}
		beamT += time.Since(t0)
	}
	b.ReportMetric(float64(len(ps)*b.N)/loopT.Seconds(), "loop_pairs/s")
	b.ReportMetric(float64(len(ps)*b.N)/beamT.Seconds(), "beam_pairs/s")
	b.ReportMetric(beamT.Seconds()/loopT.Seconds(), "beam/loop")
}
