package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/pipelines"
	"github.com/congrad-beam/congrad/runners"
	sr "github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/transforms/filter"
)

// opts holds the pipeline flags. Flag names follow Beam's snake_case style.
// Each command registers only the flags it uses (newFlags); the fields of
// the others stay zero.
type opts struct {
	config string
	cmd    string

	prompts, pairs, sketches, out, format string
	shards                                int

	r               runners.Options
	svcOptions      string
	seed            uint64
	modelRef        string
	backendURL      string
	backendAPI      string
	backendModel    string
	generator       string
	generatorCorpus string
	requestTimeout  time.Duration
	maxRetries      int
	apiKeyEnv       string
	backendCheck    bool

	n, j, maxTokens, judgeMaxTokens, iteration int
	temperature, topP, minMargin               float64
	rubric, scoreCue                           string
	lengthPenalty, minScoreMass                float64

	sketchMethod                   string
	k                              int
	sketchSeed                     uint64
	beta, alpha                    float64
	loraRank, maxLen, batch, steps int
	aggregate                      string
	gamma, tau, rho                float64
	keepRule                       string
	gate, anchor, score            string
	gateBoot, noiseMinPairs        int
	rankBucketRows                 int
	gateLevel                      float64
	progressEvery                  float64
	quiet                          bool
	fs                             *flag.FlagSet
	help                           io.Writer
}

// tinyRubric is the judge prompt used with the embedded tiny model: its
// byte-level context is 256 tokens, too short for the full default rubric.
const tinyRubric = "Rate the answer from 0 to 5.\nQ: {{prompt}}\nA: {{response}}\n"

// pipelineCommands have flag sets built by newFlags; summaries are shown in
// their --help.
var pipelineCommands = map[string]string{
	"run":      "One whole ConGrad round in one pipeline: prompts -> pairs -> sketches -> kept/dropped pairs + report.",
	"generate": "Prompts -> preference pairs: self-rewarding generation and judging against an OpenAI-compatible server.",
	"sketch":   "Pairs -> per-pair LP-DPO gradient sketches (reads <out>/pairs-* unless --pairs).",
	"select":   "Pairs + sketches -> kept / dropped pairs, decisions, dead letters and the report.",
}

// newFlags registers the flags of cmd (run, generate, sketch or select);
// help is where --help prints.
func newFlags(cmd string, help io.Writer) *opts {
	o := &opts{cmd: cmd, help: help}
	fs := flag.NewFlagSet("congrad "+cmd, flag.ContinueOnError)
	// Errors come back to the caller as one line; --help prints o.usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	o.fs = fs
	gen := cmd == "run" || cmd == "generate"
	grad := cmd == "run" || cmd == "sketch"
	sel := cmd == "run" || cmd == "select"
	fs.StringVar(&o.config, "config", "", "JSON or YAML file of flag values (flag names as keys); command-line flags override it")

	// Lake paths.
	if gen {
		fs.StringVar(&o.prompts, "prompts", "testdata/prompts/*.jsonl", "prompt files (glob: JSONL, Parquet or Arrow; local, gs:// or memfs://)")
	}
	if cmd == "sketch" || cmd == "select" {
		fs.StringVar(&o.pairs, "pairs", "", "pair files (glob); default: <out>/pairs-*")
	}
	if cmd == "select" {
		fs.StringVar(&o.sketches, "sketches", "", "sketch files (glob); default: <out>/sketches-*")
	}
	fs.StringVar(&o.out, "out", "out", "output directory (local, gs:// or memfs://); a local one is created")
	fs.StringVar(&o.format, "format", "parquet", "output file format: parquet | arrow")
	fs.IntVar(&o.shards, "shards", 4, "files per output, 1..10000")
	if gen || sel {
		fs.Uint64Var(&o.seed, "seed", 1, "seed of every random choice (sampling, PCGrad order): same seed, same bytes")
	}

	// Runner.
	fs.StringVar(&o.r.Runner, "runner", "prism", "Beam runner: prism (in-process) | direct | universal (job server, e.g. prism or Flink) | dataflow")
	fs.StringVar(&o.r.Endpoint, "endpoint", "", "job server host:port (universal)")
	fs.StringVar(&o.r.EnvironmentType, "environment_type", "", "SDK environment: LOOPBACK | DOCKER | PROCESS | EXTERNAL (universal default LOOPBACK)")
	fs.StringVar(&o.r.EnvironmentConfig, "environment_config", "", "environment config (container image, process command, or address)")
	fs.StringVar(&o.r.JobName, "job_name", "", "job name")
	fs.StringVar(&o.r.Project, "project", "", "Dataflow: Google Cloud project")
	fs.StringVar(&o.r.Region, "region", "", "Dataflow: region, e.g. us-central1")
	fs.StringVar(&o.r.StagingLocation, "staging_location", "", "Dataflow: gs:// staging path")
	fs.StringVar(&o.r.TempLocation, "temp_location", "", "Dataflow: gs:// temp path (default <staging_location>/tmp)")
	fs.StringVar(&o.r.WorkerMachineType, "worker_machine_type", "", "Dataflow: worker machine type, e.g. g2-standard-8")
	fs.StringVar(&o.r.WorkerAccelerator, "worker_accelerator", "", "Dataflow: GPU, e.g. type:nvidia-l4;count:1;install-nvidia-driver (sent as a dataflow_service_option)")
	fs.StringVar(&o.svcOptions, "dataflow_service_options", "", "Dataflow: extra comma-separated service options")
	fs.StringVar(&o.r.SDKContainerImage, "sdk_container_image", "", "Dataflow: worker container image (deploy/Dockerfile); required with a GPU")
	fs.StringVar(&o.r.WorkerBinary, "worker_binary", "", "Dataflow: prebuilt linux/amd64 congrad binary used as the worker")
	fs.Int64Var(&o.r.NumWorkers, "num_workers", 0, "Dataflow: initial workers, 0..100000 (0: service default)")
	fs.Int64Var(&o.r.MaxNumWorkers, "max_num_workers", 0, "Dataflow: autoscaling limit, 0..100000 (0: service default)")
	fs.BoolVar(&o.r.DryRun, "dry_run", false, "Dataflow: print the job description instead of submitting")

	if gen || grad {
		fs.StringVar(&o.modelRef, "model", "tiny", "model M_t: tiny | tiny:seed=N | a Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)")
	}
	// Generate (self-rewarding).
	if gen {
		fs.StringVar(&o.generatorCorpus, "generator_corpus", "testdata/prompts/answers.tsv", "markov generator: answer lines \"lang<TAB>text\" (with the local prompts: its training text; empty: its built-in corpus)")
		fs.StringVar(&o.backendURL, "backend_url", "", "OpenAI-compatible server (http:// or https://) for generation and judging; empty: serve --generator in-process on 127.0.0.1")
		fs.StringVar(&o.generator, "generator", "markov", "in-process generator when --backend_url is empty: markov (seeded Markov text + overlap judge; the untrained tiny model cannot judge) | model (--model itself)")
		fs.StringVar(&o.backendAPI, "backend_api", "completions", "backend API: completions (/v1/completions, with --score_cue) | chat (/v1/chat/completions; no score cue: the judge's answer is parsed)")
		fs.StringVar(&o.backendModel, "backend_model", "", "model name sent to the backend (default: --model)")
		fs.DurationVar(&o.requestTimeout, "request_timeout", 60*time.Second, "time limit of one backend request attempt, 1ms..24h")
		fs.IntVar(&o.maxRetries, "max_retries", 4, "retries of a failed backend request (refused, 5xx, 429, timeout, malformed), exponential backoff from 0.5s, 0..20")
		fs.StringVar(&o.apiKeyEnv, "api_key_env", "OPENAI_API_KEY", "environment variable holding the backend's API key, sent as 'Authorization: Bearer' (never logged or stored); unset or empty: no key")
		fs.BoolVar(&o.backendCheck, "backend_check", true, "send one one-token test request to --backend_url before the pipeline starts")
		fs.IntVar(&o.n, "n", 4, "candidates per prompt, 2..128")
		fs.IntVar(&o.j, "j", 3, "judgments per candidate, 1..64")
		fs.Float64Var(&o.temperature, "temperature", 0.7, "candidate and judge sampling temperature, 0..2 (0: greedy)")
		fs.Float64Var(&o.topP, "top_p", 0.9, "candidate and judge nucleus sampling, (0, 1]")
		fs.IntVar(&o.maxTokens, "max_tokens", 48, "candidate length limit in tokens, 1..131072")
		fs.IntVar(&o.judgeMaxTokens, "judge_max_tokens", 4, "judge answer length limit in tokens, 1..131072")
		fs.Float64Var(&o.minMargin, "min_margin", 1.0, "drop prompts whose best-worst judge margin is below this, 0..5 (0: any strict preference)")
		fs.StringVar(&o.rubric, "rubric", "", "judge prompt template with {{prompt}} and {{response}} (default: the built-in rubric; a short one for --generator=model --model=tiny)")
		fs.StringVar(&o.scoreCue, "score_cue", "Score: ", "start of the judge's answer (completions API only; ignored with --backend_api=chat): the score is then the first token")
		fs.Float64Var(&o.lengthPenalty, "length_penalty", 0, "score points subtracted per 100 response tokens, 0..5")
		fs.Float64Var(&o.minScoreMass, "min_score_mass", 0.5, "least probability the score tokens 0..5 must carry for the probability-weighted score (else the parsed number), 0..1")
		fs.IntVar(&o.iteration, "iteration", 0, "self-rewarding round t, stored with every pair, 0..1000000")
	}

	// Sketch (gradients); select needs the sketch contract to check its input.
	if grad || sel {
		fs.StringVar(&o.sketchMethod, "sketch", "countsketch", "sketch method: countsketch | gaussian")
		fs.IntVar(&o.k, "k", 8192, "sketch dimension, 1..1048576")
		fs.Uint64Var(&o.sketchSeed, "sketch_seed", 0, "seed of the sketch matrix (part of the sketch contract, not --seed)")
	}
	if grad {
		fs.Float64Var(&o.beta, "beta", 0.1, "DPO beta, (0, 100]")
		fs.Float64Var(&o.alpha, "alpha", 0, "LP-DPO length-margin weight, 0..100 (0: plain DPO)")
		fs.IntVar(&o.loraRank, "lora_rank", 8, "LoRA rank of the adapters whose gradients are sketched, 1..4096")
		fs.IntVar(&o.maxLen, "max_len", 0, "tokens per sequence, 0..131072 (0: the model's limit, at most 512)")
		fs.IntVar(&o.batch, "batch", 8, "pairs per device call, 1..4096")
		fs.IntVar(&o.steps, "steps", 16, "mini-batch steps assigned by pair-id hash (ema aggregate), 1..1048576")
	}

	// Select.
	if sel {
		fs.StringVar(&o.aggregate, "aggregate", "mean", "per-language direction: mean | ema")
		fs.Float64Var(&o.gamma, "gamma", 0.9, "ema decay, (0, 1)")
		fs.StringVar(&o.keepRule, "keep", "positive", "keep rule: positive (score > tau) | top (best rho per language) | global-top | noise-aware (score > tau_l fitted per language, METHOD.md §8.1)")
		fs.Float64Var(&o.tau, "tau", 0, "positive rule threshold on the cosine score, -1..1; noise-aware: the fallback tau of a language whose fit is unusable")
		fs.Float64Var(&o.rho, "rho", 0.5, "fraction kept by top and global-top, (0, 1]")
		fs.StringVar(&o.gate, "gate", "none", "language gate: none | leave-out (CI of cos(G_l, other languages) below 0; pairs scored against g*_{-l}) | anchor (CI of cos(G_l, --anchor) below 0; METHOD.md §8.2-8.3)")
		anchorHelp := "trusted dev pairs of --gate=anchor (glob): their sketches' mean is the anchor. Pair files (Parquet or Arrow, as --pairs), sketched in this run with its model, sketch spec and seed, or their sketch files (congrad sketch with the same settings); told apart by their columns"
		if cmd == "select" {
			anchorHelp = "trusted dev pairs of --gate=anchor: their sketch files (glob), written by congrad sketch with the model and sketch settings of --sketches; their mean is the anchor. Pair files need the model: use congrad run --anchor, or congrad sketch them first"
		}
		fs.StringVar(&o.anchor, "anchor", "", anchorHelp)
		boot, noise := gate.DefaultBootOptions(), gate.DefaultNoiseOptions()
		fs.IntVar(&o.gateBoot, "gate_boot", boot.B, fmt.Sprintf("bootstrap resamples B of the gate's interval (--gate=leave-out|anchor), 10..%d", pipelines.MaxGateBoot))
		fs.Float64Var(&o.gateLevel, "gate_level", boot.Level, "two-sided confidence level of the gate's interval (--gate=leave-out|anchor), (0, 1)")
		fs.IntVar(&o.noiseMinPairs, "noise_min_pairs", noise.MinPairs, fmt.Sprintf("--keep=noise-aware: fewest finite scores a language needs for its fit (fewer: the language keeps --tau), 2..%d", pipelines.MaxNoiseMinPairs))
		fs.IntVar(&o.rankBucketRows, "rank_bucket_rows", filter.DefaultRankBucketRows, fmt.Sprintf("pairs one worker ranks at a time; a language with more is ranked in buckets of contiguous score ranges on several workers (memory and parallelism only: the outputs do not change), 1..%d", pipelines.MaxRankBucketRows))
		fs.StringVar(&o.score, "score", "pair", "what is scored: pair | group:N (the summed sketch of about N pairs of one language, hashed by (seed, pair id); every member gets the group's score, METHOD.md §8.4)")
	}

	fs.Float64Var(&o.progressEvery, "progress_every", 2, "seconds between progress lines, 0..86400 (0: off)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	return o
}

// usage prints the command's help: only its own flags.
func (o *opts) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: congrad %s [--flag=value ...]\n\n%s\n\nFlags (default in parentheses):\n", o.cmd, pipelineCommands[o.cmd])
	o.fs.SetOutput(w)
	o.fs.PrintDefaults()
	o.fs.SetOutput(io.Discard)
}

// given reports whether flag name was set on the command line or in --config.
func (o *opts) given(name string) bool {
	set := false
	o.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parse reads args, then the config file for the flags not given on the
// command line. Errors are usage errors (exit 2) on one line; --help prints
// the command's flags to o.help and returns flag.ErrHelp.
func (o *opts) parse(args []string) error {
	err := o.parseArgs(args)
	if err == nil || err == flag.ErrHelp || errors.Is(err, errUsage) {
		return err
	}
	return fmt.Errorf("%w: %s", errUsage, oneLine(err))
}

func (o *opts) parseArgs(args []string) error {
	if err := o.fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			o.usage(o.help)
			return err
		}
		return explainFlagError(o.cmd, err)
	}
	if o.fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, o.fs.Args())
	}
	if o.config == "" {
		return nil
	}
	kv, err := readConfig(o.config)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "config" {
			return fmt.Errorf("config %s: nested config is not supported", o.config)
		}
		if o.fs.Lookup(k) == nil {
			return fmt.Errorf("config %s: %s", o.config, notAFlagOf(o.cmd, k))
		}
		if given[k] {
			continue
		}
		if err := o.fs.Set(k, kv[k]); err != nil {
			return fmt.Errorf("config %s: %s=%q: %w", o.config, k, kv[k], err)
		}
	}
	return nil
}

// readConfig reads a flat JSON object or flat YAML mapping ("key: value"
// lines, # comments, optional quotes) into flag values.
func readConfig(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	out := map[string]string{}
	if strings.HasSuffix(path, ".json") || strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		for k, v := range m {
			switch x := v.(type) {
			case string:
				out[k] = x
			case float64:
				out[k] = strconv.FormatFloat(x, 'g', -1, 64)
			case bool:
				out[k] = strconv.FormatBool(x)
			default:
				return nil, fmt.Errorf("config %s: %s: want a string, number or bool, got %T", path, k, v)
			}
		}
		return out, nil
	}
	for i, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		k, v, ok := strings.Cut(t, ":")
		if !ok || strings.TrimSpace(k) == "" || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			return nil, fmt.Errorf("config %s:%d: want a flat 'key: value' line, got %q", path, i+1, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			if v[0] == '"' {
				uq, err := strconv.Unquote(v)
				if err != nil {
					return nil, fmt.Errorf("config %s:%d: %w", path, i+1, err)
				}
				v = uq
			} else {
				v = v[1 : len(v)-1]
			}
		} else if j := strings.Index(v, " #"); j >= 0 {
			v = strings.TrimSpace(v[:j])
		}
		out[strings.TrimSpace(k)] = v
	}
	return out, nil
}

// pipelineConfig turns the flags into the pipelines' Config. Call validate
// first: it does not repeat the range checks.
func (o *opts) pipelineConfig(backendURL string) (pipelines.Config, error) {
	spec := sketch.DefaultSpec()
	if o.fs.Lookup("k") != nil {
		spec = sketch.Spec{Method: sketch.Method(o.sketchMethod), K: o.k, Seed: o.sketchSeed, Version: sketch.Version}
		if err := spec.Validate(); err != nil {
			return pipelines.Config{}, fmt.Errorf("%w: --sketch/--k: %v", errUsage, err)
		}
	}
	c := pipelines.Config{
		Prompts: o.prompts, Pairs: o.pairs, Sketches: o.sketches, Out: o.out, Format: o.format, Shards: o.shards,
		Options: map[string]string{},
	}
	// effective overrides what a flag's value says where the value used differs.
	effective := map[string]string{}
	if o.fs.Lookup("n") != nil {
		rubric := o.rubric
		if rubric == "" {
			rubric = sr.DefaultRubric
			if o.backendURL == "" && o.generator == "model" && strings.HasPrefix(o.modelRef, "tiny") {
				rubric = tinyRubric
			}
		}
		bm := o.backendModel
		if bm == "" {
			bm = o.modelRef
		}
		cue := o.scoreCue
		if o.backendAPI == "chat" {
			cue = "" // chat cannot prefill the answer; the judge's text is parsed
		}
		maxRetries := o.maxRetries
		if maxRetries == 0 {
			maxRetries = -1 // HTTPConfig: 0 is its default, -1 none
		}
		effective["rubric"], effective["backend_model"], effective["score_cue"] = rubric, bm, cue
		// Exact: the flags carry their defaults, so every zero here was typed.
		c.SelfReward.Core = sr.Options{Exact: true, N: o.n, J: o.j,
			Temperature: o.temperature, TopP: o.topP, MaxTokens: o.maxTokens,
			JudgeTemperature: o.temperature, JudgeTopP: o.topP, JudgeMaxTokens: o.judgeMaxTokens,
			TopLogprobs: sr.DefaultTopLogprobs, MaxPromptChars: sr.DefaultMaxPromptChars,
			MinMargin: o.minMargin, Rubric: rubric, ScoreCue: cue,
			LengthPenalty: o.lengthPenalty, MinScoreMass: o.minScoreMass, Seed: int64(o.seed), Iteration: o.iteration, ModelID: o.modelRef}
		c.SelfReward.Backend = sr.HTTPConfig{BaseURL: backendURL, Model: bm, API: o.backendAPI,
			APIKeyEnv: o.apiKeyEnv, Timeout: o.requestTimeout, MaxRetries: maxRetries}
	}
	if o.fs.Lookup("beta") != nil {
		c.Gradients.Model = o.modelRef
		c.Gradients.Beta, c.Gradients.Alpha, c.Gradients.LoRARank = o.beta, o.alpha, o.loraRank
		c.Gradients.MaxLen, c.Gradients.Batch, c.Gradients.Steps = o.maxLen, o.batch, o.steps
	}
	c.Gradients.Spec = spec
	groupSize, _ := parseScore(o.score) // validate checked it
	c.Select = pipelines.SelectOptions{Spec: spec, Aggregate: o.aggregate, Gamma: o.gamma, Seed: o.seed,
		Keep: keep.Options{Rule: keep.Rule(o.keepRule), Tau: o.tau, Rho: o.rho},
		Gate: o.gate, Anchor: o.anchor, GroupSize: groupSize}
	// The settings of a method option go to the pipeline (and the report's
	// options) only when the option is in use: at their defaults they are
	// the pipeline's own, and a default run's report keeps its bytes.
	gated := o.gate != "" && o.gate != pipelines.GateNone
	noiseAware := o.keepRule == string(filter.NoiseAware)
	if gated {
		c.Select.GateBoot, c.Select.GateLevel = o.gateBoot, o.gateLevel
	}
	if noiseAware {
		c.Select.NoiseMinPairs = o.noiseMinPairs
	}
	c.Select.RankBucketRows = o.rankBucketRows
	if o.fs.Lookup("keep") == nil {
		c.Select = pipelines.SelectOptions{Spec: spec}
	}
	// The report records the options of this command with the values the
	// run used, except runner plumbing, the output location and the backend
	// address and credentials, which differ between otherwise identical
	// runs (the same job on gs:// and locally must write the same bytes).
	// The in-process generator's options count only without --backend_url.
	o.fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "config", "progress_every", "quiet", "endpoint", "backend_url", "worker_binary", "job_name", "out",
			"api_key_env", "backend_check", "rank_bucket_rows":
			return
		case "generator", "generator_corpus":
			if o.backendURL != "" {
				return
			}
		case "gate", "anchor", "score":
			// The method options are recorded when used, so a default
			// run's report.json keeps its bytes.
			if f.Value.String() == f.DefValue {
				return
			}
		case "gate_boot", "gate_level":
			if !gated {
				return
			}
		case "noise_min_pairs":
			if !noiseAware {
				return
			}
		}
		c.Options[f.Name] = f.Value.String()
		if v, ok := effective[f.Name]; ok {
			c.Options[f.Name] = v
		}
	})
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if o.anchor != "" {
		if err := o.checkAnchor(context.Background(), &c); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (o *opts) runnerOptions() runners.Options {
	r := o.r
	if o.svcOptions != "" {
		r.DataflowServiceOptions = strings.Split(o.svcOptions, ",")
	}
	return r
}
