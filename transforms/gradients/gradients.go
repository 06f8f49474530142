// Package gradients is the per-pair gradient stage as a Beam transform: each
// preference pair's LP-DPO gradient at the model M_t, sketched on the device
// (gpu/dpo), leaves as a schemas.Sketch with the pair's loss, z and reference
// log-probabilities. Full gradients never reach Beam.
//
//	sketches, dead := gradients.Sketches(s, pairs, gradients.Options{Model: "tiny", Spec: spec})
//
// The model is loaded once per worker process (model.Open's process-wide
// cache) and one Extractor per option set is shared by every DoFn instance.
// Batches are formed deterministically: pairs are grouped into Buckets by a
// hash of their id and each group is sorted by id and cut into Batch-sized
// device calls, so the same pairs always share a batch and a rerun gives
// byte-identical sketches whatever the runner's bundling.
package gradients

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/gpu/dpo"
	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/schemas"
)

// Stage names this stage in dead-letter rows.
const Stage = "gradients"

// Options configure the stage. Zero values take the defaults noted.
type Options struct {
	Model    string      // model.Open reference: "tiny" (default), "tiny:seed=N" or a checkpoint dir
	Spec     sketch.Spec // sketch contract (default sketch.DefaultSpec())
	Beta     float64     // DPO β (default 0.1)
	Alpha    float64     // length-margin α (default 0)
	LoRARank int         // LoRA rank (default 8)
	MaxLen   int         // tokens per sequence (default: the model's, at most 512)
	Batch    int         // pairs per device call (default 8)
	Buckets  int         // hash groups that batches are cut from (default 16)
	Steps    int         // mini-batch steps τ assigned by id hash, for the ema aggregate (default 16)
}

// Validate fills defaults and checks the options.
func (o *Options) Validate() error {
	if o.Model == "" {
		o.Model = "tiny"
	}
	if o.Spec == (sketch.Spec{}) {
		o.Spec = sketch.DefaultSpec()
	}
	if err := o.Spec.Validate(); err != nil {
		return fmt.Errorf("gradients: %w", err)
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.Buckets == 0 {
		o.Buckets = 16
	}
	if o.Steps == 0 {
		o.Steps = 16
	}
	if o.Batch < 1 || o.Buckets < 1 || o.Steps < 1 || o.MaxLen < 0 || o.LoRARank < 0 {
		return fmt.Errorf("gradients: batch=%d buckets=%d steps=%d max_len=%d lora_rank=%d: want positive values",
			o.Batch, o.Buckets, o.Steps, o.MaxLen, o.LoRARank)
	}
	return nil
}

func (o Options) dpo() dpo.Options {
	return dpo.Options{Beta: o.Beta, Alpha: o.Alpha, LoRA: model.LoRAOptions{Rank: o.LoRARank},
		MaxLen: o.MaxLen, Batch: o.Batch, Sketch: o.Spec}
}

// Sketches computes one sketch per pair; pairs that cannot be processed
// (too long, empty, non-finite loss, ...) become dead letters with the reason.
//
//	PCollection<schemas.Pair> -> (PCollection<schemas.Sketch>, PCollection<schemas.DeadLetter>)
func Sketches(s beam.Scope, pairs beam.PCollection, opts Options) (sketches, dead beam.PCollection) {
	s = s.Scope("gradients.Sketches")
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if t := pairs.Type().Type(); t != reflect.TypeOf(schemas.Pair{}) {
		panic(fmt.Sprintf("gradients.Sketches: input must be PCollection<schemas.Pair>, got %v", t))
	}
	groups := beam.GroupByKey(s, beam.ParDo(s, &bucketFn{Buckets: opts.Buckets}, pairs))
	return beam.ParDo2(s, &extractFn{Opts: opts}, groups)
}

func hash(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

type bucketFn struct{ Buckets int }

func (f *bucketFn) ProcessElement(p schemas.Pair) (int, schemas.Pair) {
	return int(hash(p.PairID) % uint64(f.Buckets)), p
}

// extractors holds one Extractor per option set per process: DoFn instances
// are many, the model and its compiled graphs should exist once.
var extractors struct {
	sync.Mutex
	m map[string]*dpo.Extractor
}

// Extractor returns the process-wide extractor for opts.
func Extractor(opts Options) (*dpo.Extractor, error) {
	key, _ := json.Marshal(opts)
	extractors.Lock()
	defer extractors.Unlock()
	if x, ok := extractors.m[string(key)]; ok {
		return x, nil
	}
	m, err := model.Open(opts.Model)
	if err != nil {
		return nil, fmt.Errorf("gradients: open model %q: %w", opts.Model, err)
	}
	x, err := dpo.NewExtractor(m, opts.dpo())
	if err != nil {
		return nil, fmt.Errorf("gradients: extractor for %q: %w", opts.Model, err)
	}
	if extractors.m == nil {
		extractors.m = map[string]*dpo.Extractor{}
	}
	extractors.m[string(key)] = x
	return x, nil
}

type extractFn struct {
	Opts Options
	x    *dpo.Extractor
}

func (f *extractFn) Setup() error {
	x, err := Extractor(f.Opts)
	f.x = x
	return err
}

// pairLess is a total order on pairs: id first, then the fields that make
// two rows with one id differ.
func pairLess(a, b schemas.Pair) bool {
	for _, c := range [][2]string{{a.PairID, b.PairID}, {a.Lang, b.Lang}, {a.Prompt, b.Prompt},
		{a.Chosen, b.Chosen}, {a.Rejected, b.Rejected}, {a.PromptID, b.PromptID}} {
		if c[0] != c[1] {
			return c[0] < c[1]
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (f *extractFn) ProcessElement(ctx context.Context, _ int, it func(*schemas.Pair) bool,
	emit func(schemas.Sketch), dead func(schemas.DeadLetter)) error {
	var ps []schemas.Pair
	var p schemas.Pair
	for it(&p) {
		ps = append(ps, p)
	}
	// Order by id, then by content: when two rows share a pair id, the one
	// extracted (and the one dead-lettered) must not depend on the order the
	// runner delivered them in.
	sort.Slice(ps, func(i, j int) bool { return pairLess(ps[i], ps[j]) })
	byID := map[string]schemas.Pair{}
	var in []dpo.Input
	for _, p := range ps {
		if _, dup := byID[p.PairID]; dup {
			// The select stage reports duplicated ids; here the pair is
			// simply not extracted twice.
			f.deadLetter(ctx, dead, p, "duplicate pair_id in gradient stage")
			continue
		}
		byID[p.PairID] = p
		in = append(in, dpo.Input{PairID: p.PairID, Prompt: p.Prompt, Chosen: p.Chosen, Rejected: p.Rejected})
	}
	for start := 0; start < len(in); start += f.Opts.Batch {
		batch := in[start:min(start+f.Opts.Batch, len(in))]
		outs, err := f.x.Extract(batch)
		if err != nil {
			return fmt.Errorf("gradients: batch of %d pairs starting at %s: %w", len(batch), batch[0].PairID, err)
		}
		for _, o := range outs {
			p := byID[o.PairID]
			if o.Err != "" {
				f.deadLetter(ctx, dead, p, o.Err)
				continue
			}
			if vec.CheckFinite(o.Sketch) != nil || math.IsNaN(o.Loss) || math.IsInf(o.Loss, 0) {
				f.deadLetter(ctx, dead, p, "non-finite gradient sketch or loss")
				continue
			}
			beam.NewCounter("congrad.gradients", "sketches."+p.Lang).Inc(ctx, 1)
			emit(schemas.Sketch{PairID: p.PairID, Lang: p.Lang, Step: int64(hash("step:"+p.PairID) % uint64(f.Opts.Steps)),
				Values: o.Sketch, Norm: vec.Norm(o.Sketch), Loss: o.Loss, Z: o.Z,
				RefChosenLogp: o.RefChosenLogp, RefRejectedLogp: o.RefRejectedLogp,
				ChosenTokens: o.ChosenTokens, RejectedTokens: o.RejectedTokens})
		}
	}
	return nil
}

func (f *extractFn) deadLetter(ctx context.Context, dead func(schemas.DeadLetter), p schemas.Pair, reason string) {
	beam.NewCounter("congrad.gradients", "dead."+p.Lang).Inc(ctx, 1)
	dead(schemas.DeadLetter{Stage: Stage, Source: p.PairID, Row: -1, Reason: reason,
		Payload: truncate(fmt.Sprintf("lang=%s prompt=%q chosen=%q rejected=%q", p.Lang, p.Prompt, p.Chosen, p.Rejected), 600)})
}

func init() {
	register.DoFn1x2[schemas.Pair, int, schemas.Pair](&bucketFn{})
	register.DoFn5x1[context.Context, int, func(*schemas.Pair) bool, func(schemas.Sketch), func(schemas.DeadLetter), error](&extractFn{})
	register.Iter1[*schemas.Pair]()
	register.Emitter1[schemas.Sketch]()
	register.Emitter1[schemas.DeadLetter]()
	beam.RegisterType(reflect.TypeOf(schemas.Pair{}))
	beam.RegisterType(reflect.TypeOf(schemas.Sketch{}))
	beam.RegisterType(reflect.TypeOf(schemas.DeadLetter{}))
}
