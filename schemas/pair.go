package schemas

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// MessageType is one chat message as TRL's conversational datasets store it:
// struct<role: string, content: string>.
var MessageType = arrow.StructOf(
	arrow.Field{Name: "role", Type: arrow.BinaryTypes.String},
	arrow.Field{Name: "content", Type: arrow.BinaryTypes.String},
)

// MessagesType is a conversation: list<struct<role, content>>.
var MessagesType = arrow.ListOf(MessageType)

// PairCodec is the layout of preference-pair files. The prompt, chosen and
// rejected columns are what TRL's DPOTrainer reads: plain strings by default,
// or with Conversational set, message lists ([{role: user, content: prompt}]
// and [{role: assistant, content: response}]). The other columns ride along
// (DPOTrainer ignores unknown columns); ref_chosen_logps/ref_rejected_logps use
// TRL's names so a trainer can skip its own reference pass, and are null until
// the gradient stage fills them (NaN in Pair).
//
// Decode accepts either form whatever Conversational says.
type PairCodec struct {
	Conversational bool
}

// pairTextCols are the TRL columns; their type depends on the form.
var pairTextCols = []string{"prompt", "chosen", "rejected"}

var pairCols = []column{
	strCol("pair_id"), strCol("prompt_id"), strCol("lang"),
	col("chosen_score", f64), col("rejected_score", f64), col("margin", f64),
	col("chosen_scores", f64s), col("rejected_scores", f64s),
	col("chosen_tokens", i64), col("rejected_tokens", i64), col("iteration", i64),
	strCol("model_id"), col("ref_chosen_logps", f64), col("ref_rejected_logps", f64),
}

func (PairCodec) Name() string { return "pair" }

func (c PairCodec) Schema() *arrow.Schema {
	var text arrow.DataType = arrow.BinaryTypes.String
	form := "standard"
	if c.Conversational {
		text, form = MessagesType, "conversational"
	}
	// TRL's columns first, so a quick look at the file shows the pair.
	fs := []arrow.Field{
		{Name: "prompt", Type: text}, {Name: "chosen", Type: text}, {Name: "rejected", Type: text},
	}
	fs = append(fs, fields(pairCols, "ref_chosen_logps", "ref_rejected_logps")...)
	md := metadata("pair", "congrad.pair_form", form)
	return arrow.NewSchema(fs, &md)
}

func (PairCodec) Check(s *arrow.Schema) error {
	err := checkColumns("pair", s, pairCols)
	var e *SchemaError
	if err != nil {
		e = err.(*SchemaError)
	} else {
		e = &SchemaError{Record: "pair"}
	}
	for _, name := range pairTextCols {
		idx := s.FieldIndices(name)
		if len(idx) == 0 {
			e.Missing = append(e.Missing, name)
			continue
		}
		t := s.Field(idx[0]).Type
		if !isTextType(t) && !arrow.TypeEqual(t, MessagesType) {
			e.Mistyped = append(e.Mistyped, fmt.Sprintf("%s: got %s, want utf8 or %s", name, t, MessagesType))
		}
	}
	if len(e.Missing) > 0 || len(e.Mistyped) > 0 {
		return e
	}
	return nil
}

func isTextType(t arrow.DataType) bool {
	for _, s := range stringTypes {
		if arrow.TypeEqual(t, s) {
			return true
		}
	}
	return false
}

func (PairCodec) Key(p *Pair) string { return p.PairID }

func (c PairCodec) Append(b *array.RecordBuilder, rows []Pair) error {
	texts := []func(*Pair) string{
		func(p *Pair) string { return p.Prompt },
		func(p *Pair) string { return p.Chosen },
		func(p *Pair) string { return p.Rejected },
	}
	for i, get := range texts {
		if !c.Conversational {
			appendStrings(b, i, rows, get)
			continue
		}
		role := "assistant"
		if i == 0 {
			role = "user"
		}
		appendMessages(b.Field(i).(*array.ListBuilder), rows, role, get)
	}
	appendStrings(b, 3, rows, func(p *Pair) string { return p.PairID })
	appendStrings(b, 4, rows, func(p *Pair) string { return p.PromptID })
	appendStrings(b, 5, rows, func(p *Pair) string { return p.Lang })
	appendFloat64s(b, 6, rows, func(p *Pair) float64 { return p.ChosenScore })
	appendFloat64s(b, 7, rows, func(p *Pair) float64 { return p.RejectedScore })
	appendFloat64s(b, 8, rows, func(p *Pair) float64 { return p.Margin })
	appendFloat64Lists(b, 9, rows, func(p *Pair) []float64 { return p.ChosenScores })
	appendFloat64Lists(b, 10, rows, func(p *Pair) []float64 { return p.RejectedScores })
	appendInt64s(b, 11, rows, func(p *Pair) int64 { return int64(p.ChosenTokens) })
	appendInt64s(b, 12, rows, func(p *Pair) int64 { return int64(p.RejectedTokens) })
	appendInt64s(b, 13, rows, func(p *Pair) int64 { return int64(p.Iteration) })
	appendStrings(b, 14, rows, func(p *Pair) string { return p.ModelID })
	appendNullableFloat64s(b, 15, rows, func(p *Pair) float64 { return p.RefChosenLogp })
	appendNullableFloat64s(b, 16, rows, func(p *Pair) float64 { return p.RefRejectedLogp })
	return nil
}

func appendMessages(lb *array.ListBuilder, rows []Pair, role string, get func(*Pair) string) {
	sb := lb.ValueBuilder().(*array.StructBuilder)
	roleB := sb.FieldBuilder(0).(*array.StringBuilder)
	contentB := sb.FieldBuilder(1).(*array.StringBuilder)
	for k := range rows {
		lb.Append(true)
		sb.Append(true)
		roleB.Append(role)
		contentB.Append(get(&rows[k]))
	}
}

func (c PairCodec) Decode(rec arrow.RecordBatch) ([]Pair, error) {
	if err := c.Check(rec.Schema()); err != nil {
		return nil, err
	}
	out := make([]Pair, rec.NumRows())
	r := &reader{rec: rec, record: "pair"}
	r.texts("prompt", func(i int, v string) { out[i].Prompt = v })
	r.texts("chosen", func(i int, v string) { out[i].Chosen = v })
	r.texts("rejected", func(i int, v string) { out[i].Rejected = v })
	r.strings("pair_id", func(i int, v string) { out[i].PairID = v })
	r.strings("prompt_id", func(i int, v string) { out[i].PromptID = v })
	r.strings("lang", func(i int, v string) { out[i].Lang = v })
	r.float64s("chosen_score", false, func(i int, v float64) { out[i].ChosenScore = v })
	r.float64s("rejected_score", false, func(i int, v float64) { out[i].RejectedScore = v })
	r.float64s("margin", false, func(i int, v float64) { out[i].Margin = v })
	r.float64Lists("chosen_scores", func(i int, v []float64) { out[i].ChosenScores = v })
	r.float64Lists("rejected_scores", func(i int, v []float64) { out[i].RejectedScores = v })
	r.int64s("chosen_tokens", func(i int, v int64) { out[i].ChosenTokens = int(v) })
	r.int64s("rejected_tokens", func(i int, v int64) { out[i].RejectedTokens = int(v) })
	r.int64s("iteration", func(i int, v int64) { out[i].Iteration = int(v) })
	r.strings("model_id", func(i int, v string) { out[i].ModelID = v })
	r.float64s("ref_chosen_logps", true, func(i int, v float64) { out[i].RefChosenLogp = v })
	r.float64s("ref_rejected_logps", true, func(i int, v float64) { out[i].RefRejectedLogp = v })
	return out, r.err
}

// texts reads a TRL text column in either form. For the conversational form
// the value is the content of the conversation's last message: that is the
// prompt turn for "prompt" and the response for "chosen"/"rejected" in the
// files we write (one message each). Multi-turn prompts from other writers
// keep only their last turn; Pair has a single Prompt string.
func (r *reader) texts(name string, set func(i int, v string)) {
	a := r.arr(name)
	if a == nil {
		return
	}
	if _, ok := a.(stringValuer); ok {
		r.strings(name, set)
		return
	}
	if !r.noNulls(name, a) {
		return
	}
	l, ok := a.(*array.List)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want utf8 or %s", name, a.DataType(), MessagesType)}})
		return
	}
	st, ok := l.ListValues().(*array.Struct)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want %s", name, a.DataType(), MessagesType)}})
		return
	}
	ci, found := st.DataType().(*arrow.StructType).FieldIdx("content")
	var content stringValuer
	if found {
		content, ok = st.Field(ci).(stringValuer)
	}
	if !found || !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want %s", name, a.DataType(), MessagesType)}})
		return
	}
	for i := 0; i < l.Len(); i++ {
		start, end := l.ValueOffsets(i)
		if end == start {
			r.fail(&SchemaError{Record: r.record, Other: fmt.Sprintf("column %s row %d has no messages", name, i)})
			return
		}
		set(i, content.Value(int(end-1)))
	}
}
