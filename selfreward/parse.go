package selfreward

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors of ParseScore. A judgment that fails with any of them is
// counted as a parse failure and ignored: the parser never guesses.
var (
	ErrNoScore         = errors.New("no score found")
	ErrAmbiguousScore  = errors.New("ambiguous score")
	ErrScoreOutOfRange = errors.New("score outside 0..5")
	ErrWrongScale      = errors.New("score on a scale other than 0..5")
)

// MaxScore is the top of the additive rubric.
const MaxScore = 5

// ScoreMatch is a parsed judge score and where its first digit sits in the
// original (unnormalised) text, in bytes. The offset lets the caller find the
// token that carried the score among the server's log-probs.
type ScoreMatch struct {
	Score  float64
	Offset int
}

// digitZeros lists the zero of every decimal digit block we accept, so that a
// judge answering in Arabic, Devanagari, Bengali, Thai or full-width CJK
// digits is read like one answering in ASCII.
var digitZeros = []rune{'0', 0x0660, 0x06F0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0E50, 0x0ED0, 0xFF10}

func digitValue(r rune) (int, bool) {
	for _, z := range digitZeros {
		if r >= z && r <= z+9 {
			return int(r - z), true
		}
	}
	return 0, false
}

// normRune maps look-alike punctuation and non-ASCII digits to ASCII and
// lower-cases letters. Each rune maps to exactly one rune, which is what
// keeps the offset map in normalise simple.
func normRune(r rune) rune {
	if d, ok := digitValue(r); ok {
		return rune('0' + d)
	}
	switch r {
	case '：', '∶', '꞉', '﹕':
		return ':'
	case '／', '⁄', '∕':
		return '/'
	case '＝':
		return '='
	case '．':
		return '.'
	case '，':
		return ','
	case '－', '−', '–', '—':
		return '-'
	case '＊':
		return '*'
	case '\u00a0', '\u3000', '\u2009', '\u202f':
		return ' '
	}
	return unicode.ToLower(r)
}

// normalise returns the normalised text and, for each byte of it, the byte
// offset in the original of the rune it came from.
func normalise(s string) (string, []int) {
	var b strings.Builder
	offs := make([]int, 0, len(s))
	for i, r := range s {
		n := normRune(r)
		w := utf8.RuneLen(n)
		if w < 0 {
			n, w = utf8.RuneError, 3
		}
		b.WriteRune(n)
		for k := 0; k < w; k++ {
			offs = append(offs, i)
		}
	}
	return b.String(), offs
}

// Words that label a score in the languages the project targets. Scripts
// with word spaces need a boundary before the word ("underscore: 3" is not a
// score); CJK and Thai have none. English "note" is left out on purpose
// ("Note: 5 steps are missing").
const (
	spacedKeywords   = `score|scores|rating|grade|punktzahl|punkte|gesamtpunktzahl|bewertung|puntuación|puntuacion|puntaje|calificación|pontuação|pontuacao|nota|punteggio|voto|note finale|оценка|балл|баллы|điểm|puan|skor|nilai|النتيجة|الدرجة|التقييم|درجة|स्कोर|अंक|স্কোর`
	unspacedKeywords = `评分|分数|得分|总分|評分|分數|スコア|点数|得点|評価|점수|평점|총점|คะแนน`
)

var (
	// labelled: "<keyword> : <number>[/<den>]" with markdown noise allowed.
	labelledRe = regexp.MustCompile(`(?:(?:^|[^\p{L}\p{M}])(?:` + spacedKeywords + `)|(?:` + unspacedKeywords + `))(?:[ \t]*\([^)\n]{0,24}\))?[ \t*_]*(?::|=|为|是|は)[ \t*_]*(-?[0-9]+(?:[.,][0-9]+)?)(?:[ \t]*(?:/|out of)[ \t]*([0-9]+))?`)
	// fraction: "4/5" or "4 out of 5" with no label.
	fractionRe = regexp.MustCompile(`(?:^|[^0-9.,])(-?[0-9]+(?:[.,][0-9]+)?)[ \t]*(?:/|out of|von|sur|de|su|из|中)[ \t]*([0-9]+)(?:[^0-9]|$)`)
	// bare: the whole answer is a number (after markdown and a final period).
	bareRe = regexp.MustCompile(`^[ \t\r\n*_]*(-?[0-9]+(?:[.,][0-9]+)?)[ \t\r\n*_.]*$`)
	// rangeAfter: "Score: 3-4", "Score: 3 or 4": the judge did not decide.
	rangeAfter = regexp.MustCompile(`^[ \t*_]*(?:-|~|to|or|oder|ou|o|bis|или|或|到)[ \t*_]*[0-9]`)
)

type rawMatch struct {
	num, den string
	start    int // byte offset of num in the normalised text
	end      int
}

// ParseScore reads a judge score from free text in any language. It accepts
// a labelled score ("Score: 4", "**Score:** 4/5", "score：４", "Punktzahl: 3",
// "评分：4", "Score: 4.5"), else an unlabelled fraction of 5 ("4/5", "4 out of
// 5"), else an answer that is nothing but a number. Several labelled scores
// must agree; a range ("3-4"), a scale other than 5 ("8/10") or a number
// outside 0..5 is refused, never rounded or rescaled.
func ParseScore(text string) (ScoreMatch, error) {
	norm, offs := normalise(text)
	if ms := findAll(labelledRe, norm, 1, 2); len(ms) > 0 {
		return decide(ms, norm, offs, "labelled")
	}
	if ms := findAll(fractionRe, norm, 1, 2); len(ms) > 0 {
		return decide(ms, norm, offs, "fraction")
	}
	if m := bareRe.FindStringSubmatchIndex(norm); m != nil {
		return decide([]rawMatch{{num: norm[m[2]:m[3]], start: m[2], end: m[3]}}, norm, offs, "bare")
	}
	return ScoreMatch{}, ErrNoScore
}

func findAll(re *regexp.Regexp, s string, numGroup, denGroup int) []rawMatch {
	var out []rawMatch
	for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
		r := rawMatch{num: s[m[2*numGroup]:m[2*numGroup+1]], start: m[2*numGroup], end: m[2*numGroup+1]}
		if len(m) > 2*denGroup+1 && m[2*denGroup] >= 0 {
			r.den = s[m[2*denGroup]:m[2*denGroup+1]]
			r.end = m[2*denGroup+1]
		}
		out = append(out, r)
	}
	return out
}

func decide(ms []rawMatch, norm string, offs []int, kind string) (ScoreMatch, error) {
	var first ScoreMatch
	for i, m := range ms {
		if m.den != "" && m.den != "5" {
			return ScoreMatch{}, fmt.Errorf("%w: %s %q/%s", ErrWrongScale, kind, m.num, m.den)
		}
		if m.den == "" && rangeAfter.MatchString(norm[m.end:]) {
			return ScoreMatch{}, fmt.Errorf("%w: %s score %q is a range", ErrAmbiguousScore, kind, m.num)
		}
		v, err := strconv.ParseFloat(strings.Replace(m.num, ",", ".", 1), 64)
		if err != nil || math.IsNaN(v) {
			return ScoreMatch{}, fmt.Errorf("%w: %q", ErrNoScore, m.num)
		}
		if v < 0 || v > MaxScore {
			return ScoreMatch{}, fmt.Errorf("%w: %v", ErrScoreOutOfRange, v)
		}
		cur := ScoreMatch{Score: v, Offset: offs[m.start]}
		if strings.HasPrefix(m.num, "-") {
			cur.Offset = offs[m.start+1]
		}
		if i == 0 {
			first = cur
		} else if cur.Score != first.Score {
			return ScoreMatch{}, fmt.Errorf("%w: %s scores %v and %v disagree", ErrAmbiguousScore, kind, first.Score, cur.Score)
		}
	}
	return first, nil
}

// TopLogprob is one alternative token at a position with its log-probability.
type TopLogprob struct {
	Token   string
	Logprob float64
}

// TokenLogprob is one generated token with its top alternatives. Offset is
// the token's byte offset in the generated text.
type TokenLogprob struct {
	Token   string
	Logprob float64
	Offset  int
	Top     []TopLogprob
}

// scoreToken reads a token that is one score digit, allowing the leading
// space or full-width form a tokenizer may attach ("4", " 4", "４").
func scoreToken(tok string) (int, bool) {
	t := strings.TrimSpace(tok)
	r, w := utf8.DecodeRuneInString(t)
	if w == 0 || w != len(t) {
		return 0, false
	}
	d, ok := digitValue(r)
	if !ok || d > MaxScore {
		return 0, false
	}
	return d, true
}

// WeightedScore is the probability-weighted mean over the score tokens
// "0".."5" among the alternatives at one position, renormalised over those
// tokens. ok is false when they carry less than minMass of probability: then
// the position was not really a score slot and the parsed number is used.
func WeightedScore(top []TopLogprob, minMass float64) (score, mass float64, ok bool) {
	var p [MaxScore + 1]float64
	for _, t := range top {
		if d, ok := scoreToken(t.Token); ok && !math.IsNaN(t.Logprob) {
			p[d] += math.Exp(t.Logprob)
		}
	}
	var sum float64
	for d, q := range p {
		mass += q
		sum += float64(d) * q
	}
	if mass <= 0 || mass < minMass {
		return math.NaN(), mass, false
	}
	return sum / mass, mass, true
}

// tokenAt returns the token whose bytes cover offset.
func tokenAt(toks []TokenLogprob, offset int) (TokenLogprob, bool) {
	for _, t := range toks {
		if offset >= t.Offset && offset < t.Offset+len(t.Token) {
			return t, true
		}
	}
	return TokenLogprob{}, false
}
