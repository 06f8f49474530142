package hftok

import (
	"unicode"
	"unicode/utf8"
)

type matchPattern struct {
	text string
	tok  *addedToken
}

// matcher finds added tokens leftmost-longest, non-overlapping, as HF's
// AddedVocabulary does with Aho-Corasick (MatchKind::LeftmostLongest), and
// applies single_word, lstrip and rstrip like AddedVocabulary::find_matches.
type matcher struct {
	byFirst map[byte][]matchPattern
}

func newMatcher(ps []matchPattern) *matcher {
	m := &matcher{byFirst: map[byte][]matchPattern{}}
	seen := map[string]bool{}
	for _, p := range ps {
		if p.text == "" || seen[p.text] {
			continue // the first pattern wins a tie, as in the automaton
		}
		seen[p.text] = true
		m.byFirst[p.text[0]] = append(m.byFirst[p.text[0]], p)
	}
	return m
}

// next returns the leftmost-longest match at or after from.
func (m *matcher) next(s string, from int) (start, end int, tok *addedToken) {
	for i := from; i < len(s); i++ {
		best := -1
		for _, p := range m.byFirst[s[i]] {
			if len(p.text) > best && len(s)-i >= len(p.text) && s[i:i+len(p.text)] == p.text {
				best, tok = len(p.text), p.tok
			}
		}
		if best > 0 {
			return i, i + best, tok
		}
	}
	return -1, -1, nil
}

// split cuts p into added-token pieces and the text between them; empty
// text pieces are dropped (PreTokenizedString::split).
func (m *matcher) split(p piece) []piece {
	s := p.text
	if len(m.byFirst) == 0 || s == "" {
		if s == "" {
			return nil
		}
		return []piece{p}
	}
	var out []piece
	emit := func(a, b, id int) {
		if b > a {
			out = append(out, piece{text: s[a:b], id: id, atStart: p.atStart && a == 0})
		}
	}
	startOffset := 0
	for pos := 0; pos < len(s); {
		start, stop, tok := m.next(s, pos)
		if tok == nil {
			break
		}
		pos = stop
		if tok.SingleWord {
			startSpace := start == 0 || !endsWithWord(s[:start])
			stopSpace := stop == len(s) || !startsWithWord(s[stop:])
			if !startSpace || !stopSpace {
				continue
			}
		}
		if tok.LStrip {
			newStart := start
			for newStart > 0 {
				r, w := utf8.DecodeLastRuneInString(s[:newStart])
				if !isWS(r) {
					break
				}
				newStart -= w
			}
			start = max(newStart, startOffset)
		}
		if tok.RStrip {
			for stop < len(s) {
				r, w := utf8.DecodeRuneInString(s[stop:])
				if !isWS(r) {
					break
				}
				stop += w
			}
		}
		if startOffset < start {
			emit(startOffset, start, -1)
		}
		emit(start, stop, tok.ID)
		startOffset = stop
	}
	if startOffset < len(s) {
		emit(startOffset, len(s), -1)
	}
	return out
}

// isWordRune is Rust regex's Unicode \w.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Nl, r) || r == 0x200C || r == 0x200D
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordRune(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordRune(r)
}
