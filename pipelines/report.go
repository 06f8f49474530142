package pipelines

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"

	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/pipelines/progress"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/filter"
	"github.com/congrad-beam/congrad/transforms/report"
)

// Counter accumulates the accounting table of a run: Add(stage, outcome,
// col) counts col's rows per language (the element's Lang field, or for a
// dead letter the language its payload or source names; "*" when none)
// under (stage, outcome).
type Counter struct {
	s     beam.Scope
	parts []beam.PCollection
}

// NewCounter starts an empty accounting table.
func NewCounter(s beam.Scope) *Counter { return &Counter{s: s.Scope("congrad.Count")} }

// Add counts the rows of col.
func (c *Counter) Add(stage, outcome string, col beam.PCollection) {
	progress.Tap(c.s, stage+"/"+outcome, col)
	keys := beam.ParDo(c.s, &countKeyFn{Stage: stage, Outcome: outcome}, col)
	c.parts = append(c.parts, beam.ParDo(c.s, toCount, stats.Count(c.s, keys)))
}

// Counts returns PCollection<report.Count>.
func (c *Counter) Counts() beam.PCollection {
	if len(c.parts) == 0 {
		return beam.CreateList(c.s, []report.Count{})
	}
	return beam.Flatten(c.s, c.parts...)
}

type countKeyFn struct{ Stage, Outcome string }

func (f *countKeyFn) ProcessElement(x beam.T) string {
	lang := "*"
	if d, ok := x.(schemas.DeadLetter); ok {
		lang = deadLang(d)
	} else if d, ok := x.(schemas.Dropped); ok {
		lang = d.Pair.Lang
	} else if v := reflect.ValueOf(x); v.Kind() == reflect.Struct {
		if l := v.FieldByName("Lang"); l.IsValid() && l.Kind() == reflect.String && l.String() != "" {
			lang = l.String()
		}
	}
	return f.Stage + "\x00" + lang + "\x00" + f.Outcome
}

// deadLang finds the language of a dead letter where its writer put one:
// a JSON payload's "lang" (filter), a "lang=xx " payload prefix
// (gradients) or a "lang/id" source (selfreward); "*" when none.
func deadLang(d schemas.DeadLetter) string {
	switch {
	case strings.HasPrefix(d.Payload, "{"):
		var p struct {
			Lang string `json:"lang"`
		}
		if json.Unmarshal([]byte(d.Payload), &p) == nil && p.Lang != "" {
			return p.Lang
		}
	case strings.HasPrefix(d.Payload, "lang="):
		if l, _, _ := strings.Cut(strings.TrimPrefix(d.Payload, "lang="), " "); l != "" {
			return l
		}
	}
	if l, _, ok := strings.Cut(d.Source, "/"); ok && isLangTag(l) {
		return l
	}
	return "*"
}

// isLangTag: a short tag of letters and '-' (not a path or URL).
func isLangTag(s string) bool {
	if len(s) < 2 || len(s) > 12 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func toCount(key string, n int) report.Count {
	p := strings.SplitN(key, "\x00", 3)
	return report.Count{Stage: p[0], Lang: p[1], Outcome: p[2], N: int64(n)}
}

// Reasons counts dead letters by stage and kind of reason (ReasonKind),
// keeping a few full reasons of each kind as examples.
//
//	PCollection<schemas.DeadLetter> -> PCollection<report.Reason>
func Reasons(s beam.Scope, dead beam.PCollection) beam.PCollection {
	s = s.Scope("congrad.Reasons")
	return beam.ParDo(s, toReason, beam.CombinePerKey(s, &reasonFn{}, beam.ParDo(s, reasonKey, dead)))
}

// ReasonKind is the kind of a dead-letter reason. Reasons written by this
// project start with a code and ": " ("drop:margin: margin 0.42 < 1",
// "orphan_sketch: no pair with this pair_id"); the code is the kind. Any
// other reason is its own kind with the numbers blanked ("3 sketches" ->
// "# sketches"), cut to 80 bytes, so free-text reasons still group.
func ReasonKind(r string) string {
	if code, _, ok := strings.Cut(r, ": "); ok && code != "" && !strings.ContainsAny(code, " \t") {
		return code
	}
	var b strings.Builder
	inNum := false
	for _, c := range r {
		isNum := c >= '0' && c <= '9' || inNum && (c == '.' || c == 'e' || c == '-' || c == '+')
		if isNum {
			if !inNum {
				b.WriteByte('#')
			}
			inNum = true
			continue
		}
		inNum = false
		b.WriteRune(c)
	}
	k := b.String()
	if len(k) > 80 {
		k = k[:80]
	}
	return k
}

func reasonKey(d schemas.DeadLetter) (string, string) {
	return d.Stage + "\x00" + ReasonKind(d.Reason), d.Reason
}

// ReasonAcc is a kind's count and its smallest distinct reasons.
type ReasonAcc struct {
	N        int64
	Examples []string
}

type reasonFn struct{}

func (reasonFn) CreateAccumulator() ReasonAcc { return ReasonAcc{} }
func (reasonFn) AddInput(a ReasonAcc, r string) ReasonAcc {
	a.N++
	a.Examples = addExample(a.Examples, r)
	return a
}
func (reasonFn) MergeAccumulators(a, b ReasonAcc) ReasonAcc {
	a.N += b.N
	for _, r := range b.Examples {
		a.Examples = addExample(a.Examples, r)
	}
	return a
}
func (reasonFn) ExtractOutput(a ReasonAcc) ReasonAcc { return a }

// addExample keeps the report.MaxExamples smallest distinct reasons, so the
// examples do not depend on the order rows arrive in.
func addExample(ex []string, r string) []string {
	i := sort.SearchStrings(ex, r)
	if i < len(ex) && ex[i] == r || i >= report.MaxExamples {
		return ex
	}
	ex = append(ex, "")
	copy(ex[i+1:], ex[i:])
	ex[i] = r
	if len(ex) > report.MaxExamples {
		ex = ex[:report.MaxExamples]
	}
	return ex
}

func toReason(key string, a ReasonAcc) report.Reason {
	st, k, _ := strings.Cut(key, "\x00")
	ex := a.Examples
	if ex == nil {
		ex = []string{}
	}
	return report.Reason{Stage: st, Kind: k, N: a.N, Examples: ex}
}

// ReportParts are the small summaries the report is built from.
type ReportParts struct {
	Consensus beam.PCollection // singleton PCollection<aggregate.Consensus> (may be empty)
	Stats     beam.PCollection // PCollection<filter.Stats>
	Counts    beam.PCollection // PCollection<report.Count>
	Reasons   beam.PCollection // PCollection<report.Reason>
}

// Report file names under the report directory.
const (
	ReportJSON  = "report.json"
	ConflictSVG = "conflict.svg"
	ScoresSVG   = "scores.svg"
	KeptSVG     = "kept.svg"
)

// WriteReport writes report.json and the SVG pictures into dir (any Beam
// filesystem) from one worker, once every part is complete.
//
//	ReportParts -> PCollection<string> (the files written)
func WriteReport(s beam.Scope, dir string, parts ReportParts, rule string, options map[string]string) beam.PCollection {
	s = s.Scope("congrad.WriteReport")
	return beam.ParDo(s, &writeReportFn{Dir: dir, Rule: rule, Options: options}, beam.Impulse(s),
		beam.SideInput{Input: parts.Consensus}, beam.SideInput{Input: parts.Stats},
		beam.SideInput{Input: parts.Counts}, beam.SideInput{Input: parts.Reasons})
}

type writeReportFn struct {
	Dir     string
	Rule    string
	Options map[string]string
}

// Build assembles the Report from the parts.
func buildReport(rule string, options map[string]string, cons *aggregate.Consensus, st []filter.Stats,
	counts []report.Count, reasons []report.Reason) *report.Report {
	r := &report.Report{Options: options, Rule: rule, Counts: counts, DeadLetters: reasons,
		Langs: []string{}, Conflict: [][]float64{}, Consensus: []float32{}}
	byLang := map[string]*report.Language{}
	if cons != nil {
		r.Langs, r.Projections, r.Consensus, r.ConsNorm = cons.Langs, cons.Projections, cons.G, cons.Norm
		for i, l := range cons.Langs {
			row := make([]float64, len(cons.Langs))
			for j := range row {
				row[j] = cons.CosineAt(i, j)
			}
			r.Conflict = append(r.Conflict, row)
			r.Languages = append(r.Languages, report.Language{Lang: l, Norm: cons.Norms[i], Order: cons.Order(i), Cutoff: math.NaN()})
		}
	}
	for i := range r.Languages {
		byLang[r.Languages[i].Lang] = &r.Languages[i]
	}
	for _, x := range st {
		l, ok := byLang[x.Lang]
		if !ok {
			r.Languages = append(r.Languages, report.Language{Lang: x.Lang, Norm: math.NaN(), Order: []string{}})
			l = &r.Languages[len(r.Languages)-1]
			byLang = nil // pointers into the grown slice: rebuild below
		}
		l.Pairs, l.Kept, l.Cutoff, l.Quantiles, l.Histogram = x.N, x.Kept, x.Threshold, x.Quantiles, x.Histogram
		auditLanguage(r, l, x)
		if byLang == nil {
			byLang = map[string]*report.Language{}
			for i := range r.Languages {
				byLang[r.Languages[i].Lang] = &r.Languages[i]
			}
		}
	}
	r.Finish()
	return r
}

// auditLanguage copies the method audit of one language's Stats (empty
// under the default options) into its report row and the gate table.
func auditLanguage(r *report.Report, l *report.Language, x filter.Stats) {
	l.ScoreType, l.Target, l.RuleUsed = x.ScoreType, x.Target, x.Rule
	if len(x.Noise) > 0 {
		f := x.Noise[0]
		l.Noise = &report.NoiseFit{N: f.N, Mu: f.Mu, Sigma: f.Sigma, Eta: f.Eta, Tau: f.Tau, Iter: f.Iter,
			Converged: f.Converged, Fallback: f.Fallback}
	}
	if len(x.Gate) > 0 {
		g := x.Gate[0]
		row := report.Gate{Lang: x.Lang, Kind: g.Kind, Reference: g.Reference, N: g.Cos.N, Gated: g.Gated,
			Reason: g.Reason, Target: x.Target}
		if g.Tested {
			row.Cos, row.Lo, row.Hi = g.Cos.Value, g.Cos.Lo, g.Cos.Hi
		}
		l.Gate = &row
		r.Gates = append(r.Gates, row)
	}
}

func (f *writeReportFn) ProcessElement(ctx context.Context, _ []byte,
	consIt func(*aggregate.Consensus) bool, statsIt func(*filter.Stats) bool,
	countIt func(*report.Count) bool, reasonIt func(*report.Reason) bool, emit func(string)) error {
	var cons *aggregate.Consensus
	var c aggregate.Consensus
	if consIt(&c) {
		cons = &c
	}
	r := buildReport(f.Rule, f.Options, cons, beamiter.Drain(statsIt), beamiter.Drain(countIt), beamiter.Drain(reasonIt))
	js, err := r.Marshal()
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{{ReportJSON, js}, {ConflictSVG, report.ConflictSVG(r)}, {ScoresSVG, report.ScoresSVG(r)}, {KeptSVG, report.KeptSVG(r)}}
	for _, fl := range files {
		p := joinPath(f.Dir, fl.name)
		if err := writeFile(ctx, p, fl.data); err != nil {
			return err
		}
		emit(p)
	}
	return nil
}

// joinPath joins a directory and a name for local paths and URLs alike.
func joinPath(dir, name string) string { return strings.TrimSuffix(dir, "/") + "/" + name }

func writeFile(ctx context.Context, path string, data []byte) error {
	fs, err := filesystem.New(ctx, path)
	if err != nil {
		return fmt.Errorf("report: open filesystem for %s: %w", path, err)
	}
	defer fs.Close()
	w, err := fs.OpenWrite(ctx, path)
	if err != nil {
		return fmt.Errorf("report: create %s: %w", path, err)
	}
	if _, err := io.Copy(w, strings.NewReader(string(data))); err != nil {
		w.Close()
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("report: close %s: %w", path, err)
	}
	return nil
}

// init registers every function and type of the package (stages.go's too).
func init() {
	register.Function1x1(deadToFailure)
	register.DoFn1x1[beam.T, string](&countKeyFn{})
	register.Function2x1(toCount)
	register.Function1x2(reasonKey)
	register.Combiner2[ReasonAcc, string](&reasonFn{})
	beam.RegisterType(reflect.TypeOf(ReasonAcc{}))
	register.Function2x1(toReason)
	register.DoFn7x1[context.Context, []byte, func(*aggregate.Consensus) bool, func(*filter.Stats) bool,
		func(*report.Count) bool, func(*report.Reason) bool, func(string), error](&writeReportFn{})
	register.Iter1[*filter.Stats]()
	register.Iter1[*report.Count]()
	register.Iter1[*report.Reason]()
	register.Emitter1[string]()
	beam.RegisterType(reflect.TypeOf(report.Count{}))
	beam.RegisterType(reflect.TypeOf(report.Reason{}))
}
