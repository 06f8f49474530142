package hftok

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Hugging Face tokenizers compile Split and Replace patterns with Oniguruma
// (Ruby syntax, UTF-8). Go's regexp has the same leftmost-first semantics but
// no look-around and ASCII-only \s \d \w. onigRegex runs the subset of
// Oniguruma that tokenizer.json files use:
//
//   - the pattern is split into its top-level alternatives; at each position
//     the alternatives are tried in order and the first that matches wins,
//     as a backtracking engine does;
//   - the alternative `\s+(?!\S)` (GPT-2, Llama-3) is matched by hand: a run
//     of whitespace up to the end of the text, or the run minus its last
//     character when a non-space follows;
//   - every other alternative is translated to Go syntax with Oniguruma's
//     Unicode classes (\s = White_Space, \d = Nd, \w = letters, marks, Nd,
//     Pc) and line anchors, then matched anchored at the position;
//   - anything else Oniguruma-only (other look-around, atomic groups,
//     possessive quantifiers, back-references, \b, nested or intersected
//     classes, inline flags other than i) is refused when the tokenizer loads.
type onigRegex struct {
	src  string
	alts []onigAlt
}

type onigAlt struct {
	re         *regexp.Regexp // anchored ^(?:alt); nil for the hand-matched alternative
	prefix     *regexp.Regexp // ^(?:P)$ where P matches every prefix of a match of alt
	wsNotFinal bool           // `\s+(?!\S)`
}

// Oniguruma's \s in UTF-8 mode is the Unicode White_Space property.
const wsBody = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`
const wordBody = `\p{L}\p{M}\p{Nd}\p{Pc}`

// isWS is the same White_Space set as wsBody.
func isWS(r rune) bool { return unicode.Is(unicode.White_Space, r) }

func compileOnig(pattern string) (*onigRegex, error) {
	alts, err := splitAlternatives(pattern)
	if err != nil {
		return nil, err
	}
	r := &onigRegex{src: pattern}
	for _, a := range alts {
		if a == `\s+(?!\S)` {
			r.alts = append(r.alts, onigAlt{wsNotFinal: true})
			continue
		}
		g, err := translateAlt(a)
		if err != nil {
			return nil, fmt.Errorf("regex %q: alternative %q: %w", pattern, a, err)
		}
		re, err := regexp.Compile(`^(?:` + g + `)`)
		if err != nil {
			return nil, fmt.Errorf("regex %q: alternative %q: %v", pattern, a, err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("regex %q: alternative %q can match the empty string (not implemented)", pattern, a)
		}
		pre, err := prefixRegexp(g)
		if err != nil {
			return nil, fmt.Errorf("regex %q: alternative %q: %v", pattern, a, err)
		}
		r.alts = append(r.alts, onigAlt{re: re, prefix: pre})
	}
	return r, nil
}

// splitAlternatives cuts a pattern at its top-level '|'.
func splitAlternatives(p string) ([]string, error) {
	var alts []string
	depth, start := 0, 0
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(p) && p[i+1] == '^' {
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("regex %q: unbalanced ')'", p)
			}
		case c == '|' && depth == 0:
			alts = append(alts, p[start:i])
			start = i + 1
		}
	}
	if depth != 0 || inClass {
		return nil, fmt.Errorf("regex %q: unbalanced group or class", p)
	}
	return append(alts, p[start:]), nil
}

// translateAlt rewrites one alternative from Oniguruma to Go syntax.
func translateAlt(a string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c == '\\' {
			if i+1 >= len(a) {
				return "", fmt.Errorf("trailing backslash")
			}
			i++
			e := a[i]
			switch {
			case e == 's' && inClass:
				b.WriteString(wsBody)
			case e == 's':
				b.WriteString("[" + wsBody + "]")
			case e == 'S' && !inClass:
				b.WriteString("[^" + wsBody + "]")
			case e == 'd' && inClass:
				b.WriteString(`\p{Nd}`)
			case e == 'd':
				b.WriteString(`\p{Nd}`)
			case e == 'D' && !inClass:
				b.WriteString(`\P{Nd}`)
			case e == 'w' && inClass:
				b.WriteString(wordBody)
			case e == 'w':
				b.WriteString("[" + wordBody + "]")
			case e == 'W' && !inClass:
				b.WriteString("[^" + wordBody + "]")
			case e == 'p' || e == 'P':
				j := strings.IndexByte(a[i:], '}')
				if j < 0 || i+1 >= len(a) || a[i+1] != '{' {
					return "", fmt.Errorf(`\%c without {name}`, e)
				}
				b.WriteString(`\` + a[i:i+j+1])
				i += j
			case strings.IndexByte("rntfv", e) >= 0:
				b.WriteByte('\\')
				b.WriteByte(e)
			case e == 'x':
				b.WriteString(`\x`)
			case e < utf8.RuneSelf && unicode.IsPunct(rune(e)) || e < utf8.RuneSelf && unicode.IsSymbol(rune(e)):
				// RE2 takes any escaped ASCII punctuation as the literal.
				b.WriteByte('\\')
				b.WriteByte(e)
			case e == ' ':
				b.WriteByte(' ')
			default:
				return "", fmt.Errorf(`escape \%c not implemented`, e)
			}
			continue
		}
		if inClass {
			switch {
			case c == '[':
				return "", fmt.Errorf("nested character class not implemented")
			case c == '&' && i+1 < len(a) && a[i+1] == '&':
				return "", fmt.Errorf("class intersection not implemented")
			case c == ']':
				inClass = false
			}
			b.WriteByte(c)
			continue
		}
		switch c {
		case '[':
			inClass = true
			b.WriteByte(c)
			if i+1 < len(a) && a[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(a) && a[i+1] == ']' {
				b.WriteString(`\]`)
				i++
			}
		case '(':
			if i+1 < len(a) && a[i+1] == '?' {
				rest := a[i+2:]
				switch {
				case strings.HasPrefix(rest, ":"):
					b.WriteString("(?:")
					i += 2
				case strings.HasPrefix(rest, "i:"):
					b.WriteString("(?i:")
					i += 3
				case strings.HasPrefix(rest, "i)"):
					b.WriteString("(?i)")
					i += 3
				default:
					return "", fmt.Errorf("group (?%s not implemented (look-around, atomic group or inline flag)", firstRunes(rest, 2))
				}
				continue
			}
			b.WriteByte(c)
		case '^':
			b.WriteString("(?m:^)")
		case '$':
			b.WriteString("(?m:$)")
		case '*', '+', '?', '}':
			b.WriteByte(c)
			if i+1 < len(a) && a[i+1] == '+' {
				return "", fmt.Errorf("possessive quantifier not implemented")
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func firstRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// find returns the non-overlapping matches of r in s, as Oniguruma's
// find_iter does (byte offsets).
func (r *onigRegex) find(s string) [][2]int {
	var out [][2]int
	for p := 0; p < len(s); {
		n := -1
		for _, a := range r.alts {
			if a.wsNotFinal {
				n = matchWSNotFinal(s, p)
			} else {
				n = a.matchAt(s, p)
			}
			if n > 0 {
				break
			}
		}
		if n > 0 {
			out = append(out, [2]int{p, p + n})
			p += n
			continue
		}
		_, w := utf8.DecodeRuneInString(s[p:])
		p += w
	}
	return out
}

// matchWSNotFinal matches `\s+(?!\S)` at p: the whitespace run, less its last
// character when a non-space follows; -1 if that leaves nothing.
func matchWSNotFinal(s string, p int) int {
	q, last := p, p
	for q < len(s) {
		r, w := utf8.DecodeRuneInString(s[q:])
		if !isWS(r) {
			break
		}
		last = q
		q += w
	}
	if q == p {
		return -1
	}
	if q == len(s) {
		return q - p
	}
	if last == p {
		return -1
	}
	return last - p
}

// window is the first slice of text an anchored match is tried on. Go's
// backtracker costs time proportional to the input it is given, so matching
// on all of s[p:] at every position would be quadratic.
const window = 64

// matchAt returns the length of the anchored match of a at s[p:], or -1.
// It matches on a short window first. The result on the window is the
// result on the whole text unless some path of the regex could consume the
// entire window (then a longer text could change which path wins); that is
// tested exactly with the prefix-closure regex, and the window doubled.
func (a onigAlt) matchAt(s string, p int) int {
	for w := window; ; w *= 2 {
		end := min(p+w, len(s))
		for end < len(s) && !utf8.RuneStart(s[end]) {
			end++
		}
		t := s[p:end]
		if end == len(s) || !a.prefix.MatchString(t) {
			if loc := a.re.FindStringIndex(t); loc != nil {
				return loc[1]
			}
			return -1
		}
	}
}

// prefixRegexp builds ^(?:P)$ where P matches at least every prefix of every
// string the Go regex g matches (a superset is safe: it only makes matchAt
// look at more text). Assertions count as matching nothing.
func prefixRegexp(g string) (*regexp.Regexp, error) {
	re, err := syntax.Parse(g, syntax.Perl)
	if err != nil {
		return nil, err
	}
	p := prefixOf(re.Simplify())
	return regexp.Compile(`^(?:` + p.String() + `)$`)
}

func prefixOf(re *syntax.Regexp) *syntax.Regexp {
	empty := &syntax.Regexp{Op: syntax.OpEmptyMatch}
	alt := func(subs ...*syntax.Regexp) *syntax.Regexp {
		return &syntax.Regexp{Op: syntax.OpAlternate, Sub: subs}
	}
	cat := func(subs ...*syntax.Regexp) *syntax.Regexp {
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: subs}
	}
	star := func(sub *syntax.Regexp) *syntax.Regexp {
		return &syntax.Regexp{Op: syntax.OpStar, Sub: []*syntax.Regexp{sub}, Flags: re.Flags}
	}
	switch re.Op {
	case syntax.OpLiteral:
		var subs []*syntax.Regexp
		for i := 0; i <= len(re.Rune); i++ {
			subs = append(subs, &syntax.Regexp{Op: syntax.OpLiteral, Rune: re.Rune[:i], Flags: re.Flags})
		}
		return alt(subs...)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return alt(empty, re)
	case syntax.OpCapture:
		return prefixOf(re.Sub[0])
	case syntax.OpConcat:
		var subs []*syntax.Regexp
		for i := range re.Sub {
			subs = append(subs, cat(append(append([]*syntax.Regexp{}, re.Sub[:i]...), prefixOf(re.Sub[i]))...))
		}
		return alt(subs...)
	case syntax.OpAlternate:
		var subs []*syntax.Regexp
		for _, x := range re.Sub {
			subs = append(subs, prefixOf(x))
		}
		return alt(subs...)
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		return cat(star(re.Sub[0]), prefixOf(re.Sub[0]))
	case syntax.OpQuest:
		return prefixOf(re.Sub[0])
	}
	return empty // empty match and assertions
}
