package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/markov"
)

func start(t *testing.T) *serve.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := serve.Start(ctx, "127.0.0.1:0", markov.New("", 4), serve.Options{MaxConcurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = s.Close() })
	return s
}

func post(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	data, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, raw)
	}
	return resp.StatusCode, v
}

func chatTexts(t *testing.T, v map[string]any) []string {
	t.Helper()
	var out []string
	for _, c := range v["choices"].([]any) {
		out = append(out, c.(map[string]any)["message"].(map[string]any)["content"].(string))
	}
	return out
}

func TestChatCompletionsSeededAndN(t *testing.T) {
	s := start(t)
	req := func(n int, seed int64) map[string]any {
		return map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": "Warum ist der Himmel blau?"}},
			"n": n, "seed": seed, "temperature": 0.7, "top_p": 0.9, "max_tokens": 60}
	}
	code, a := post(t, s.URL()+"/v1/chat/completions", req(3, 42))
	if code != 200 {
		t.Fatalf("status %d: %v", code, a)
	}
	ta := chatTexts(t, a)
	if len(ta) != 3 || ta[0] == ta[1] && ta[1] == ta[2] {
		t.Fatalf("want 3 different samples, got %q", ta)
	}
	_, b := post(t, s.URL()+"/v1/chat/completions", req(3, 42))
	if tb := chatTexts(t, b); strings.Join(ta, "|") != strings.Join(tb, "|") {
		t.Fatalf("same seed, different output:\n%q\n%q", ta, tb)
	}
	// n samples with seed s == n requests with seeds s, s+1, ...: the
	// property the client's fallback for servers that ignore n relies on.
	for i := range 3 {
		_, c := post(t, s.URL()+"/v1/chat/completions", req(1, 42+int64(i)))
		if got := chatTexts(t, c)[0]; got != ta[i] {
			t.Fatalf("sample %d: n=3 gave %q, n=1 seed+%d gave %q", i, ta[i], i, got)
		}
	}
	u := a["usage"].(map[string]any)
	if u["completion_tokens"].(float64) <= 0 || a["object"] != "chat.completion" {
		t.Fatalf("usage/object wrong: %v", a)
	}
}

func TestCompletionsFirstTokenLogprobs(t *testing.T) {
	s := start(t)
	code, v := post(t, s.URL()+"/v1/completions", map[string]any{
		"model": "m", "prompt": "The answer is clear and correct.\nScore: ", "max_tokens": 3, "seed": 1, "temperature": 0.7, "logprobs": 6,
	})
	if code != 200 {
		t.Fatalf("status %d: %v", code, v)
	}
	c := v["choices"].([]any)[0].(map[string]any)
	lp := c["logprobs"].(map[string]any)
	top := lp["top_logprobs"].([]any)[0].(map[string]any)
	if len(top) != 6 {
		t.Fatalf("want the six score tokens, got %v", top)
	}
	var mass float64
	for tok, l := range top {
		if len(tok) != 1 || tok[0] < '0' || tok[0] > '5' {
			t.Fatalf("unexpected alternative %q", tok)
		}
		mass += math.Exp(l.(float64))
	}
	// The corpus always has a digit after "Score: ", so the model must put
	// most of its mass there.
	if mass < 0.5 || mass > 1+1e-9 {
		t.Fatalf("score-token mass %v", mass)
	}
	text := c["text"].(string)
	if tok := lp["tokens"].([]any)[0].(string); !strings.HasPrefix(text, tok) {
		t.Fatalf("first token %q is not the start of %q", tok, text)
	}
}

func TestModelsHealthzAndErrors(t *testing.T) {
	s := start(t)
	for _, path := range []string{"/healthz", "/v1/models"} {
		resp, err := http.Get(s.URL() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
	bad := []map[string]any{
		{"messages": []map[string]string{{"role": "user", "content": "x"}}, "n": 0},
		{"messages": []map[string]string{{"role": "user", "content": "x"}}, "temperature": 5},
		{"messages": []map[string]string{{"role": "user", "content": "x"}}, "top_logprobs": 3},
		{"messages": []map[string]string{{"role": "user", "content": "x"}}, "stream": true},
		{"messages": []map[string]string{}},
	}
	for _, b := range bad {
		code, v := post(t, s.URL()+"/v1/chat/completions", b)
		if code != 400 || v["error"] == nil {
			t.Errorf("%v: status %d body %v, want 400 with error", b, code, v)
		}
	}
	resp, err := http.Post(s.URL()+"/v1/completions", "application/json", strings.NewReader("{not json"))
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("malformed JSON: %v %v", err, resp)
	}
	resp.Body.Close()
}

func TestListenAndServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve.ListenAndServe(ctx, "127.0.0.1:0", markov.New("", 3), serve.Options{}) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := serve.ListenAndServe(context.Background(), "256.0.0.1:99999", markov.New("", 3), serve.Options{}); err == nil {
		t.Fatal("a bad address must fail")
	}
}

func TestCompletionsPromptListAndStop(t *testing.T) {
	s := start(t)
	code, v := post(t, s.URL()+"/v1/completions", map[string]any{
		"prompt": []string{"Water boils", "Wasser kocht"}, "n": 2, "seed": 3, "max_tokens": 80, "stop": []string{" "},
	})
	if code != 200 {
		t.Fatalf("status %d: %v", code, v)
	}
	cs := v["choices"].([]any)
	if len(cs) != 4 {
		t.Fatalf("want 2 prompts x 2 samples, got %d", len(cs))
	}
	for i, c := range cs {
		m := c.(map[string]any)
		if int(m["index"].(float64)) != i || strings.Contains(m["text"].(string), " ") {
			t.Fatalf("choice %d: %v", i, m)
		}
	}
}

// TestBatchWindowMergesIdenticalRequests: concurrent requests with the same
// sampling settings become one engine call and get exactly the samples they
// would get alone.
func TestBatchWindowMergesIdenticalRequests(t *testing.T) {
	eng := markov.New("", 4)
	batched := serve.NewHandler(eng, serve.Options{BatchWindow: 200 * time.Millisecond, MaxBatchPrompts: 4})
	bs := httptest.NewServer(batched)
	defer bs.Close()
	plain := httptest.NewServer(serve.NewHandler(eng, serve.Options{}))
	defer plain.Close()
	prompts := []string{"Water boils", "Wasser kocht", "L'eau bout", "El agua"}
	req := func(p string) map[string]any {
		return map[string]any{"prompt": p, "n": 2, "seed": 4, "max_tokens": 30, "temperature": 0.7, "logprobs": 3}
	}
	got := make([]map[string]any, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, got[i] = post(t, bs.URL+"/v1/completions", req(p))
		}()
	}
	wg.Wait()
	if c := batched.EngineCalls(); c != 1 {
		t.Fatalf("%d engine calls for 4 identical-option requests, want 1", c)
	}
	for i, p := range prompts {
		_, want := post(t, plain.URL+"/v1/completions", req(p))
		g, _ := json.Marshal(got[i]["choices"])
		w, _ := json.Marshal(want["choices"])
		if string(g) != string(w) {
			t.Fatalf("prompt %d: batched %s\nalone %s", i, g, w)
		}
	}
	// A different seed is a different group.
	_, _ = post(t, bs.URL+"/v1/completions", map[string]any{"prompt": "x", "seed": 5, "max_tokens": 5})
	if c := batched.EngineCalls(); c != 2 {
		t.Fatalf("engine calls %d, want 2", c)
	}
}
