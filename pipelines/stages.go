package pipelines

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/filter"
	"github.com/congrad-beam/congrad/transforms/gradients"
	"github.com/congrad-beam/congrad/transforms/lakeio"
	"github.com/congrad-beam/congrad/transforms/report"
	"github.com/congrad-beam/congrad/transforms/selfreward"
)

// Config is one ConGrad job: where it reads, where it writes, and the
// options of every stage. Globs and Out may be local paths, gs:// or memfs://.
type Config struct {
	Prompts  string // prompt glob (generate, run)
	Pairs    string // pair glob (sketch, select); default Out's pairs
	Sketches string // sketch glob (select); default Out's sketches
	Out      string // output directory

	Format string // parquet (default) | arrow
	Shards int    // files per output (default 4)
	// SpillDir: a local directory for the writers' shard batches
	// (lakeio.WriteOptions.SpillDir); set it only when every worker runs on
	// this machine. The CLI does so for Prism in-process and LOOPBACK.
	SpillDir string

	SelfReward selfreward.Options
	Gradients  gradients.Options
	Select     SelectOptions

	// Options is the run's configuration as the user gave it, copied into
	// report.json.
	Options map[string]string

	// Upstream are the totals of the stages before a staged select (from
	// their manifests, see Job.Apply); the select report carries them.
	Upstream []report.Count
}

// Output names: each is a lakeio prefix under Out ("<Out>/kept-00000-of-00004.parquet").
const (
	OutPairs       = "pairs"
	OutCandidates  = "candidates"
	OutSketches    = "sketches"
	OutDecisions   = "decisions"
	OutKept        = "kept"
	OutDropped     = "dropped"
	OutDeadGen     = "dead-generate"
	OutDeadSketch  = "dead-sketch"
	OutDeadSelect  = "dead-select"
	OutReportDir   = "report"
	stageGenerate  = "generate"
	stageGradients = "gradients"
	stageSelect    = "select"
)

// Validate fills defaults and checks the stage options before construction.
func (c *Config) Validate() error {
	if c.Out == "" {
		return fmt.Errorf("config: an output directory (--out) is required")
	}
	c.Out = strings.TrimSuffix(c.Out, "/")
	if c.Shards == 0 {
		c.Shards = 4
	}
	if c.Shards < 1 {
		return fmt.Errorf("config: shards=%d: want >= 1", c.Shards)
	}
	switch c.Format {
	case "", "parquet", "arrow":
	default:
		return fmt.Errorf("config: format %q: want parquet or arrow", c.Format)
	}
	if c.SpillDir != "" && (!filepath.IsAbs(c.SpillDir) || strings.Contains(c.SpillDir, "://")) {
		return fmt.Errorf("config: spill dir %q: want an absolute local path", c.SpillDir)
	}
	if err := c.Gradients.Validate(); err != nil {
		return err
	}
	if c.Select.Spec.K == 0 {
		c.Select.Spec = c.Gradients.Spec
	}
	if c.Select.Spec != c.Gradients.Spec {
		return fmt.Errorf("config: select spec %v differs from gradients spec %v", c.Select.Spec, c.Gradients.Spec)
	}
	if err := c.Select.Validate(); err != nil {
		return err
	}
	if c.Options == nil {
		c.Options = map[string]string{}
	}
	return nil
}

func (c *Config) prefix(name string) string { return c.Out + "/" + name }

func (c *Config) format() lakeio.Format {
	if c.Format == "arrow" {
		return lakeio.ArrowIPC
	}
	return lakeio.Parquet
}

func (c *Config) write(s beam.Scope, name string, col beam.PCollection) beam.PCollection {
	o := lakeio.WriteOptions{Format: c.format(), Shards: c.Shards, SpillDir: c.SpillDir}
	if col.Type().Type() == reflect.TypeOf(schemas.Sketch{}) {
		o.SketchK, o.SketchSpec = c.Gradients.Spec.K, c.Gradients.Spec.String()
	}
	if col.Type().Type() == reflect.TypeOf(schemas.Decision{}) {
		o.DecisionAudit = c.Select.Audited() // issue-13 method options: audit columns
	}
	return lakeio.Write(s, c.prefix(name), col, o)
}

// Glob returns the glob matching the files of output name under Out. It
// uses "*", not lakeio.ShardGlob's "?????": Beam's GCS List (v2.77) derives
// its listing prefix from the first "*" only, so a "?" glob lists nothing
// on gs://. No two output names here share a prefix up to "-".
func (c *Config) Glob(name string) string { return c.prefix(name) + "-*" + c.format().Ext() }

// generate reads prompts and forms pairs; it writes pairs, candidates and
// the stage's dead letters and counts.
func generate(s beam.Scope, c *Config, cnt *Counter) (pairs beam.PCollection, dead beam.PCollection) {
	prompts, bad := lakeio.ReadPrompts(s, c.Prompts, lakeio.ReadOptions{})
	pairs, cands, dropped := selfreward.Pairs(s, prompts, c.SelfReward)
	dead = beam.Flatten(s, bad, dropped)
	cnt.Add(stageGenerate, "prompts_read", prompts)
	cnt.Add(stageGenerate, "rows_unreadable", bad)
	cnt.Add(stageGenerate, "pairs", pairs)
	cnt.Add(stageGenerate, "prompts_dropped_or_dead", dropped)
	c.write(s, OutPairs, pairs)
	c.write(s, OutCandidates, cands)
	c.write(s, OutDeadGen, dead)
	return pairs, dead
}

// sketchStage computes sketches of pairs and writes them.
func sketchStage(s beam.Scope, c *Config, pairs beam.PCollection, cnt *Counter) (sketches, dead beam.PCollection) {
	sketches, dead = gradients.Sketches(s, pairs, c.Gradients)
	cnt.Add(stageGradients, "pairs_in", pairs)
	cnt.Add(stageGradients, "sketches", sketches)
	cnt.Add(stageGradients, "dead", dead)
	c.write(s, OutSketches, sketches)
	return sketches, dead
}

// selectStage runs Select and writes its outputs and the report.
func selectStage(s beam.Scope, c *Config, pairs, sketches, upstreamFail beam.PCollection, cnt *Counter, extraDead ...beam.PCollection) error {
	// Pairs that failed before select reach Split as failures, so each pair
	// leaves once, as one dead letter with the upstream reason.
	so := c.Select
	so.spillDir = c.SpillDir
	sel, err := selectWithFailures(s, pairs, sketches, upstreamFail, so)
	if err != nil {
		return err
	}
	dead := sel.Dead
	sel.count(cnt, stageSelect, pairs)
	c.write(s, OutKept, sel.Kept)
	c.write(s, OutDropped, sel.Dropped)
	c.write(s, OutDecisions, sel.Decisions)
	c.write(s, OutDeadSelect, dead)
	allDead := append([]beam.PCollection{dead}, extraDead...)
	WriteReport(s, c.prefix(OutReportDir), ReportParts{Consensus: sel.Consensus, Stats: sel.Stats,
		Counts: cnt.Counts(), Reasons: Reasons(s, beam.Flatten(s, allDead...))}, string(c.Select.Keep.Rule), c.Options)
	return nil
}

// BuildGenerate: prompts -> pairs (congrad generate).
func BuildGenerate(s beam.Scope, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Prompts == "" {
		return fmt.Errorf("generate: a prompt glob (--prompts) is required")
	}
	generate(s.Scope("congrad.Generate"), &c, NewCounter(s))
	return nil
}

// BuildSketch: pairs -> sketches (congrad sketch).
func BuildSketch(s beam.Scope, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Pairs == "" {
		c.Pairs = c.Glob(OutPairs)
	}
	s = s.Scope("congrad.Sketch")
	pairs := lakeio.ReadPairs(s, c.Pairs, lakeio.ReadOptions{})
	_, dead := sketchStage(s, &c, pairs, NewCounter(s))
	c.write(s, OutDeadSketch, dead)
	return nil
}

// BuildSelect: pairs + sketches -> kept, dropped, decisions, dead letters,
// report (congrad select).
func BuildSelect(s beam.Scope, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Pairs == "" {
		c.Pairs = c.Glob(OutPairs)
	}
	if c.Sketches == "" {
		c.Sketches = c.Glob(OutSketches)
	}
	// Pairs and sketches are both read from files, in passes and blocks
	// (see selectBlocks): no vector and no per-pair element is kept between
	// stages.
	pairs, err := PairFiles(s, c.Pairs)
	if err != nil {
		return err
	}
	sketches, err := SketchFiles(s, c.Sketches, c.Select)
	if err != nil {
		return err
	}
	cnt := NewCounter(s)
	if len(c.Upstream) > 0 {
		// The totals of the stages before this one, from their manifests.
		cnt.parts = append(cnt.parts, beam.CreateList(s.Scope("congrad.Upstream"), c.Upstream))
	}
	return selectStage(s, &c, pairs, sketches, beam.PCollection{}, cnt)
}

// BuildRun chains generate, sketch and select in one pipeline (congrad run).
// Every prompt ends as a kept or dropped pair or exactly one dead letter.
func BuildRun(s beam.Scope, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Prompts == "" {
		return fmt.Errorf("run: a prompt glob (--prompts) is required")
	}
	cnt := NewCounter(s)
	pairs, genDead := generate(s.Scope("congrad.Generate"), &c, cnt)
	sketches, gradDead := sketchStage(s.Scope("congrad.Sketch"), &c, pairs, cnt)
	if c.Select.Gate == GateAnchor && c.Select.AnchorPairs {
		anchorPairSketches(s.Scope("congrad.AnchorPairs"), &c)
	}
	fails := beam.ParDo(s, deadToFailure, gradDead)
	return selectStage(s, &c, pairs, sketches, fails, cnt, genDead)
}

// anchorPairSketches sketches the anchor pair files (c.Select.Anchor) with
// the run's gradient options (model, loss, LoRA, sketch spec and seed: the
// settings of the run's own sketches) for the anchor gate. They are not
// written and not counted with the run's pairs; a pair the gradient stage
// cannot sketch fails the job (anchorDeadFn).
func anchorPairSketches(s beam.Scope, c *Config) {
	pairs := lakeio.ReadPairs(s, c.Select.Anchor, lakeio.ReadOptions{})
	sketches, dead := gradients.Sketches(s, pairs, c.Gradients)
	beam.ParDo0(s, anchorDeadFn{}, dead)
	c.Select.anchorSketches = sketches
}

// deadToFailure carries a gradient-stage dead letter into select, where the
// pair is dead-lettered once with the upstream reason.
func deadToFailure(d schemas.DeadLetter) filter.Failure {
	return filter.Failure{PairID: d.Source, Reason: d.Stage + ": " + d.Reason}
}
