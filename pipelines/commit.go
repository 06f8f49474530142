package pipelines

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/congrad-beam/congrad/transforms/gradients"
	"github.com/congrad-beam/congrad/transforms/lakeio"
	"github.com/congrad-beam/congrad/transforms/report"
)

// The stages of an output folder. Each owns a set of outputs and has one
// manifest; `congrad run` runs (and commits) all three.
const (
	StageGenerate = "generate"
	StageSketch   = "sketch"
	StageSelect   = "select"
)

var stageOwns = map[string][]string{
	StageGenerate: {OutPairs, OutCandidates, OutDeadGen},
	StageSketch:   {OutSketches, OutDeadSketch},
	StageSelect:   {OutKept, OutDropped, OutDecisions, OutDeadSelect},
}

// totalsKey is the stage's name in the counters and the report's totals.
var totalsKey = map[string]string{StageGenerate: stageGenerate, StageSketch: stageGradients, StageSelect: stageSelect}

// reportFiles are the select stage's non-tabular outputs.
var reportFiles = []string{OutReportDir + "/" + ReportJSON, OutReportDir + "/" + ConflictSVG,
	OutReportDir + "/" + ScoresSVG, OutReportDir + "/" + KeptSVG}

func ownerOf(output string) string {
	for st, outs := range stageOwns {
		for _, o := range outs {
			if o == output {
				return st
			}
		}
	}
	return ""
}

func commandStages(cmd string) []string {
	if cmd == "run" {
		return []string{StageGenerate, StageSketch, StageSelect}
	}
	return []string{cmd}
}

// writes lists the outputs cmd writes for stage (run sends gradient dead
// letters on to select instead of writing dead-sketch).
func writes(cmd, stage string) []string {
	if cmd == "run" && stage == StageSketch {
		return []string{OutSketches}
	}
	return stageOwns[stage]
}

var shardRe = regexp.MustCompile(`^(.+)-(\d{5})-of-(\d{5})\.(parquet|arrow)(\.tmp-[0-9a-f]+)?$`)

// shardOutput returns the output name of a shard file's base name ("pairs"
// for "pairs-00001-of-00004.parquet"), or "" for other names.
func shardOutput(base string) (name string, tmp bool) {
	m := shardRe.FindStringSubmatch(base)
	if m == nil {
		return "", false
	}
	return m[1], m[5] != ""
}

// Job is one congrad command's hold on its output folder: the lock, the
// checked inputs and the manifests it writes. A nil *Job (a dry run) does
// nothing.
//
//	j, err := OpenJob(ctx, "select", JobOptions{Out: out})   // lock, check input manifests
//	defer j.Close()
//	j.Apply(&cfg)                                            // resolved inputs, upstream totals
//	j.Start(ctx, cfg)                                        // manifests -> running
//	res, err := runners.Run(...)                             // (j.Fail on error)
//	j.Commit(ctx, cfg, res)                                  // stale files out, manifests -> committed
type Job struct {
	Command string
	RunID   string
	Inputs  map[string]InputRef // "pairs", "sketches": what the stage reads

	out       string
	argv      string
	lock      *Lock
	started   time.Time
	resolved  map[string]string    // output -> glob to read (default inputs)
	sources   map[string]*Manifest // output -> the manifest its files come from
	sourceDir map[string]string
}

// JobOptions are what OpenJob needs from the command line.
type JobOptions struct {
	Out      string
	Pairs    string    // explicit --pairs glob ("" = the pairs of Out's manifest)
	Sketches string    // explicit --sketches glob
	Anchor   string    // --anchor glob (select, run): pair or sketch files of the anchor gate
	Argv     string    // the command line, for the lock file
	Warn     io.Writer // stale-lock take-overs, unmanifested inputs
}

// OpenJob locks o.Out for cmd (run, generate, sketch, select) and checks the
// inputs cmd reads against their manifests (ResolveInput); select also
// checks that its sketches were computed from the pairs it reads.
func OpenJob(ctx context.Context, cmd string, o JobOptions) (*Job, error) {
	out := strings.TrimSuffix(o.Out, "/")
	j := &Job{Command: cmd, RunID: newRunID(), Inputs: map[string]InputRef{}, out: out, argv: o.Argv,
		started: time.Now().UTC(), resolved: map[string]string{}, sources: map[string]*Manifest{}, sourceDir: map[string]string{}}
	argv := o.Argv
	if argv == "" {
		argv = "congrad " + cmd
	}
	lock, err := AcquireLock(ctx, out, argv, j.RunID, o.Warn)
	if err != nil {
		return nil, err
	}
	j.lock = lock
	var ins []struct{ name, glob, flag string }
	switch cmd {
	case "sketch":
		ins = append(ins, struct{ name, glob, flag string }{OutPairs, o.Pairs, "--pairs"})
	case "select":
		ins = append(ins, struct{ name, glob, flag string }{OutPairs, o.Pairs, "--pairs"},
			struct{ name, glob, flag string }{OutSketches, o.Sketches, "--sketches"})
	}
	for _, in := range ins {
		ref, m, dir, glob, err := ResolveInput(ctx, out, in.name, in.glob, in.flag, o.Warn)
		if err != nil {
			j.Close()
			return nil, err
		}
		j.Inputs[in.name], j.sources[in.name], j.sourceDir[in.name] = ref, m, dir
		if in.glob == "" {
			j.resolved[in.name] = glob
		}
	}
	if o.Anchor != "" && (cmd == "select" || cmd == "run") {
		if err := j.resolveAnchor(ctx, o.Anchor, o.Warn); err != nil {
			j.Close()
			return nil, err
		}
	}
	if cmd == "select" {
		if err := j.checkSketchesMatchPairs(); err != nil {
			j.Close()
			return nil, err
		}
	}
	return j, nil
}

// checkSketchesMatchPairs refuses sketches whose manifest says they were
// computed from other pairs than the ones select reads.
func (j *Job) checkSketchesMatchPairs() error {
	sm := j.sources[OutSketches]
	if sm == nil {
		return nil // sketches without a manifest: nothing to compare
	}
	from, ok := sm.Inputs[OutPairs]
	pairs := j.Inputs[OutPairs]
	if !ok || from.Digest == pairs.Digest {
		return nil
	}
	return fmt.Errorf("%w: --sketches %s were computed from other pairs (%s) than --pairs reads (%s): rerun `congrad sketch` on these pairs, or point --pairs and --sketches at files of the same run",
		ErrManifest, j.Inputs[OutSketches].Glob, describeRef(from), describeRef(pairs))
}

func describeRef(r InputRef) string {
	s := fmt.Sprintf("%d files, digest %.12s", r.Files, r.Digest)
	if r.RunID != "" {
		s = fmt.Sprintf("run %s, %s", r.RunID, s)
	}
	return s
}

// SketchSettings returns the sketch stage's settings recorded with the
// sketches select reads (flag name -> value) and where they come from; nil
// when the sketches have no manifest.
func (j *Job) SketchSettings() (map[string]string, string) {
	if j == nil {
		return nil, ""
	}
	m := j.sources[OutSketches]
	if m == nil {
		return nil, ""
	}
	return m.Settings, joinPath(j.sourceDir[OutSketches], ManifestName(StageSketch))
}

// Apply points c's default inputs at the files the manifests vouched for
// (their format may differ from c.Format) and gives select the totals of
// the stages before it.
func (j *Job) Apply(c *Config) {
	if j == nil {
		return
	}
	if g, ok := j.resolved[OutPairs]; ok {
		c.Pairs = g
	}
	if g, ok := j.resolved[OutSketches]; ok {
		c.Sketches = g
	}
	if j.Command != "select" {
		return
	}
	c.Upstream = nil
	for _, in := range []string{OutPairs, OutSketches} {
		m := j.sources[in]
		if m == nil {
			continue
		}
		key := totalsKey[m.Stage]
		outs := make([]string, 0, len(m.Totals[key]))
		for k := range m.Totals[key] {
			outs = append(outs, k)
		}
		sort.Strings(outs)
		for _, k := range outs {
			c.Upstream = append(c.Upstream, report.Count{Stage: key, Lang: "*", Outcome: k, N: m.Totals[key][k]})
		}
	}
}

func (j *Job) manifest(stage, state string, c Config) *Manifest {
	host, _ := os.Hostname()
	return &Manifest{Version: manifestVersion, Stage: stage, State: state, RunID: j.RunID, Command: j.Command,
		Host: host, PID: os.Getpid(), Started: j.started.Format(time.RFC3339), Options: c.Options}
}

// Start marks the manifests of every stage cmd writes as running, before
// any output is touched: from here until Commit the folder's outputs of
// those stages read as incomplete.
func (j *Job) Start(ctx context.Context, c Config) error {
	if j == nil {
		return nil
	}
	for _, st := range commandStages(j.Command) {
		if err := writeManifest(ctx, j.out, j.manifest(st, StateRunning, c)); err != nil {
			return fmt.Errorf("start %s: %w", st, err)
		}
	}
	if isLocalPath(j.out) {
		// Temporary manifests of a run killed while writing one.
		left, _ := filepath.Glob(filepath.Join(j.out, "_MANIFEST-*.json.tmp-*"))
		for _, f := range left {
			os.Remove(f)
		}
	}
	faultPoint("started")
	return nil
}

// Fail records a failed run in the manifests (best effort; they already
// read as incomplete).
func (j *Job) Fail(ctx context.Context, c Config, err error) {
	if j == nil {
		return
	}
	for _, st := range commandStages(j.Command) {
		m := j.manifest(st, StateFailed, c)
		m.Error = err.Error()
		m.Finished = time.Now().UTC().Format(time.RFC3339)
		writeManifest(ctx, j.out, m)
	}
}

// Commit runs after the pipeline succeeded: per stage, it removes the
// files of the stage's outputs that this run did not write (the other
// format, other shard counts, temporary files), hashes and counts every
// output file, and writes the committed manifest last.
func (j *Job) Commit(ctx context.Context, c Config, res beam.PipelineResult) error {
	if j == nil {
		return nil
	}
	totals := metricTotals(res)
	if err := j.recheckAnchor(ctx); err != nil {
		return err
	}
	pairsFiles := []FileEntry(nil)
	var sketchFiles []FileEntry
	for _, st := range commandStages(j.Command) {
		var want []string
		for _, o := range writes(j.Command, st) {
			for i := 0; i < c.Shards; i++ {
				want = append(want, lakeio.ShardName(o, i, c.Shards, c.format()))
			}
		}
		if err := removeStale(ctx, c.Out, stageOwns[st], want); err != nil {
			return fmt.Errorf("commit %s: %w", st, err)
		}
		faultPoint("commit-" + st + "-files")
		m := j.manifest(st, StateCommitted, c)
		m.Outputs = map[string]OutputSummary{}
		// Counting a remote shard's rows copies it to a temporary file
		// first (hashFile), so remote outputs are hashed one at a time:
		// the temporary disk a commit needs stays one shard.
		workers := hashWorkers
		if !isLocalPath(c.Out) {
			workers = 1
		}
		files := make([]FileEntry, len(want))
		err := eachIndex(len(want), workers, func(i int) error {
			rel := want[i]
			name, _ := shardOutput(rel)
			size, sum, rows, err := hashFile(ctx, joinPath(c.Out, rel), true)
			if err != nil {
				return fmt.Errorf("commit %s: output %s: %w", st, rel, err)
			}
			files[i] = FileEntry{Path: rel, Output: name, Size: size, SHA256: sum, Rows: rows}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range files {
			m.Files = append(m.Files, e)
			s := m.Outputs[e.Output]
			s.Format, s.Shards, s.Files, s.Rows = string(c.format()), c.Shards, s.Files+1, s.Rows+*e.Rows
			m.Outputs[e.Output] = s
		}
		if st == StageSelect {
			for _, rel := range reportFiles {
				size, sum, _, err := hashFile(ctx, joinPath(c.Out, rel), false)
				if err != nil {
					return fmt.Errorf("commit %s: output %s: %w", st, rel, err)
				}
				m.Files = append(m.Files, FileEntry{Path: rel, Output: OutReportDir, Size: size, SHA256: sum})
			}
			m.Outputs[OutReportDir] = OutputSummary{Files: len(reportFiles)}
		}
		if t := totals[totalsKey[st]]; len(t) > 0 {
			m.Totals = map[string]map[string]int64{totalsKey[st]: t}
		}
		m.Inputs = map[string]InputRef{}
		switch st {
		case StageGenerate:
			m.Inputs["prompts"] = InputRef{Glob: c.Prompts}
			pairsFiles = filesOf(m, OutPairs)
		case StageSketch:
			m.Settings = SketchSettings(c.Gradients)
			sketchFiles = filesOf(m, OutSketches)
		}
		if st != StageGenerate {
			if ref, ok := j.Inputs[OutPairs]; ok {
				m.Inputs[OutPairs] = ref
			} else {
				m.Inputs[OutPairs] = InputRef{Glob: c.Glob(OutPairs), Stage: StageGenerate, RunID: j.RunID, Files: len(pairsFiles), Digest: digest(pairsFiles)}
			}
		}
		if st == StageSelect {
			if ref, ok := j.Inputs[InputAnchor]; ok {
				m.Inputs[InputAnchor] = ref
			}
			if ref, ok := j.Inputs[OutSketches]; ok {
				m.Inputs[OutSketches] = ref
			} else {
				m.Inputs[OutSketches] = InputRef{Glob: c.Glob(OutSketches), Stage: StageSketch, RunID: j.RunID, Files: len(sketchFiles), Digest: digest(sketchFiles)}
			}
		}
		m.Finished = time.Now().UTC().Format(time.RFC3339)
		faultPoint("commit-" + st + "-manifest")
		if err := writeManifest(ctx, c.Out, m); err != nil {
			return fmt.Errorf("commit %s: %w", st, err)
		}
	}
	return nil
}

// Close releases the lock.
func (j *Job) Close() error {
	if j == nil {
		return nil
	}
	return j.lock.Release()
}

func filesOf(m *Manifest, output string) []FileEntry {
	var out []FileEntry
	for _, f := range m.Files {
		if f.Output == output {
			out = append(out, f)
		}
	}
	return out
}

// SketchSettings are the sketch stage's settings under their flag names:
// everything a sketch's values depend on. Select reads them from the
// sketches' manifest instead of its own flags.
func SketchSettings(g gradients.Options) map[string]string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return map[string]string{
		"model": g.Model, "beta": f(g.Beta), "alpha": f(g.Alpha), "lora_rank": strconv.Itoa(g.LoRARank),
		"max_len": strconv.Itoa(g.MaxLen), "steps": strconv.Itoa(g.Steps), "batch": strconv.Itoa(g.Batch),
		"sketch": string(g.Spec.Method), "k": strconv.Itoa(g.Spec.K),
		"sketch_seed": strconv.FormatUint(g.Spec.Seed, 10),
	}
}

// metricTotals sums the congrad.progress counters ("<stage>/<outcome>") by
// stage and outcome; empty where the runner reports no metrics.
func metricTotals(res beam.PipelineResult) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	if res == nil {
		return out
	}
	for _, c := range res.Metrics().AllMetrics().Counters() {
		if c.Key.Namespace != "congrad.progress" {
			continue
		}
		st, outcome, ok := strings.Cut(c.Key.Name, "/")
		if !ok {
			continue
		}
		if out[st] == nil {
			out[st] = map[string]int64{}
		}
		out[st][outcome] += c.Result()
	}
	return out
}

// removeStale deletes the shard files of outputs under dir that are not in
// want: the other format, another shard count, temporary files. lakeio
// already removes other shard counts of its own format; the format switch
// (--format=arrow over a Parquet run) is left to here.
func removeStale(ctx context.Context, dir string, outputs, want []string) error {
	keep := map[string]bool{}
	for _, w := range want {
		keep[w] = true
	}
	for _, o := range outputs {
		files, err := lakeio.Match(ctx, joinPath(dir, o)+"-*")
		if err != nil {
			return err
		}
		for _, f := range files {
			base := path.Base(f)
			if name, _ := shardOutput(base); name != o || keep[base] {
				continue
			}
			if err := removeFile(ctx, f); err != nil {
				return fmt.Errorf("remove stale %s: %w", f, err)
			}
		}
	}
	return nil
}

// faultPoint kills this process (SIGKILL, no cleanup) when CONGRAD_FAULT
// names the point: the chaos test's way to stop a run between two steps of
// the commit protocol.
func faultPoint(name string) {
	if os.Getenv("CONGRAD_FAULT") != name {
		return
	}
	p, _ := os.FindProcess(os.Getpid())
	p.Kill()
	select {}
}
