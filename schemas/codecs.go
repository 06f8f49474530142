package schemas

import (
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

var nan = math.NaN()

// PromptCodec is the layout of prompt files: id, lang, prompt, source.
type PromptCodec struct{}

var promptCols = []column{strCol("id"), strCol("lang"), strCol("prompt"), strCol("source")}

func (PromptCodec) Name() string { return "prompt" }
func (PromptCodec) Schema() *arrow.Schema {
	md := metadata("prompt")
	return arrow.NewSchema(fields(promptCols), &md)
}
func (PromptCodec) Check(s *arrow.Schema) error { return checkColumns("prompt", s, promptCols) }
func (PromptCodec) Key(p *Prompt) string        { return p.Lang + "\x00" + p.ID }
func (PromptCodec) Append(b *array.RecordBuilder, rows []Prompt) error {
	appendStrings(b, 0, rows, func(p *Prompt) string { return p.ID })
	appendStrings(b, 1, rows, func(p *Prompt) string { return p.Lang })
	appendStrings(b, 2, rows, func(p *Prompt) string { return p.Prompt })
	appendStrings(b, 3, rows, func(p *Prompt) string { return p.Source })
	return nil
}
func (c PromptCodec) Decode(rec arrow.RecordBatch) ([]Prompt, error) {
	if err := c.Check(rec.Schema()); err != nil {
		return nil, err
	}
	out := make([]Prompt, rec.NumRows())
	r := &reader{rec: rec, record: "prompt"}
	r.strings("id", func(i int, v string) { out[i].ID = v })
	r.strings("lang", func(i int, v string) { out[i].Lang = v })
	r.strings("prompt", func(i int, v string) { out[i].Prompt = v })
	r.strings("source", func(i int, v string) { out[i].Source = v })
	return out, r.err
}

// CandidateCodec is the layout of scored candidate files.
type CandidateCodec struct{}

var candidateCols = []column{
	strCol("prompt_id"), strCol("lang"), col("index", i64), strCol("text"), col("tokens", i64),
	col("scores", f64s), col("mean_score", f64), col("parse_failures", i64),
}

func (CandidateCodec) Name() string { return "candidate" }
func (CandidateCodec) Schema() *arrow.Schema {
	md := metadata("candidate")
	return arrow.NewSchema(fields(candidateCols, "mean_score"), &md)
}
func (CandidateCodec) Check(s *arrow.Schema) error {
	return checkColumns("candidate", s, candidateCols)
}
func (CandidateCodec) Key(c *Candidate) string {
	return fmt.Sprintf("%s\x00%s\x00%08d", c.Lang, c.PromptID, c.Index)
}
func (CandidateCodec) Append(b *array.RecordBuilder, rows []Candidate) error {
	appendStrings(b, 0, rows, func(c *Candidate) string { return c.PromptID })
	appendStrings(b, 1, rows, func(c *Candidate) string { return c.Lang })
	appendInt64s(b, 2, rows, func(c *Candidate) int64 { return int64(c.Index) })
	appendStrings(b, 3, rows, func(c *Candidate) string { return c.Text })
	appendInt64s(b, 4, rows, func(c *Candidate) int64 { return int64(c.Tokens) })
	appendFloat64Lists(b, 5, rows, func(c *Candidate) []float64 { return c.Scores })
	appendNullableFloat64s(b, 6, rows, func(c *Candidate) float64 { return c.MeanScore })
	appendInt64s(b, 7, rows, func(c *Candidate) int64 { return int64(c.ParseFailures) })
	return nil
}
func (c CandidateCodec) Decode(rec arrow.RecordBatch) ([]Candidate, error) {
	if err := c.Check(rec.Schema()); err != nil {
		return nil, err
	}
	out := make([]Candidate, rec.NumRows())
	r := &reader{rec: rec, record: "candidate"}
	r.strings("prompt_id", func(i int, v string) { out[i].PromptID = v })
	r.strings("lang", func(i int, v string) { out[i].Lang = v })
	r.int64s("index", func(i int, v int64) { out[i].Index = int(v) })
	r.strings("text", func(i int, v string) { out[i].Text = v })
	r.int64s("tokens", func(i int, v int64) { out[i].Tokens = int(v) })
	r.float64Lists("scores", func(i int, v []float64) { out[i].Scores = v })
	r.float64s("mean_score", true, func(i int, v float64) { out[i].MeanScore = v })
	r.int64s("parse_failures", func(i int, v int64) { out[i].ParseFailures = int(v) })
	return out, r.err
}

// DecisionCodec is the layout of filter decision files. With Audit the
// files carry four more string columns after reason (score_type, target,
// rule, gate: Decision's audit fields); Decode reads files with or without
// them, so files written before the audit columns still read.
type DecisionCodec struct {
	Audit bool
}

var decisionCols = []column{
	strCol("pair_id"), strCol("lang"), col("score", f64), col("rank", i64), col("kept", boolT), strCol("reason"),
}

// decisionAuditCols are the optional audit columns.
var decisionAuditCols = []column{strCol("score_type"), strCol("target"), strCol("rule"), strCol("gate")}

func (DecisionCodec) Name() string { return "decision" }
func (c DecisionCodec) Schema() *arrow.Schema {
	md := metadata("decision")
	if c.Audit {
		return arrow.NewSchema(fields(append(append([]column{}, decisionCols...), decisionAuditCols...)), &md)
	}
	return arrow.NewSchema(fields(decisionCols), &md)
}
func (c DecisionCodec) Check(s *arrow.Schema) error {
	if c.Audit {
		return checkColumns("decision", s, append(append([]column{}, decisionCols...), decisionAuditCols...))
	}
	return checkColumns("decision", s, decisionCols)
}
func (DecisionCodec) Key(d *Decision) string { return d.PairID }
func (c DecisionCodec) Append(b *array.RecordBuilder, rows []Decision) error {
	appendStrings(b, 0, rows, func(d *Decision) string { return d.PairID })
	appendStrings(b, 1, rows, func(d *Decision) string { return d.Lang })
	appendFloat64s(b, 2, rows, func(d *Decision) float64 { return d.Score })
	appendInt64s(b, 3, rows, func(d *Decision) int64 { return int64(d.Rank) })
	appendBools(b, 4, rows, func(d *Decision) bool { return d.Kept })
	appendStrings(b, 5, rows, func(d *Decision) string { return d.Reason })
	if c.Audit {
		appendStrings(b, 6, rows, func(d *Decision) string { return d.ScoreType })
		appendStrings(b, 7, rows, func(d *Decision) string { return d.Target })
		appendStrings(b, 8, rows, func(d *Decision) string { return d.Rule })
		appendStrings(b, 9, rows, func(d *Decision) string { return d.Gate })
	}
	return nil
}
func (c DecisionCodec) Decode(rec arrow.RecordBatch) ([]Decision, error) {
	if err := c.Check(rec.Schema()); err != nil {
		return nil, err
	}
	out := make([]Decision, rec.NumRows())
	r := &reader{rec: rec, record: "decision"}
	r.strings("pair_id", func(i int, v string) { out[i].PairID = v })
	r.strings("lang", func(i int, v string) { out[i].Lang = v })
	r.float64s("score", false, func(i int, v float64) { out[i].Score = v })
	r.int64s("rank", func(i int, v int64) { out[i].Rank = int(v) })
	r.bools("kept", func(i int, v bool) { out[i].Kept = v })
	r.strings("reason", func(i int, v string) { out[i].Reason = v })
	// The audit columns, where the file has them (any codec reads them).
	if checkColumns("decision", rec.Schema(), decisionAuditCols) == nil {
		r.strings("score_type", func(i int, v string) { out[i].ScoreType = v })
		r.strings("target", func(i int, v string) { out[i].Target = v })
		r.strings("rule", func(i int, v string) { out[i].Rule = v })
		r.strings("gate", func(i int, v string) { out[i].Gate = v })
	}
	return out, r.err
}

// DeadLetterCodec is the layout of dead-letter files.
type DeadLetterCodec struct{}

var deadLetterCols = []column{
	strCol("stage"), strCol("source"), col("row", i64), strCol("reason"), strCol("payload"),
}

func (DeadLetterCodec) Name() string { return "dead_letter" }
func (DeadLetterCodec) Schema() *arrow.Schema {
	md := metadata("dead_letter")
	return arrow.NewSchema(fields(deadLetterCols), &md)
}
func (DeadLetterCodec) Check(s *arrow.Schema) error {
	return checkColumns("dead_letter", s, deadLetterCols)
}

// Key orders dead letters by stage, source and row; the row is zero-padded
// (offset so -1 sorts first) so string order equals numeric order.
func (DeadLetterCodec) Key(d *DeadLetter) string {
	return fmt.Sprintf("%s\x00%s\x00%020d\x00%s", d.Stage, d.Source, uint64(d.Row)+1<<63, d.Reason)
}
func (DeadLetterCodec) Append(b *array.RecordBuilder, rows []DeadLetter) error {
	appendStrings(b, 0, rows, func(d *DeadLetter) string { return d.Stage })
	appendStrings(b, 1, rows, func(d *DeadLetter) string { return d.Source })
	appendInt64s(b, 2, rows, func(d *DeadLetter) int64 { return d.Row })
	appendStrings(b, 3, rows, func(d *DeadLetter) string { return d.Reason })
	appendStrings(b, 4, rows, func(d *DeadLetter) string { return d.Payload })
	return nil
}
func (c DeadLetterCodec) Decode(rec arrow.RecordBatch) ([]DeadLetter, error) {
	if err := c.Check(rec.Schema()); err != nil {
		return nil, err
	}
	out := make([]DeadLetter, rec.NumRows())
	r := &reader{rec: rec, record: "dead_letter"}
	r.strings("stage", func(i int, v string) { out[i].Stage = v })
	r.strings("source", func(i int, v string) { out[i].Source = v })
	r.int64s("row", func(i int, v int64) { out[i].Row = v })
	r.strings("reason", func(i int, v string) { out[i].Reason = v })
	r.strings("payload", func(i int, v string) { out[i].Payload = v })
	return out, r.err
}
