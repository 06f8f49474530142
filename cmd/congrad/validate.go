package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/pipelines"
	sr "github.com/congrad-beam/congrad/selfreward"
)

// bound is the accepted range of a numeric flag. Every numeric flag of every
// command has one (TestEveryNumericFlagHasABound), so a zero, a negative
// number, NaN or an absurd value is refused before anything runs instead of
// being replaced by a default or failing inside a worker.
type bound struct {
	lo, hi         float64
	loOpen, hiOpen bool
	why            string // appended to the error, e.g. what the limit protects
}

var anyUint = bound{lo: 0, hi: math.MaxUint64}

// bounds of the pipeline commands' numeric flags (and train's, which share
// the names where the meaning is the same).
var bounds = map[string]bound{
	"shards":           {lo: 1, hi: 10000},
	"seed":             anyUint,
	"sketch_seed":      anyUint,
	"num_workers":      {lo: 0, hi: 100000},
	"max_num_workers":  {lo: 0, hi: 100000},
	"n":                {lo: 2, hi: 128, why: "a pair needs two candidates"},
	"j":                {lo: 1, hi: 64},
	"temperature":      {lo: 0, hi: 2, why: "0 is greedy"},
	"top_p":            {lo: 0, hi: 1, loOpen: true},
	"max_tokens":       {lo: 1, hi: 131072},
	"judge_max_tokens": {lo: 1, hi: 131072},
	"min_margin":       {lo: 0, hi: 5, why: "judge scores are 0..5"},
	"length_penalty":   {lo: 0, hi: 5, why: "score points per 100 tokens; scores are 0..5"},
	"min_score_mass":   {lo: 0, hi: 1, why: "a probability"},
	"iteration":        {lo: 0, hi: 1e6},
	"max_retries":      {lo: 0, hi: 20},
	"request_timeout":  {lo: 0.001, hi: 86400, why: "seconds"},
	"k":                {lo: 1, hi: sketch.MaxK},
	"beta":             {lo: 0, hi: 100, loOpen: true, why: "DPO's beta scales the log-ratio; 0 gives no gradient"},
	"alpha":            {lo: 0, hi: 100},
	"lora_rank":        {lo: 1, hi: 4096},
	"max_len":          {lo: 0, hi: 131072, why: "0 is the model's limit"},
	"batch":            {lo: 1, hi: 4096},
	"steps":            {lo: 1, hi: 1 << 20},
	"gamma":            {lo: 0, hi: 1, loOpen: true, hiOpen: true},
	"tau":              {lo: -1, hi: 1, why: "scores are cosines"},
	"rho":              {lo: 0, hi: 1, loOpen: true},
	"progress_every":   {lo: 0, hi: 86400, why: "seconds; 0 is off"},
	"gate_boot":        {lo: 10, hi: pipelines.MaxGateBoot, why: "bootstrap resamples; each costs one weight per pair"},
	"gate_level":       {lo: 0, hi: 1, loOpen: true, hiOpen: true, why: "a two-sided confidence level"},
	"noise_min_pairs":  {lo: 2, hi: pipelines.MaxNoiseMinPairs, why: "a fit needs two scores"},
	"rank_bucket_rows": {lo: 1, hi: pipelines.MaxRankBucketRows},
}

func (b bound) String() string {
	l, r := "[", "]"
	if b.loOpen {
		l = "("
	}
	if b.hiOpen {
		r = ")"
	}
	return fmt.Sprintf("%s%s, %s%s", l, strconv.FormatFloat(b.lo, 'f', -1, 64), strconv.FormatFloat(b.hi, 'f', -1, 64), r)
}

// checkBounds checks every flag of fs that has a bound. Durations are
// compared in seconds.
func checkBounds(fs *flag.FlagSet, bs map[string]bound) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		b, ok := bs[f.Name]
		if !ok || err != nil {
			return
		}
		text := f.Value.String()
		var v float64
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok {
				v = d.Seconds()
				text = d.String()
			} else if v, err = strconv.ParseFloat(text, 64); err != nil {
				err = fmt.Errorf("%w: --%s=%s: not a number", errUsage, f.Name, text)
				return
			}
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < b.lo || v > b.hi || (b.loOpen && v == b.lo) || (b.hiOpen && v == b.hi) {
			why := ""
			if b.why != "" {
				why = " (" + b.why + ")"
			}
			err = fmt.Errorf("%w: --%s=%s: want a value in %v%s", errUsage, f.Name, text, b, why)
		}
	})
	return err
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks every option of the command before anything is built or
// started; the error is one line naming the flag (exit code 2).
func (o *opts) validate() error {
	if err := checkBounds(o.fs, bounds); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
	}
	switch o.format {
	case "parquet", "arrow":
	default:
		return bad("--format=%s: want parquet or arrow", o.format)
	}
	if strings.TrimSpace(o.out) == "" {
		return bad("--out is required")
	}
	if o.fs.Lookup("n") != nil {
		if o.backendURL != "" {
			u, err := url.Parse(o.backendURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return bad("--backend_url=%s: want http://host:port or https://host (with the scheme)", o.backendURL)
			}
		}
		switch o.backendAPI {
		case "completions":
		case "chat":
			if o.given("score_cue") && o.scoreCue != "" {
				return bad("--score_cue=%q needs --backend_api=completions: the chat API cannot start the judge's answer", o.scoreCue)
			}
		default:
			return bad("--backend_api=%s: want completions or chat", o.backendAPI)
		}
		switch o.generator {
		case "markov", "model":
		default:
			return bad("--generator=%s: want markov or model", o.generator)
		}
		if o.rubric != "" {
			for _, ph := range []string{sr.PromptPlaceholder, sr.ResponsePlaceholder} {
				if !strings.Contains(o.rubric, ph) {
					return bad("--rubric: the template lacks the placeholder %s", ph)
				}
			}
		}
		if !envName.MatchString(o.apiKeyEnv) {
			return bad("--api_key_env=%q: want an environment variable name", o.apiKeyEnv)
		}
		if o.given("api_key_env") && os.Getenv(o.apiKeyEnv) == "" {
			return bad("--api_key_env=%s: $%s is not set or empty", o.apiKeyEnv, o.apiKeyEnv)
		}
	}
	if o.fs.Lookup("model") != nil {
		if err := checkModelRef(o.modelRef); err != nil {
			return bad("--model=%s: %v", o.modelRef, err)
		}
	}
	if o.fs.Lookup("aggregate") != nil && o.aggregate != "mean" && o.aggregate != "ema" {
		return bad("--aggregate=%s: want mean or ema", o.aggregate)
	}
	if o.fs.Lookup("keep") != nil {
		if err := o.validateMethod(); err != nil {
			return err
		}
	}
	return nil
}

// explainFlagError turns the flag package's parse error into one line that,
// for a flag of another command, says which commands have it.
func explainFlagError(cmd string, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Errorf("%w: %s", errUsage, notAFlagOf(cmd, strings.TrimLeft(name, "-")))
	}
	return fmt.Errorf("%w: %s (see 'congrad %s --help')", errUsage, flagValueError(msg), cmd)
}

var invalidValue = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for flag -([^:]+): (.*)$`)

// flagValueError rewrites the flag package's `invalid value "x" for flag
// -n: parse error` as `--n=x: not a valid value (parse error)`.
func flagValueError(msg string) string {
	m := invalidValue.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	return fmt.Sprintf("--%s=%s: not a valid value (%s)", m[2], m[1], m[3])
}

// notAFlagOf says that name is no flag of cmd, and whose flag it is.
func notAFlagOf(cmd, name string) string {
	var in []string
	for _, c := range []string{"run", "generate", "sketch", "select"} {
		if c != cmd && newFlags(c, io.Discard).fs.Lookup(name) != nil {
			in = append(in, c)
		}
	}
	if len(in) == 0 {
		return fmt.Sprintf("unknown option --%s (see 'congrad %s --help')", name, cmd)
	}
	return fmt.Sprintf("--%s is not an option of congrad %s (it is one of congrad %s)", name, cmd, strings.Join(in, ", "))
}

// errNotTiny is returned for "tiny..." refs that are not tiny or tiny:seed=N.
var errNotTiny = errors.New("want tiny, tiny:seed=N or a checkpoint directory")

// checkModelRef checks the spelling of a model reference; checkModel
// (preflight) checks a checkpoint directory's files.
func checkModelRef(ref string) error {
	switch {
	case ref == "":
		return errNotTiny
	case ref == "tiny":
		return nil
	case strings.HasPrefix(ref, "tiny:"):
		rest, ok := strings.CutPrefix(ref, "tiny:seed=")
		if !ok {
			return errNotTiny
		}
		if _, err := strconv.ParseUint(rest, 10, 64); err != nil {
			return fmt.Errorf("seed %q is not an unsigned integer", rest)
		}
	}
	return nil
}

// checkServe checks congrad serve's flags before it loads a model or listens.
func checkServe(fs *flag.FlagSet, addr, gen, ref string) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: --addr=%s: want host:port (port 0 picks a free one)", errUsage, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%w: --addr=%s: port %q is not 0..65535", errUsage, addr, port)
	}
	_ = host
	switch gen {
	case "markov":
		return nil
	case "model":
		return checkModel(ref)
	}
	return fmt.Errorf("%w: --generator=%s: want model or markov", errUsage, gen)
}
