package hftok

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplitRegexLikeOniguruma(t *testing.T) {
	cases := map[string][]string{
		"a   b":          {"a", "  ", " b"},        // \s+(?!\S) leaves the last space to " b"
		"a   ":           {"a", "   "},             // at the end the whole run
		"hello؟ world":   {"hello", "؟", " world"}, // letter / punctuation boundary
		"I'm 12345":      {"I", "'m", " 12345"},
		"x\u00a0\u3000y": {"x", "\u00a0", "\u3000", "y"}, // Unicode whitespace is \s; only " " joins a word
	}
	for in, want := range cases {
		var got []string
		for _, m := range gpt2Regex.find(in) {
			got = append(got, in[m[0]:m[1]])
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestRefusesWhatItDoesNotImplement(t *testing.T) {
	base, err := os.ReadFile(testdata("llama2-style.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(base)
	edits := map[string][2]string{
		"unknown top-level key":  {`"version":"1.0"`, `"version":"1.0","future_option":true`},
		"unknown model key":      {`"ignore_merges":false`, `"ignore_merges":false,"new_knob":1`},
		"BPE dropout":            {`"dropout":null`, `"dropout":0.1`},
		"unknown normalizer":     {`{"type":"Prepend","prepend":"▁"}`, `{"type":"Precompiled","precompiled_charsmap":"AA=="}`},
		"lookbehind regex":       {`"pattern":{"String":" "}`, `"pattern":{"Regex":"(?<=a) "}`},
		"Unigram model":          {`"type":"BPE"`, `"type":"Unigram"`},
		"unknown decoder":        {`{"type":"Fuse"}`, `{"type":"CTC"}`},
		"unknown post-processor": {`"post_processor":{"type":"TemplateProcessing"`, `"post_processor":{"type":"RobertaProcessing"`},
	}
	for name, e := range edits {
		if !strings.Contains(s, e[0]) {
			t.Fatalf("%s: fixture has no %q", name, e[0])
		}
		_, err := Parse([]byte(strings.Replace(s, e[0], e[1], 1)))
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
	meta, _ := os.ReadFile(testdata("metaspace-style.json"))
	withNorm := strings.Replace(string(meta), `"normalizer":null`, `"normalizer":{"type":"NFC"}`, 1)
	if _, err := Parse([]byte(withNorm)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Metaspace first after a normalizer: err = %v", err)
	}
}

// Characters outside the vocabulary become <0xXX> byte tokens, never <unk>.
func TestByteFallback(t *testing.T) {
	tok, err := Load(testdata("llama2-style.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode("𠀀", false) // F0 A0 80 80, not in the fixture's alphabet
	var want []int
	for _, b := range []string{"<0xF0>", "<0xA0>", "<0x80>", "<0x80>"} {
		id, ok := tok.TokenID(b)
		if !ok {
			t.Fatal(b)
		}
		want = append(want, id)
	}
	if len(ids) != 5 || !slices.Equal(ids[1:], want) {
		t.Fatalf("ids %v, want ▁ then %v", ids, want)
	}
	if tok.Decode(ids, true) != "𠀀" {
		t.Fatalf("decode %q", tok.Decode(ids, true))
	}
	if p, s := tok.Template(); !slices.Equal(p, []int{1}) || len(s) != 0 {
		t.Fatalf("template %v %v", p, s)
	}
}

func TestLossyUTF8LikeRust(t *testing.T) {
	cases := map[string]string{
		"ok":                 "ok",
		"\xe4\xb8":           "\uFFFD",       // truncated sequence: one maximal subpart
		"\xff\xfe":           "\uFFFD\uFFFD", // two invalid bytes: two
		"a\xe4\xb8b\xf0\x9f": "a\uFFFDb\uFFFD",
		"\xed\xa0\x80":       "\uFFFD\uFFFD\uFFFD", // surrogate: ED then A0 outside 80..9F
	}
	for in, want := range cases {
		if got := lossyUTF8([]byte(in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// The windowed anchored match (matchAt) equals the anchored match on the
// whole remaining text, for every alternative of the GPT-2 and Llama-3
// patterns, on random text with long runs that cross the window.
func TestWindowedMatchEqualsFullMatch(t *testing.T) {
	llama3, err := compileOnig(`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`)
	if err != nil {
		t.Fatal(err)
	}
	pieces := []string{" ", "  ", "\n", "\r\n", "\t", "\u3000", "a", "Zé", "ж", "猫", "ب", "7", "42", "'s", "'LL", "!", "?!", "…", "🐈", "-", "_"}
	r := NewTestRNG(1)
	for n := 0; n < 400; n++ {
		var b strings.Builder
		for b.Len() < 300 {
			p := pieces[r.Intn(len(pieces))]
			b.WriteString(strings.Repeat(p, 1+r.Intn(3)*r.Intn(40)))
		}
		s := b.String()
		for _, re := range []*onigRegex{gpt2Regex, llama3} {
			for _, a := range re.alts {
				if a.wsNotFinal {
					continue
				}
				for p := 0; p < len(s); p++ {
					if !utf8.RuneStart(s[p]) {
						continue
					}
					want := -1
					if loc := a.re.FindStringIndex(s[p:]); loc != nil {
						want = loc[1]
					}
					if got := a.matchAt(s, p); got != want {
						t.Fatalf("alt %v at %d of %q: windowed %d, full %d", a.re, p, s, got, want)
					}
				}
			}
		}
	}
}

type testRNG struct{ x uint64 }

func NewTestRNG(seed uint64) *testRNG { return &testRNG{seed*0x9E3779B97F4A7C15 + 1} }
func (r *testRNG) Intn(n int) int {
	r.x ^= r.x << 13
	r.x ^= r.x >> 7
	r.x ^= r.x << 17
	return int(r.x % uint64(n))
}

// Arbitrary input (invalid UTF-8, control bytes, partial special tokens)
// never panics and gives ids inside the vocabulary.
func TestArbitraryInputNoPanic(t *testing.T) {
	g := loadGoldens(t)
	r := NewTestRNG(9)
	alphabet := []string{"\xff", "\xe4\xb8", "<", "|", "<s", "<s>", "<|eot_id|>", " ", "\n", "a", "é", "猫", "🐈", "\x00", "▁", "Ġ", "'", "9"}
	for name := range g.Tokenizers {
		tok, err := Load(testdata(name))
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 300; n++ {
			var b strings.Builder
			for k := r.Intn(40); k > 0; k-- {
				b.WriteString(alphabet[r.Intn(len(alphabet))])
			}
			ids := tok.Encode(b.String(), true)
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("%s: id %d out of range for %q", name, id, b.String())
				}
			}
			_ = tok.Decode(ids, false)
		}
	}
}
