package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/congrad-beam/congrad/gpu/model/hftok"
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

// HFTokenizer is a checkpoint's tokenizer.json, encoded and decoded exactly
// as Hugging Face tokenizers does (package hftok), with the special ids the
// checkpoint uses.
type HFTokenizer struct {
	tok           *hftok.Tokenizer
	bos, eos, pad int
}

// LoadHFTokenizer reads a tokenizer.json and, when it sits next to one, the
// tokenizer_config.json. BOS is what the tokenizer's post-processor puts
// before a text (HF tokenizer(text) semantics; -1 when it adds none, and
// then callers add none); EOS and PAD come from config.json (PAD defaults
// to EOS). A post-processor that appends tokens after the text, or a
// tokenizer_config.json that makes transformers rebuild the tokenizer
// differently, is refused with the field named.
func LoadHFTokenizer(path string, cfg *Config) (*HFTokenizer, error) {
	tok, err := hftok.Load(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	prefix, suffix := tok.Template()
	if len(suffix) > 0 {
		return nil, fmt.Errorf("tokenizer %s: post_processor appends %v after the text; not supported (callers place EOS themselves)", path, suffix)
	}
	if len(prefix) > 1 {
		return nil, fmt.Errorf("tokenizer %s: post_processor puts %d tokens %v before the text; only one BOS is supported", path, len(prefix), prefix)
	}
	t := &HFTokenizer{tok: tok, bos: -1, eos: -1}
	if len(prefix) == 1 {
		t.bos = prefix[0]
	}
	if err := checkTokenizerConfig(filepath.Join(filepath.Dir(path), "tokenizer_config.json"), tok, t.bos); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if len(cfg.EOSTokenID) > 0 {
		t.eos = cfg.EOSTokenID[0]
	}
	if t.eos < 0 {
		return nil, fmt.Errorf("tokenizer %s: config.json has no eos_token_id", path)
	}
	t.pad = t.eos
	if len(cfg.PadTokenID) > 0 {
		t.pad = cfg.PadTokenID[0]
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("tokenizer %s: %d token ids but vocab_size is %d", path, tok.VocabSize(), cfg.VocabSize)
	}
	for name, id := range map[string]int{"eos_token_id": t.eos, "pad_token_id": t.pad, "BOS": t.bos} {
		if id >= cfg.VocabSize {
			return nil, fmt.Errorf("tokenizer %s: %s %d outside vocab_size %d", path, name, id, cfg.VocabSize)
		}
	}
	return t, nil
}

// checkTokenizerConfig refuses the tokenizer_config.json settings with which
// transformers does not use tokenizer.json as it is: from_slow, a non-null
// add_prefix_space (both rebuild the tokenizer from the SentencePiece
// model), add_eos_token, and an add_bos_token or bos_token that disagrees
// with the post-processor (transformers' Llama and Gemma tokenizer classes
// rebuild the template from those two).
func checkTokenizerConfig(path string, tok *hftok.Tokenizer, bos int) error {
	addsBOS := bos >= 0
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var tc map[string]json.RawMessage
	if err := json.Unmarshal(b, &tc); err != nil {
		return fmt.Errorf("tokenizer_config.json: %v", err)
	}
	isTrue := func(k string) bool { return strings.TrimSpace(string(tc[k])) == "true" }
	isSet := func(k string) bool { v, ok := tc[k]; return ok && strings.TrimSpace(string(v)) != "null" }
	switch {
	case isTrue("from_slow"):
		return fmt.Errorf("tokenizer_config.json: from_slow is true (transformers rebuilds the tokenizer from tokenizer.model); not supported")
	case isSet("add_prefix_space"):
		return fmt.Errorf("tokenizer_config.json: add_prefix_space is set (transformers rebuilds the tokenizer from tokenizer.model); not supported")
	case isTrue("add_eos_token"):
		return fmt.Errorf("tokenizer_config.json: add_eos_token is true; not supported (callers place EOS themselves)")
	case isSet("add_bos_token") && isTrue("add_bos_token") != addsBOS:
		return fmt.Errorf("tokenizer_config.json: add_bos_token is %s but tokenizer.json's post_processor adds BOS: %v; not supported", tc["add_bos_token"], addsBOS)
	}
	if addsBOS && isSet("bos_token") {
		var content string
		if json.Unmarshal(tc["bos_token"], &content) != nil {
			var at struct {
				Content string `json:"content"`
			}
			if json.Unmarshal(tc["bos_token"], &at) != nil {
				return fmt.Errorf("tokenizer_config.json: bos_token %s is neither a string nor a token object", tc["bos_token"])
			}
			content = at.Content
		}
		if id, ok := tok.TokenID(content); !ok || id != bos {
			return fmt.Errorf("tokenizer_config.json: bos_token %q is not the BOS %d that tokenizer.json's post_processor adds; not supported", content, bos)
		}
	}
	return nil
}

func (t *HFTokenizer) Encode(text string) []int { return t.tok.Encode(text, false) }

// Decode is HF decode(ids, skip_special_tokens=True), also dropping the
// BOS, EOS and PAD ids should the tokenizer not mark them special.
func (t *HFTokenizer) Decode(ids []int) string {
	keep := make([]int, 0, len(ids))
	for _, id := range ids {
		if id != t.bos && id != t.eos && id != t.pad {
			keep = append(keep, id)
		}
	}
	return t.tok.Decode(keep, true)
}
func (t *HFTokenizer) BOS() int       { return t.bos }
func (t *HFTokenizer) EOS() int       { return t.eos }
func (t *HFTokenizer) PAD() int       { return t.pad }
func (t *HFTokenizer) VocabSize() int { return t.tok.VocabSize() }
