package selfreward

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Wire types of the OpenAI chat/completions and legacy completions APIs, as
// far as vLLM, TGI, llama.cpp's server, Ollama and our serve all speak them.
// Decoding is lenient about fields we do not need and strict about the ones
// we do: a 200 response without choices is malformed and retried.

type chatMessage struct {
	Role    string  `json:"role"`
	Content *string `json:"content"`
}

type requestBody struct {
	Model       string        `json:"model"`
	Messages    []chatMessage `json:"messages,omitempty"`
	Prompt      string        `json:"prompt,omitempty"`
	N           int           `json:"n,omitempty"`
	Temperature float64       `json:"temperature"`
	TopP        float64       `json:"top_p"`
	MaxTokens   int           `json:"max_tokens,omitempty"`
	Seed        *int64        `json:"seed,omitempty"`
	// Chat: logprobs is a bool and top_logprobs a count. Completions:
	// logprobs is the count. Both shapes go through this one field.
	Logprobs    any `json:"logprobs,omitempty"`
	TopLogprobs int `json:"top_logprobs,omitempty"`
}

type topLP struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
}

type chatTokenLP struct {
	Token       string  `json:"token"`
	Logprob     float64 `json:"logprob"`
	TopLogprobs []topLP `json:"top_logprobs"`
}

type legacyLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
}

type responseChoice struct {
	Index        int          `json:"index"`
	Message      *chatMessage `json:"message"`
	Text         *string      `json:"text"`
	FinishReason string       `json:"finish_reason"`
	// Chat puts {"content": [...]} here, completions the legacy struct; keep
	// it raw and decode by API.
	Logprobs json.RawMessage `json:"logprobs"`
}

type responseBody struct {
	Choices []responseChoice `json:"choices"`
	Usage   *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error any `json:"error"`
}

// ErrMalformed marks a response that is not the JSON we asked for; it is
// retried like a 5xx, since proxies and overloaded servers produce it.
var ErrMalformed = errors.New("malformed response")

func decodeResponse(data []byte, chat bool) ([]Completion, error) {
	var r responseBody
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %v (body %q)", ErrMalformed, err, truncate(string(data), 200))
	}
	if r.Error != nil {
		return nil, fmt.Errorf("%w: error object in 200 response: %v", ErrMalformed, r.Error)
	}
	if len(r.Choices) == 0 {
		return nil, fmt.Errorf("%w: no choices (body %q)", ErrMalformed, truncate(string(data), 200))
	}
	sort.SliceStable(r.Choices, func(i, j int) bool { return r.Choices[i].Index < r.Choices[j].Index })
	out := make([]Completion, 0, len(r.Choices))
	totalBytes := 0
	for _, c := range r.Choices {
		var comp Completion
		comp.FinishReason = c.FinishReason
		switch {
		case chat && c.Message != nil && c.Message.Content != nil:
			comp.Text = *c.Message.Content
		case chat && c.Message == nil:
			return nil, fmt.Errorf("%w: chat choice %d has no message", ErrMalformed, c.Index)
		case !chat && c.Text != nil:
			comp.Text = *c.Text
		case !chat:
			return nil, fmt.Errorf("%w: completion choice %d has no text", ErrMalformed, c.Index)
		}
		lps, err := decodeLogprobs(c.Logprobs, chat)
		if err != nil {
			return nil, fmt.Errorf("%w: choice %d logprobs: %v", ErrMalformed, c.Index, err)
		}
		comp.Logprobs = lps
		totalBytes += len(comp.Text)
		out = append(out, comp)
	}
	// Usage counts all choices together. Per choice: the log-probs count when
	// present, else a split of the total by text length.
	total := 0
	if r.Usage != nil {
		total = r.Usage.CompletionTokens
	}
	for i := range out {
		switch {
		case len(out[i].Logprobs) > 0 && len(out) > 1:
			out[i].Tokens = len(out[i].Logprobs)
		case len(out) == 1 && total > 0:
			out[i].Tokens = total
		case total > 0 && totalBytes > 0:
			out[i].Tokens = (total*len(out[i].Text) + totalBytes/2) / totalBytes
		default:
			out[i].Tokens = (len(out[i].Text) + 3) / 4 // no usage at all: ~4 bytes per token
		}
	}
	return out, nil
}

func decodeLogprobs(raw json.RawMessage, chat bool) ([]TokenLogprob, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return nil, nil
	}
	var out []TokenLogprob
	off := 0
	if chat {
		var v struct {
			Content []chatTokenLP `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		for _, t := range v.Content {
			tl := TokenLogprob{Token: t.Token, Logprob: t.Logprob, Offset: off}
			for _, a := range t.TopLogprobs {
				tl.Top = append(tl.Top, TopLogprob{Token: a.Token, Logprob: a.Logprob})
			}
			off += len(t.Token)
			out = append(out, tl)
		}
		return out, nil
	}
	var v legacyLogprobs
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	for i, tok := range v.Tokens {
		tl := TokenLogprob{Token: tok, Offset: off}
		if i < len(v.TokenLogprobs) && v.TokenLogprobs[i] != nil {
			tl.Logprob = *v.TokenLogprobs[i]
		}
		if i < len(v.TopLogprobs) {
			keys := make([]string, 0, len(v.TopLogprobs[i]))
			for k := range v.TopLogprobs[i] {
				keys = append(keys, k)
			}
			sort.Strings(keys) // map order is random; keep Top deterministic
			for _, k := range keys {
				tl.Top = append(tl.Top, TopLogprob{Token: k, Logprob: v.TopLogprobs[i][k]})
			}
		}
		off += len(tok)
		out = append(out, tl)
	}
	return out, nil
}
