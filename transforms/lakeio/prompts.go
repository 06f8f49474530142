package lakeio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/congrad-beam/congrad/internal/sideinput"
	"github.com/congrad-beam/congrad/schemas"
)

// Dead-letter reason kinds for prompts. A DeadLetter's Reason starts with
// its kind, then ": " and the detail; the Beam counter
// "lakeio/prompts_dead_<kind>" counts each kind.
const (
	ReasonMalformed    = "malformed_json" // not a JSON object
	ReasonMissingField = "missing_field"  // id, lang or prompt absent or null
	ReasonWrongType    = "wrong_type"     // id, lang, prompt or source not a string
	ReasonEmptyPrompt  = "empty_prompt"   // prompt (or id) empty or whitespace
	ReasonUnknownLang  = "unknown_lang"   // lang not in ReadOptions.Langs
	ReasonLineTooLong  = "line_too_long"  // JSONL line over MaxLineBytes
	ReasonInvalidUTF8  = "invalid_utf8"   // bytes that are not UTF-8, or a \u escape of a lone surrogate
	ReasonDuplicateID  = "duplicate_id"   // (lang, id) already read earlier; the reason names the first
)

// deadKinds lists every reason kind, for the per-kind counters.
var deadKinds = []string{ReasonMalformed, ReasonMissingField, ReasonWrongType, ReasonEmptyPrompt,
	ReasonUnknownLang, ReasonLineTooLong, ReasonInvalidUTF8, ReasonDuplicateID}

// utf8BOM may open a JSONL file (Windows tools write it); it is skipped there
// and only there.
const utf8BOM = "\xEF\xBB\xBF"

// DeadStage is the Stage of dead letters from reading.
const DeadStage = "read"

// ReadPrompts reads prompts from JSONL, Parquet or Arrow IPC files matching
// glob: PCollection<schemas.Prompt> of valid rows and
// PCollection<schemas.DeadLetter> of the others.
//
//	good, dead := lakeio.ReadPrompts(s, "gs://b/prompts/*.jsonl", lakeio.ReadOptions{})
//
// A row needs string fields id, lang and prompt; source is optional (the
// file path when absent). Bad rows (see the Reason constants) become dead
// letters with the file and position: the 1-based line number for JSONL, the
// 0-based row index for Parquet and Arrow (what pandas/DuckDB show). Blank
// JSONL lines are not rows; they are counted in "lakeio/prompts_blank_lines".
// Counters "lakeio/prompts_good" and "lakeio/prompts_dead" add up to the rows
// read.
//
// Text must be UTF-8: a JSONL line with bytes that are not UTF-8 (or a \u
// escape of an unpaired surrogate, which JSON decoders replace silently), or
// a Parquet/Arrow string cell that is not UTF-8, is dead-lettered as
// invalid_utf8, never repaired. A UTF-8 byte order mark at the very start of
// a JSONL file is skipped (elsewhere it is malformed JSON).
//
// Prompt ids are unique per language (the same id in another language is its
// translation): of the rows with the same (lang, id) the first in file path
// order, then line or row order, is kept and every later one is
// dead-lettered as duplicate_id naming the first, whatever the split or
// worker that read them. Finding them costs one GroupByKey of the valid
// prompts by (lang, id).
//
// Columnar files need columns id, lang, prompt (utf8 or large_utf8; source
// optional); a file without them, an unreadable file or a glob that matches
// nothing fails the pipeline at start with the path and columns.
func ReadPrompts(s beam.Scope, glob string, opts ReadOptions) (good, dead beam.PCollection) {
	good, dead, err := TryReadPrompts(s, glob, opts)
	if err != nil {
		panic(err)
	}
	return good, dead
}

// TryReadPrompts is ReadPrompts returning construction errors.
func TryReadPrompts(s beam.Scope, glob string, opts ReadOptions) (good, dead beam.PCollection, err error) {
	s = s.Scope("lakeio.ReadPrompts")
	if err := checkGlob(glob); err != nil {
		return good, dead, err
	}
	o := opts.withDefaults()
	splits := beam.ParDo(s, &expandFn{Glob: glob, Opts: o}, beam.Impulse(s))
	splits = beam.Reshuffle(s, splits)
	keyed, readDead, lines := beam.ParDo3(s, &readPromptsFn{Opts: o}, splits)
	good, dupDead := beam.ParDo2(s, &dedupPromptsFn{}, beam.GroupByKey(s, keyed), sideinput.Read(s, lines))
	return good, beam.Flatten(s, readDead, dupDead), nil
}

var promptRequired = []string{"id", "lang", "prompt"}

// promptColumns is the lenient schema check for prompt files: extra columns
// are fine, source is optional.
func promptColumns(s *arrow.Schema) error {
	e := &schemas.SchemaError{Record: "prompt"}
	for _, name := range append(promptRequired, "source") {
		idx := s.FieldIndices(name)
		if len(idx) == 0 {
			if name != "source" {
				e.Missing = append(e.Missing, name)
			}
			continue
		}
		t := s.Field(idx[0]).Type
		if t.ID() != arrow.STRING && t.ID() != arrow.LARGE_STRING {
			e.Mistyped = append(e.Mistyped, fmt.Sprintf("%s: got %s, want utf8", name, t))
		}
	}
	if len(e.Missing) > 0 || len(e.Mistyped) > 0 {
		return e
	}
	return nil
}

type readPromptsFn struct {
	Opts ReadOptions

	langs       map[string]bool
	dead, blank beam.Counter
	kinds       map[string]beam.Counter
}

// posPrompt is a valid prompt and where it was read, on its way to the
// duplicate check. Rows order by (Path, Offset): file path, then position.
type posPrompt struct {
	P      schemas.Prompt
	Path   string
	Offset int64 // JSONL: byte offset of the line; columnar: 0-based row index
	Split  int64 // JSONL: start byte of the split that read the line; columnar: -1
	Line   int64 // JSONL: 1-based line within the split; columnar: the row index
}

// splitLines is how many lines a JSONL split read (the lines whose first
// byte lies in it), so that a line's number in its file is the lines of the
// file's earlier splits plus its line within its split.
type splitLines struct {
	Path  string
	Start int64
	Lines int64
}

func promptKey(p schemas.Prompt) string { return p.Lang + "\x00" + p.ID }

func (f *readPromptsFn) Setup() {
	f.langs = map[string]bool{}
	for _, l := range f.Opts.Langs {
		f.langs[strings.ToLower(l)] = true
	}
	f.dead = beam.NewCounter("lakeio", "prompts_dead")
	f.blank = beam.NewCounter("lakeio", "prompts_blank_lines")
	f.kinds = deadCounters()
}

func deadCounters() map[string]beam.Counter {
	kinds := map[string]beam.Counter{}
	for _, k := range deadKinds {
		kinds[k] = beam.NewCounter("lakeio", "prompts_dead_"+k)
	}
	return kinds
}

// field is one prompt field as found in a row: absent, null, a string, or
// another JSON type.
type field struct {
	present bool
	isStr   bool
	str     string
	kind    string // JSON kind when not a string
}

// validate turns the fields of a row into a Prompt or a (kind, detail).
func (f *readPromptsFn) validate(id, lang, prompt, source field, path string) (schemas.Prompt, string, string) {
	named := []struct {
		name string
		v    field
	}{{"id", id}, {"lang", lang}, {"prompt", prompt}}
	for _, n := range named {
		if !n.v.present {
			return schemas.Prompt{}, ReasonMissingField, n.name
		}
	}
	for _, n := range append(named, struct {
		name string
		v    field
	}{"source", source}) {
		if n.v.present && !n.v.isStr {
			return schemas.Prompt{}, ReasonWrongType, fmt.Sprintf("%s is %s, want string", n.name, n.v.kind)
		}
	}
	for _, n := range append(named, struct {
		name string
		v    field
	}{"source", source}) {
		if at := invalidUTF8At(n.v.str); at >= 0 {
			return schemas.Prompt{}, ReasonInvalidUTF8, fmt.Sprintf("%s: byte %d is not UTF-8", n.name, at)
		}
	}
	if strings.TrimSpace(id.str) == "" {
		return schemas.Prompt{}, ReasonEmptyPrompt, "empty id"
	}
	if strings.TrimSpace(prompt.str) == "" {
		return schemas.Prompt{}, ReasonEmptyPrompt, "empty prompt"
	}
	l, ok := normLang(lang.str, f.langs)
	if !ok {
		return schemas.Prompt{}, ReasonUnknownLang, fmt.Sprintf("%q", lang.str)
	}
	src := source.str
	if !source.present || src == "" {
		src = path
	}
	return schemas.Prompt{ID: id.str, Lang: l, Prompt: prompt.str, Source: src}, "", ""
}

func (f *readPromptsFn) deadLetter(ctx context.Context, emit func(schemas.DeadLetter), path string, row int64, kind, detail string, payload []byte) {
	f.dead.Inc(ctx, 1)
	f.kinds[kind].Inc(ctx, 1)
	emit(schemas.DeadLetter{Stage: DeadStage, Source: path, Row: row, Reason: kind + ": " + detail, Payload: truncate(payload, 1024)})
}

// truncate cuts b to at most n bytes without splitting a UTF-8 sequence, so
// the payload stays a valid Arrow string.
func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// ProcessElement reads one split: valid rows keyed by (lang, id) with their
// position, dead letters, and for a JSONL split its line count.
func (f *readPromptsFn) ProcessElement(ctx context.Context, sp split, good func(string, posPrompt), dead func(schemas.DeadLetter), lines func(splitLines)) error {
	if sp.Format == JSONL {
		return f.readJSONL(ctx, sp, good, dead, lines)
	}
	return readBatches(ctx, sp, append(promptRequired, "source"), func(rec arrow.RecordBatch, base int64) error {
		cols := make([]arrow.Array, 4)
		for i, name := range append(promptRequired, "source") {
			if idx := rec.Schema().FieldIndices(name); len(idx) > 0 {
				cols[i] = rec.Column(idx[0])
			}
		}
		get := func(a arrow.Array, i int) field {
			if a == nil || a.IsNull(i) {
				return field{}
			}
			sv, ok := a.(interface{ Value(int) string })
			if !ok {
				return field{present: true, kind: a.DataType().String()}
			}
			return field{present: true, isStr: true, str: sv.Value(i)}
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			id, lang, prompt, source := get(cols[0], i), get(cols[1], i), get(cols[2], i), get(cols[3], i)
			p, kind, detail := f.validate(id, lang, prompt, source, sp.Path)
			row := base + int64(i)
			if kind != "" {
				payload, _ := json.Marshal(map[string]string{"id": id.str, "lang": lang.str, "prompt": prompt.str})
				f.deadLetter(ctx, dead, sp.Path, row, kind, detail, payload)
				continue
			}
			good(promptKey(p), posPrompt{P: p, Path: sp.Path, Offset: row, Split: -1, Line: row})
		}
		return nil
	})
}

// invalidUTF8At is the offset of the first byte of s that is not UTF-8, or -1.
func invalidUTF8At(s string) int {
	if utf8.ValidString(s) {
		return -1
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// loneSurrogate reports whether decoding the JSON string raw to s replaced a
// \u escape of an unpaired surrogate by U+FFFD (encoding/json does so
// silently): s has U+FFFD that raw spells neither literally nor as \ufffd.
func loneSurrogate(raw json.RawMessage, s string) bool {
	if !strings.ContainsRune(s, utf8.RuneError) {
		return false
	}
	want := strings.Count(s, string(utf8.RuneError))
	lower := bytes.ToLower(raw)
	have := bytes.Count(raw, []byte(string(utf8.RuneError))) + bytes.Count(lower, []byte(`\ufffd`))
	return have < want
}

// jsonPrompt keeps fields raw so that absent, null and mistyped differ.
type jsonPrompt struct {
	ID     json.RawMessage `json:"id"`
	Lang   json.RawMessage `json:"lang"`
	Prompt json.RawMessage `json:"prompt"`
	Source json.RawMessage `json:"source"`
}

func jsonField(raw json.RawMessage) field {
	if len(raw) == 0 || string(raw) == "null" {
		return field{}
	}
	var s string
	if raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return field{present: true, isStr: true, str: s}
	}
	kind := "a number"
	switch raw[0] {
	case '{':
		kind = "an object"
	case '[':
		kind = "an array"
	case 't', 'f':
		kind = "a boolean"
	}
	return field{present: true, kind: kind}
}

func (f *readPromptsFn) readJSONL(ctx context.Context, sp split, good func(string, posPrompt), dead func(schemas.DeadLetter), lines func(splitLines)) error {
	// Start one byte early: if that byte ends a line, the split's first line
	// starts exactly at Start and is ours; otherwise the partial line belongs
	// to the previous split.
	from := max(sp.Start-1, 0)
	r, err := openAt(ctx, sp.Path, from)
	if err != nil {
		return err
	}
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<20)
	pos := from
	if sp.Start > 0 {
		n, _, err := readLine(br, 0)
		pos += int64(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w %s at byte %d: %v", ErrUnreadable, sp.Path, pos, err)
		}
	}
	firstLine := pos
	lineBase := int64(-1) // lines before firstLine, counted only if a row goes dead
	var k int64           // lines read in this split
	defer func() {
		if k > 0 {
			lines(splitLines{Path: sp.Path, Start: sp.Start, Lines: k})
		}
	}()
	for pos < sp.End {
		lineStart := pos
		n, line, err := readLine(br, f.Opts.MaxLineBytes)
		if n == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF && err != errLineTooLong {
			return fmt.Errorf("%w %s at byte %d: %v", ErrUnreadable, sp.Path, pos, err)
		}
		pos += int64(n)
		k++
		lineNo := func() int64 {
			if lineBase < 0 {
				var cerr error
				if lineBase, cerr = countLines(ctx, sp.Path, firstLine); cerr != nil {
					lineBase = -1 << 40 // keeps the row negative: "unknown"
				}
			}
			return max(lineBase+k, -1)
		}
		if err == errLineTooLong {
			f.deadLetter(ctx, dead, sp.Path, lineNo(), ReasonLineTooLong, fmt.Sprintf("%d bytes, limit %d", n, f.Opts.MaxLineBytes), line)
			continue
		}
		if lineStart == 0 {
			line = bytes.TrimPrefix(line, []byte(utf8BOM))
		}
		if len(bytes.TrimSpace(line)) == 0 {
			f.blank.Inc(ctx, 1)
			continue
		}
		if at := invalidUTF8At(string(line)); at >= 0 {
			f.deadLetter(ctx, dead, sp.Path, lineNo(), ReasonInvalidUTF8, fmt.Sprintf("byte %d of the line is not UTF-8", at), line)
			continue
		}
		var jp jsonPrompt
		if err := json.Unmarshal(line, &jp); err != nil {
			f.deadLetter(ctx, dead, sp.Path, lineNo(), ReasonMalformed, err.Error(), line)
			continue
		}
		id, lang, prompt, source := jsonField(jp.ID), jsonField(jp.Lang), jsonField(jp.Prompt), jsonField(jp.Source)
		p, kind, detail := f.validate(id, lang, prompt, source, sp.Path)
		if kind == "" {
			for _, n := range []struct {
				name string
				raw  json.RawMessage
				v    field
			}{{"id", jp.ID, id}, {"lang", jp.Lang, lang}, {"prompt", jp.Prompt, prompt}, {"source", jp.Source, source}} {
				if n.v.isStr && loneSurrogate(n.raw, n.v.str) {
					kind, detail = ReasonInvalidUTF8, n.name+": \\u escape of an unpaired surrogate"
					break
				}
			}
		}
		if kind != "" {
			f.deadLetter(ctx, dead, sp.Path, lineNo(), kind, detail, line)
			continue
		}
		good(promptKey(p), posPrompt{P: p, Path: sp.Path, Offset: lineStart, Split: sp.Start, Line: k})
	}
	return nil
}

var errLineTooLong = errors.New("line too long")

// readLine reads through the next '\n' and returns the bytes consumed and the
// line (without the newline, and without a trailing '\r'). With limit > 0 a
// longer line is consumed but returned truncated with errLineTooLong.
func readLine(br *bufio.Reader, limit int) (int, []byte, error) {
	var line []byte
	n := 0
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		n += len(chunk)
		if limit > 0 && !tooLong {
			if len(line)+len(chunk) > limit {
				tooLong = true
				line = append(line, chunk[:min(len(chunk), 1024)]...)
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if tooLong {
			return n, line, errLineTooLong
		}
		if err == io.EOF && n > 0 {
			return n, line, nil // last line without newline
		}
		return n, line, err
	}
}

// countLines counts '\n' in the first n bytes of p: the line number base of a
// split, needed only when the split dead-letters a row.
func countLines(ctx context.Context, p string, n int64) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	r, err := openAt(ctx, p, 0)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	var lines int64
	lr := io.LimitReader(r, n)
	for {
		m, err := lr.Read(buf)
		lines += int64(bytes.Count(buf[:m], []byte("\n")))
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
