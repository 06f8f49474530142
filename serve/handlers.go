package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

type sampled struct {
	text, finish string
	tokens       int
	lpTok        string
	lp           float64
	top          []topLogprob
}

// params validates the sampling fields common to both endpoints.
func (h *Handler) params(n *int, temp, topP *float64, maxTok *int, seed *int64, stopRaw json.RawMessage, topK int) (SampleOptions, []string, error) {
	o := SampleOptions{N: 1, Temperature: 1, TopP: 1, MaxTokens: h.opts.DefaultMaxTokens}
	if n != nil {
		o.N = *n
	}
	if temp != nil {
		o.Temperature = *temp
	}
	if topP != nil {
		o.TopP = *topP
	}
	if maxTok != nil {
		o.MaxTokens = *maxTok
	}
	if seed != nil {
		o.Seed = *seed
	} else {
		// Unseeded requests differ from each other, as on any server.
		o.Seed = time.Now().UnixNano() ^ h.nextID.Add(1)
	}
	stop, err := stringOrList(stopRaw, "stop")
	bad := func(f string, a ...any) (SampleOptions, []string, error) {
		return o, nil, fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(f, a...))
	}
	switch {
	case err != nil:
		return bad("%v", err)
	case o.N < 1 || o.N > h.opts.MaxN:
		return bad("n=%d not in 1..%d", o.N, h.opts.MaxN)
	case o.Temperature < 0 || o.Temperature > 2:
		return bad("temperature=%v not in [0,2]", o.Temperature)
	case o.TopP <= 0 || o.TopP > 1:
		return bad("top_p=%v not in (0,1]", o.TopP)
	case o.MaxTokens < 1 || o.MaxTokens > h.opts.MaxTokensLimit:
		return bad("max_tokens=%d not in 1..%d", o.MaxTokens, h.opts.MaxTokensLimit)
	case topK < 0 || topK > 20:
		return bad("top_logprobs=%d not in 0..20", topK)
	case len(stop) > 4:
		return bad("at most 4 stop sequences")
	}
	return o, stop, nil
}

// run gets samples (and score probabilities) from the engine, batched with
// other requests when BatchWindow is set, and applies stop sequences.
func (h *Handler) run(ctx context.Context, prompts []string, o SampleOptions, stop []string, logprobs bool, topK int) ([][]sampled, error) {
	texts, probs, err := h.batch.call(ctx, prompts, o, logprobs)
	if err != nil {
		return nil, err
	}
	out := make([][]sampled, len(prompts))
	for p := range prompts {
		for _, t := range texts[p] {
			s := sampled{text: t, finish: "stop"}
			if cut, ok := cutStop(t, stop); ok {
				s.text = cut
			} else if h.opts.CountTokens(t) >= o.MaxTokens {
				s.finish = "length"
			}
			s.tokens = h.opts.CountTokens(s.text)
			if logprobs && s.text != "" {
				s.lpTok, s.lp, s.top = firstTokenLogprobs(s.text, probs[p], topK)
			}
			out[p] = append(out[p], s)
		}
	}
	return out, nil
}

func cutStop(t string, stop []string) (string, bool) {
	cut, found := t, false
	for _, s := range stop {
		if s == "" {
			continue
		}
		if i := strings.Index(cut, s); i >= 0 {
			cut, found = cut[:i], true
		}
	}
	return cut, found
}

func (h *Handler) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !h.decode(w, r, &req) {
		return
	}
	if req.Stream {
		h.fail(w, http.StatusBadRequest, "streaming is not supported")
		return
	}
	if len(req.Messages) == 0 {
		h.fail(w, http.StatusBadRequest, "messages must not be empty")
		return
	}
	topK, lp := 0, req.Logprobs != nil && *req.Logprobs
	if req.TopLogprobs != nil {
		topK = *req.TopLogprobs
		if topK > 0 && !lp {
			h.fail(w, http.StatusBadRequest, "top_logprobs needs logprobs: true")
			return
		}
	}
	maxTok := req.MaxTokens
	if req.MaxCompl != nil {
		maxTok = req.MaxCompl
	}
	o, stop, err := h.params(req.N, req.Temperature, req.TopP, maxTok, req.Seed, req.Stop, topK)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	prompt := h.opts.ChatTemplate(req.Messages)
	res, err := h.run(r.Context(), []string{prompt}, o, stop, lp, topK)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	var choices []chatChoice
	u := usage{PromptTokens: h.opts.CountTokens(prompt)}
	for i, s := range res[0] {
		c := chatChoice{Index: i, Message: Message{Role: "assistant", Content: s.text}, FinishReason: s.finish}
		if lp {
			c.Logprobs = &chatLogprobs{Content: []tokenLogprob{}}
			if s.text != "" {
				c.Logprobs.Content = append(c.Logprobs.Content, tokenLogprob{Token: s.lpTok, Logprob: s.lp, Bytes: utf8Bytes(s.lpTok), TopLogprobs: s.top})
			}
		}
		u.CompletionTokens += s.tokens
		choices = append(choices, c)
	}
	h.reply(w, "chat.completion", req.Model, choices, u)
}

func (h *Handler) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if !h.decode(w, r, &req) {
		return
	}
	if req.Stream || req.Echo {
		h.fail(w, http.StatusBadRequest, "stream and echo are not supported")
		return
	}
	prompts, err := stringOrList(req.Prompt, "prompt")
	if err != nil || len(prompts) == 0 {
		h.fail(w, http.StatusBadRequest, "prompt must be a string or a non-empty array of strings")
		return
	}
	topK := 0
	if req.Logprobs != nil {
		topK = *req.Logprobs
	}
	o, stop, err := h.params(req.N, req.Temperature, req.TopP, req.MaxTokens, req.Seed, req.Stop, topK)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := h.run(r.Context(), prompts, o, stop, req.Logprobs != nil, topK)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	var choices []completionChoice
	var u usage
	for p, samples := range res {
		u.PromptTokens += h.opts.CountTokens(prompts[p])
		for i, s := range samples {
			c := completionChoice{Index: p*o.N + i, Text: s.text, FinishReason: s.finish}
			if req.Logprobs != nil {
				c.Logprobs = &legacyLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
				if s.text != "" {
					top := map[string]float64{}
					for _, t := range s.top {
						top[t.Token] = t.Logprob
					}
					c.Logprobs.Tokens = append(c.Logprobs.Tokens, s.lpTok)
					c.Logprobs.TokenLogprobs = append(c.Logprobs.TokenLogprobs, s.lp)
					c.Logprobs.TopLogprobs = append(c.Logprobs.TopLogprobs, top)
					c.Logprobs.TextOffset = append(c.Logprobs.TextOffset, len(prompts[p]))
				}
			}
			u.CompletionTokens += s.tokens
			choices = append(choices, c)
		}
	}
	h.reply(w, "text_completion", req.Model, choices, u)
}

func (h *Handler) models(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"object": "list",
		"data":   []map[string]any{{"id": h.opts.Model, "object": "model", "created": 0, "owned_by": "congrad"}},
	})
}

func (h *Handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.fail(w, http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			h.fail(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		}
		return false
	}
	return true
}

func (h *Handler) reply(w http.ResponseWriter, object, model string, choices any, u usage) {
	if model == "" {
		model = h.opts.Model
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	resp := response{ID: fmt.Sprintf("cmpl-%d", h.nextID.Add(1)), Object: object, Created: time.Now().Unix(), Model: model, Choices: choices, Usage: u}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (h *Handler) fail(w http.ResponseWriter, status int, msg string) {
	var e apiError
	e.Error.Message = msg
	e.Error.Type = "invalid_request_error"
	if status >= 500 {
		e.Error.Type = "server_error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}
