package model

import (
	"fmt"
	"strings"

	"github.com/gomlx/go-huggingface/tokenizers/api"
	"github.com/gomlx/go-huggingface/tokenizers/hftokenizer"
)

// Tokenizer turns text into token ids and back. Encode never adds special
// tokens: callers place BOS/EOS themselves so prompt/response boundaries are exact.
type Tokenizer interface {
	Encode(text string) []int
	Decode(ids []int) string
	BOS() int
	EOS() int
	PAD() int
	VocabSize() int
}

// Byte-level special tokens of the tiny model: after the 256 byte values.
const (
	ByteBOS = 256
	ByteEOS = 257
	BytePAD = 258
)

// ByteTokenizer maps every UTF-8 byte to its own id, so every language and
// script is representable with a 259-token vocabulary.
type ByteTokenizer struct{}

func (ByteTokenizer) Encode(text string) []int {
	ids := make([]int, len(text))
	for i := 0; i < len(text); i++ {
		ids[i] = int(text[i])
	}
	return ids
}

// Decode drops special ids; byte sequences that are not valid UTF-8 (a sampled
// continuation can stop mid-character) become U+FFFD so callers get valid strings.
func (ByteTokenizer) Decode(ids []int) string {
	b := make([]byte, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < 256 {
			b = append(b, byte(id))
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func (ByteTokenizer) BOS() int       { return ByteBOS }
func (ByteTokenizer) EOS() int       { return ByteEOS }
func (ByteTokenizer) PAD() int       { return BytePAD }
func (ByteTokenizer) VocabSize() int { return 259 }

// HFTokenizer wraps a tokenizer.json (go-huggingface) with ids from config.json.
type HFTokenizer struct {
	tok           *hftokenizer.Tokenizer
	bos, eos, pad int
}

// LoadHFTokenizer reads a tokenizer.json; special ids come from the model
// config (the tokenizer.json alone does not say which token is BOS/EOS).
func LoadHFTokenizer(path string, cfg *Config) (*HFTokenizer, error) {
	tok, err := hftokenizer.NewFromFile(&api.Config{}, path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if err := tok.With(api.EncodeOptions{AddSpecialTokens: false}); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	first := func(l IDList, def int) int {
		if len(l) > 0 {
			return l[0]
		}
		return def
	}
	t := &HFTokenizer{tok: tok, bos: first(cfg.BOSTokenID, -1), eos: first(cfg.EOSTokenID, -1)}
	t.pad = first(cfg.PadTokenID, t.eos)
	if t.eos < 0 {
		return nil, fmt.Errorf("tokenizer %s: config.json has no eos_token_id", path)
	}
	return t, nil
}

func (t *HFTokenizer) Encode(text string) []int { return t.tok.Encode(text) }
func (t *HFTokenizer) Decode(ids []int) string {
	keep := ids[:0:0]
	for _, id := range ids {
		if id != t.bos && id != t.eos && id != t.pad {
			keep = append(keep, id)
		}
	}
	return t.tok.Decode(keep)
}
func (t *HFTokenizer) BOS() int       { return t.bos }
func (t *HFTokenizer) EOS() int       { return t.eos }
func (t *HFTokenizer) PAD() int       { return t.pad }
func (t *HFTokenizer) VocabSize() int { return t.tok.VocabSize() }
