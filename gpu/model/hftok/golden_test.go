package hftok

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func testdata(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "tokenizers", name)
}

type goldenCase struct {
	IDs         []int  `json:"ids"`
	WithSpecial []int  `json:"with_special"`
	Decoded     string `json:"decoded"`
}

type goldenFile struct {
	Generator  string                  `json:"generator"`
	Texts      []string                `json:"texts"`
	Tokenizers map[string][]goldenCase `json:"tokenizers"`
}

func loadGoldens(t testing.TB) goldenFile {
	b, err := os.ReadFile(testdata("goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// Every fixture, every golden text: the ids (with and without special
// tokens) and the decoded text equal what HF tokenizers produced.
func TestGoldensMatchHF(t *testing.T) {
	g := loadGoldens(t)
	if len(g.Texts) < 200 || len(g.Tokenizers) < 6 {
		t.Fatalf("goldens: %d texts, %d tokenizers", len(g.Texts), len(g.Tokenizers))
	}
	for name, cases := range g.Tokenizers {
		t.Run(name, func(t *testing.T) {
			tok, err := Load(testdata(name))
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i, c := range cases {
				text := g.Texts[i]
				var msgs []string
				if got := tok.Encode(text, false); !slices.Equal(got, c.IDs) {
					msgs = append(msgs, fmt.Sprintf("ids %v, HF %v", got, c.IDs))
				}
				if got := tok.Encode(text, true); !slices.Equal(got, c.WithSpecial) {
					msgs = append(msgs, fmt.Sprintf("with special %v, HF %v", got, c.WithSpecial))
				}
				if got := tok.Decode(c.WithSpecial, true); got != c.Decoded {
					msgs = append(msgs, fmt.Sprintf("decoded %q, HF %q", got, c.Decoded))
				}
				if len(msgs) > 0 {
					bad++
					if bad <= 8 {
						t.Errorf("text %d %q: %v", i, text, msgs)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d texts differ from HF", bad, len(cases))
			}
		})
	}
}

// BenchmarkEncode: all golden texts joined (about 17 KB, 16 scripts) through
// each fixture.
func BenchmarkEncode(b *testing.B) {
	g := loadGoldens(b)
	text := strings.Join(g.Texts, "\n")
	for _, name := range []string{"llama3-style.json", "gemma-style.json"} {
		tok, err := Load(testdata(name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for i := 0; i < b.N; i++ {
				tok.Encode(text, true)
			}
		})
	}
}
