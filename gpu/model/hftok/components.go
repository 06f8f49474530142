package hftok

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

func typeOf(raw json.RawMessage, where string) (string, error) {
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return "", fmt.Errorf("%s: %v", where, err)
	}
	return t.Type, nil
}

// pattern is HF's SplitPattern / ReplacePattern: {"String": s} or {"Regex": r}.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func (p patternJSON) compile(where string) (*onigRegex, string, error) {
	switch {
	case p.String != nil && p.Regex == nil:
		return nil, *p.String, nil
	case p.Regex != nil && p.String == nil:
		re, err := compileOnig(*p.Regex)
		if err != nil {
			return nil, "", unsupported("%s: %v", where, err)
		}
		return re, "", nil
	}
	return nil, "", fmt.Errorf("%s: pattern needs exactly one of String, Regex", where)
}

// findPattern returns the matches of a String (literal) or Regex pattern.
func findPattern(re *onigRegex, lit, s string) [][2]int {
	if re != nil {
		return re.find(s)
	}
	var out [][2]int
	if lit == "" {
		return nil
	}
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], lit)
		if j < 0 {
			break
		}
		out = append(out, [2]int{i + j, i + j + len(lit)})
		i += j + len(lit)
	}
	return out
}

// ---- normalizers ----

type normalizer interface{ normalize(string) string }

type seqNorm []normalizer
type prependNorm string
type replaceNorm struct {
	re      *onigRegex
	lit     string
	content string
}
type unicodeNorm struct{ form norm.Form }
type lowercaseNorm struct{}
type stripNorm struct{ left, right bool }

func (s seqNorm) normalize(x string) string {
	for _, n := range s {
		x = n.normalize(x)
	}
	return x
}

// Prepend adds its string to non-empty input only.
func (p prependNorm) normalize(x string) string {
	if x == "" {
		return x
	}
	return string(p) + x
}

func (r replaceNorm) normalize(x string) string {
	ms := findPattern(r.re, r.lit, x)
	if len(ms) == 0 {
		return x
	}
	var b strings.Builder
	last := 0
	for _, m := range ms {
		b.WriteString(x[last:m[0]])
		b.WriteString(r.content)
		last = m[1]
	}
	b.WriteString(x[last:])
	return b.String()
}

func (u unicodeNorm) normalize(x string) string { return u.form.String(x) }

// Lowercase maps each character with Rust's char::to_lowercase (no
// context-dependent final sigma; U+0130 becomes "i̇").
func (lowercaseNorm) normalize(x string) string {
	var b strings.Builder
	for _, r := range x {
		if r == 0x130 {
			b.WriteString("i\u0307")
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func (s stripNorm) normalize(x string) string {
	if s.left {
		x = strings.TrimLeftFunc(x, isWS)
	}
	if s.right {
		x = strings.TrimRightFunc(x, isWS)
	}
	return x
}

func newNormalizer(raw json.RawMessage, where string) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := typeOf(raw, where)
	if err != nil {
		return nil, err
	}
	where += "." + typ
	switch typ {
	case "Sequence":
		var j struct {
			Type        string            `json:"type"`
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var s seqNorm
		for i, r := range j.Normalizers {
			n, err := newNormalizer(r, fmt.Sprintf("%s[%d]", where, i))
			if err != nil {
				return nil, err
			}
			if n != nil {
				s = append(s, n)
			}
		}
		return s, nil
	case "Prepend":
		var j struct {
			Type    string `json:"type"`
			Prepend string `json:"prepend"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return prependNorm(j.Prepend), nil
	case "Replace":
		var j struct {
			Type    string      `json:"type"`
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		re, lit, err := j.Pattern.compile(where)
		if err != nil {
			return nil, err
		}
		return replaceNorm{re, lit, j.Content}, nil
	case "NFC", "NFD", "NFKC", "NFKD":
		var j struct {
			Type string `json:"type"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return unicodeNorm{map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD}[typ]}, nil
	case "Lowercase":
		var j struct {
			Type string `json:"type"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return lowercaseNorm{}, nil
	case "Strip":
		var j struct {
			Type  string `json:"type"`
			Left  bool   `json:"strip_left"`
			Right bool   `json:"strip_right"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return stripNorm{j.Left, j.Right}, nil
	}
	return nil, unsupported("%s", where)
}

// ---- pre-tokenizers ----

type preTokenizer interface {
	split([]piece) []piece
}

type seqPre []preTokenizer

type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
}

type splitPre struct {
	re       *onigRegex
	lit      string
	behavior string
	invert   bool
}

type metaspacePre struct {
	replacement string
	scheme      string // always, first, never
	splitOn     bool
}

func subPre(p preTokenizer) []preTokenizer {
	if s, ok := p.(seqPre); ok {
		var out []preTokenizer
		for _, x := range s {
			out = append(out, subPre(x)...)
		}
		return out
	}
	return []preTokenizer{p}
}

func (s seqPre) split(ps []piece) []piece {
	for _, p := range s {
		ps = p.split(ps)
	}
	return ps
}

// The GPT-2 split regex HF's ByteLevel pre-tokenizer applies when use_regex is set.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

var gpt2Regex = func() *onigRegex {
	r, err := compileOnig(gpt2Pattern)
	if err != nil {
		panic(err)
	}
	return r
}()

var byteChar = func() [256]rune {
	var t [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}()

var charByte = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteChar {
		m[r] = byte(b)
	}
	return m
}()

func (b byteLevelPre) split(ps []piece) []piece {
	var out []piece
	for _, p := range ps {
		s := p.text
		if b.addPrefixSpace && !strings.HasPrefix(s, " ") {
			s = " " + s
		}
		parts := []string{s}
		if b.useRegex {
			parts = splitBy(s, gpt2Regex.find(s), "isolated", false)
		}
		for i, x := range parts {
			var sb strings.Builder
			for k := 0; k < len(x); k++ {
				sb.WriteRune(byteChar[x[k]])
			}
			out = append(out, piece{text: sb.String(), id: -1, atStart: p.atStart && i == 0})
		}
	}
	return out
}

func (sp splitPre) split(ps []piece) []piece {
	var out []piece
	for _, p := range ps {
		for i, x := range splitBy(p.text, findPattern(sp.re, sp.lit, p.text), sp.behavior, sp.invert) {
			out = append(out, piece{text: x, id: -1, atStart: p.atStart && i == 0})
		}
	}
	return out
}

func (m metaspacePre) split(ps []piece) []piece {
	var out []piece
	for _, p := range ps {
		s := strings.ReplaceAll(p.text, " ", m.replacement)
		switch m.scheme {
		case "always":
			if !strings.HasPrefix(s, m.replacement) {
				s = m.replacement + s
			}
		case "first":
			if !strings.HasPrefix(s, m.replacement) && p.atStart {
				s = m.replacement + s
			}
		}
		parts := []string{s}
		if m.splitOn {
			parts = splitBy(s, findPattern(nil, m.replacement, s), "merged_with_next", false)
		}
		for i, x := range parts {
			out = append(out, piece{text: x, id: -1, atStart: p.atStart && i == 0})
		}
	}
	return out
}

// splitBy is NormalizedString::split: matches cover the delimiters, the gaps
// between them the rest; behavior says what becomes of delimiters. Empty
// pieces are dropped.
func splitBy(s string, matches [][2]int, behavior string, invert bool) []string {
	type seg struct {
		a, b    int
		isMatch bool
	}
	var segs []seg
	prev := 0
	for _, m := range matches {
		if prev != m[0] {
			segs = append(segs, seg{prev, m[0], false})
		}
		segs = append(segs, seg{m[0], m[1], true})
		prev = m[1]
	}
	if prev != len(s) {
		segs = append(segs, seg{prev, len(s), false})
	}
	if invert {
		for i := range segs {
			segs[i].isMatch = !segs[i].isMatch
		}
	}
	type cut struct {
		a, b   int
		remove bool
	}
	var cuts []cut
	switch behavior {
	case "isolated":
		for _, x := range segs {
			cuts = append(cuts, cut{x.a, x.b, false})
		}
	case "removed":
		for _, x := range segs {
			cuts = append(cuts, cut{x.a, x.b, x.isMatch})
		}
	case "contiguous":
		prevMatch := false
		for _, x := range segs {
			if x.isMatch == prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].b = x.b
			} else {
				cuts = append(cuts, cut{x.a, x.b, false})
			}
			prevMatch = x.isMatch
		}
	case "merged_with_previous":
		prevMatch := false
		for _, x := range segs {
			if x.isMatch && !prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].b = x.b
			} else {
				cuts = append(cuts, cut{x.a, x.b, false})
			}
			prevMatch = x.isMatch
		}
	case "merged_with_next":
		prevMatch := false
		for i := len(segs) - 1; i >= 0; i-- {
			x := segs[i]
			if x.isMatch && !prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].a = x.a
			} else {
				cuts = append(cuts, cut{x.a, x.b, false})
			}
			prevMatch = x.isMatch
		}
		for i, j := 0, len(cuts)-1; i < j; i, j = i+1, j-1 {
			cuts[i], cuts[j] = cuts[j], cuts[i]
		}
	}
	var out []string
	for _, c := range cuts {
		if !c.remove && c.b > c.a {
			out = append(out, s[c.a:c.b])
		}
	}
	return out
}

var behaviors = map[string]string{"Removed": "removed", "Isolated": "isolated", "Contiguous": "contiguous",
	"MergedWithPrevious": "merged_with_previous", "MergedWithNext": "merged_with_next"}

func newPreTokenizer(raw json.RawMessage, where string) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := typeOf(raw, where)
	if err != nil {
		return nil, err
	}
	where += "." + typ
	switch typ {
	case "Sequence":
		var j struct {
			Type          string            `json:"type"`
			PreTokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var s seqPre
		for i, r := range j.PreTokenizers {
			p, err := newPreTokenizer(r, fmt.Sprintf("%s[%d]", where, i))
			if err != nil {
				return nil, err
			}
			if p != nil {
				s = append(s, p)
			}
		}
		return s, nil
	case "ByteLevel":
		j := struct {
			Type           string `json:"type"`
			AddPrefixSpace bool   `json:"add_prefix_space"`
			TrimOffsets    bool   `json:"trim_offsets"` // offsets only
			UseRegex       *bool  `json:"use_regex"`
		}{}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return byteLevelPre{addPrefixSpace: j.AddPrefixSpace, useRegex: j.UseRegex == nil || *j.UseRegex}, nil
	case "Split":
		var j struct {
			Type     string      `json:"type"`
			Pattern  patternJSON `json:"pattern"`
			Behavior string      `json:"behavior"`
			Invert   bool        `json:"invert"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		b, ok := behaviors[j.Behavior]
		if !ok {
			return nil, unsupported("%s: behavior %q", where, j.Behavior)
		}
		re, lit, err := j.Pattern.compile(where)
		if err != nil {
			return nil, err
		}
		return splitPre{re, lit, b, j.Invert}, nil
	case "Metaspace":
		var j struct {
			Type           string  `json:"type"`
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			Split          *bool   `json:"split"`
			AddPrefixSpace *bool   `json:"add_prefix_space"` // legacy layout
			StrRep         *string `json:"str_rep"`          // legacy layout, ignored by HF
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if utf8.RuneCountInString(j.Replacement) != 1 {
			return nil, fmt.Errorf("%s: replacement %q must be one character", where, j.Replacement)
		}
		m := &metaspacePre{replacement: j.Replacement, scheme: "always", splitOn: j.Split == nil || *j.Split}
		if j.AddPrefixSpace != nil && !*j.AddPrefixSpace {
			m.scheme = "never"
		}
		if j.PrependScheme != nil {
			switch *j.PrependScheme {
			case "always", "first", "never":
				m.scheme = *j.PrependScheme
			default:
				return nil, unsupported("%s: prepend_scheme %q", where, *j.PrependScheme)
			}
		}
		return m, nil
	}
	return nil, unsupported("%s", where)
}

// ---- post-processor (single sequences) ----

func (t *Tokenizer) newPostProcessor(raw json.RawMessage, where string) (prefix, suffix []int, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	typ, err := typeOf(raw, where)
	if err != nil {
		return nil, nil, err
	}
	where += "." + typ
	switch typ {
	case "Sequence":
		var j struct {
			Type       string            `json:"type"`
			Processors []json.RawMessage `json:"processors"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		for i, r := range j.Processors {
			p, s, err := t.newPostProcessor(r, fmt.Sprintf("%s[%d]", where, i))
			if err != nil {
				return nil, nil, err
			}
			if (len(p) > 0 || len(s) > 0) && (len(prefix) > 0 || len(suffix) > 0) {
				return nil, nil, unsupported("%s: two processors that add tokens", where)
			}
			prefix, suffix = append(prefix, p...), append(suffix, s...)
		}
		return prefix, suffix, nil
	case "ByteLevel":
		var j struct {
			Type           string `json:"type"`
			AddPrefixSpace bool   `json:"add_prefix_space"`
			TrimOffsets    bool   `json:"trim_offsets"`
			UseRegex       *bool  `json:"use_regex"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		return nil, nil, nil // offsets only
	case "TemplateProcessing":
		type piece struct {
			Sequence *struct {
				ID     string `json:"id"`
				TypeID int    `json:"type_id"`
			} `json:"Sequence"`
			SpecialToken *struct {
				ID     string `json:"id"`
				TypeID int    `json:"type_id"`
			} `json:"SpecialToken"`
		}
		var j struct {
			Type          string          `json:"type"`
			Single        []piece         `json:"single"`
			Pair          json.RawMessage `json:"pair"` // pairs are not encoded here
			SpecialTokens map[string]struct {
				ID     string   `json:"id"`
				IDs    []int    `json:"ids"`
				Tokens []string `json:"tokens"`
			} `json:"special_tokens"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		seen := false
		for i, p := range j.Single {
			switch {
			case p.Sequence != nil && p.SpecialToken == nil:
				if p.Sequence.ID != "A" || seen {
					return nil, nil, unsupported("%s: single[%d] sequence %q", where, i, p.Sequence.ID)
				}
				seen = true
			case p.SpecialToken != nil && p.Sequence == nil:
				st, ok := j.SpecialTokens[p.SpecialToken.ID]
				if !ok {
					return nil, nil, fmt.Errorf("%s: single[%d] names special token %q not in special_tokens", where, i, p.SpecialToken.ID)
				}
				if seen {
					suffix = append(suffix, st.IDs...)
				} else {
					prefix = append(prefix, st.IDs...)
				}
			default:
				return nil, nil, fmt.Errorf("%s: single[%d] needs exactly one of Sequence, SpecialToken", where, i)
			}
		}
		if !seen {
			return nil, nil, fmt.Errorf("%s: single has no $A", where)
		}
		return prefix, suffix, nil
	}
	return nil, nil, unsupported("%s", where)
}

// ---- decoders ----

type decoder interface{ decode([]string) []string }

type seqDec []decoder
type byteLevelDec struct{}
type replaceDec struct{ pattern, content string }
type byteFallbackDec struct{}
type fuseDec struct{}
type stripDec struct {
	content     rune
	start, stop int
}
type metaspaceDec struct {
	replacement rune
	prepend     bool // prepend_scheme != never
}

func (s seqDec) decode(t []string) []string {
	for _, d := range s {
		t = d.decode(t)
	}
	return t
}

func (byteLevelDec) decode(toks []string) []string {
	var b []byte
	for _, t := range toks {
		ok := true
		start := len(b)
		for _, r := range t {
			c, found := charByte[r]
			if !found {
				ok = false
				break
			}
			b = append(b, c)
		}
		if !ok {
			b = append(b[:start], t...)
		}
	}
	return []string{lossyUTF8(b)}
}

// lossyUTF8 is Rust's String::from_utf8_lossy: each maximal invalid
// subsequence becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, w := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || w > 1 {
			sb.Write(b[i : i+w])
			i += w
			continue
		}
		sb.WriteRune(utf8.RuneError)
		i += maximalSubpart(b[i:])
	}
	return sb.String()
}

// maximalSubpart is the length of the longest prefix of b that starts a
// well-formed UTF-8 sequence (at least 1), per Unicode's "maximal subpart".
func maximalSubpart(b []byte) int {
	c := b[0]
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	i := 1
	for k := 0; k < need && i < len(b); k++ {
		l, h := byte(0x80), byte(0xBF)
		if k == 0 {
			l, h = lo, hi
		}
		if b[i] < l || b[i] > h {
			break
		}
		i++
	}
	return i
}

func (r replaceDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = strings.ReplaceAll(t, r.pattern, r.content)
	}
	return out
}

func (byteFallbackDec) decode(toks []string) []string {
	var out []string
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if len(t) == 6 && strings.HasPrefix(t, "<0x") && strings.HasSuffix(t, ">") {
			if v, err := strconv.ParseUint(t[3:5], 16, 8); err == nil {
				pending = append(pending, byte(v))
				continue
			}
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

func (fuseDec) decode(toks []string) []string { return []string{strings.Join(toks, "")} }

func (s stripDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rs := []rune(t)
		a := 0
		for k := 0; k < s.start && k < len(rs); k++ {
			if rs[k] != s.content {
				break
			}
			a = k + 1
		}
		b := len(rs)
		for k := 0; k < s.stop; k++ {
			idx := len(rs) - k - 1
			if idx < 0 || rs[idx] != s.content {
				break
			}
			b = idx
		}
		if b < a {
			b = a
		}
		out[i] = string(rs[a:b])
	}
	return out
}

func (m metaspaceDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		var b strings.Builder
		for _, r := range t {
			if r == m.replacement {
				if i == 0 && m.prepend {
					continue
				}
				b.WriteByte(' ')
				continue
			}
			b.WriteRune(r)
		}
		out[i] = b.String()
	}
	return out
}

func newDecoder(raw json.RawMessage, where string) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := typeOf(raw, where)
	if err != nil {
		return nil, err
	}
	where += "." + typ
	switch typ {
	case "Sequence":
		var j struct {
			Type     string            `json:"type"`
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var s seqDec
		for i, r := range j.Decoders {
			d, err := newDecoder(r, fmt.Sprintf("%s[%d]", where, i))
			if err != nil {
				return nil, err
			}
			if d != nil {
				s = append(s, d)
			}
		}
		return s, nil
	case "ByteLevel":
		var j struct {
			Type           string `json:"type"`
			AddPrefixSpace bool   `json:"add_prefix_space"`
			TrimOffsets    bool   `json:"trim_offsets"`
			UseRegex       *bool  `json:"use_regex"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return byteLevelDec{}, nil
	case "Replace":
		var j struct {
			Type    string      `json:"type"`
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if j.Pattern.String == nil || j.Pattern.Regex != nil {
			return nil, unsupported("%s: only a String pattern", where)
		}
		return replaceDec{*j.Pattern.String, j.Content}, nil
	case "ByteFallback", "Fuse":
		var j struct {
			Type string `json:"type"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if typ == "Fuse" {
			return fuseDec{}, nil
		}
		return byteFallbackDec{}, nil
	case "Strip":
		var j struct {
			Type    string `json:"type"`
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if utf8.RuneCountInString(j.Content) != 1 {
			return nil, fmt.Errorf("%s: content %q must be one character", where, j.Content)
		}
		r, _ := utf8.DecodeRuneInString(j.Content)
		return stripDec{r, j.Start, j.Stop}, nil
	case "Metaspace":
		var j struct {
			Type           string  `json:"type"`
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			Split          *bool   `json:"split"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
			StrRep         *string `json:"str_rep"`
		}
		if err := strictDecode(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if utf8.RuneCountInString(j.Replacement) != 1 {
			return nil, fmt.Errorf("%s: replacement %q must be one character", where, j.Replacement)
		}
		r, _ := utf8.DecodeRuneInString(j.Replacement)
		prepend := j.AddPrefixSpace == nil || *j.AddPrefixSpace
		if j.PrependScheme != nil {
			prepend = *j.PrependScheme != "never"
		}
		return metaspaceDec{r, prepend}, nil
	}
	return nil, unsupported("%s", where)
}
