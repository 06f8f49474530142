// Package serve is ConGrad's own OpenAI-compatible HTTP server
// (/v1/chat/completions, /v1/completions, /v1/models, /healthz) over an
// Engine. It serves the embedded model on loopback so that the self-rewarding
// stage goes through the same HTTP path in tests and demos as against vLLM,
// TGI, llama.cpp or Ollama in production. No Beam here.
package serve

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// SampleOptions are the sampling settings of one engine call.
type SampleOptions struct {
	N           int // samples per prompt
	Temperature float64
	TopP        float64
	MaxTokens   int
	Seed        int64
}

// Engine is the model behind the server.
type Engine interface {
	// Generate returns o.N continuations for each prompt ([prompt][sample]).
	// Sample i of prompt p must depend only on (prompt p, o, i), so that
	// a seeded request is reproducible.
	Generate(ctx context.Context, prompts []string, o SampleOptions) ([][]string, error)
	// ScoreProbs returns, for each prompt, the model's probabilities that the
	// next token is "0", "1", ..., "5": the distribution a judge's
	// probability-weighted score is computed from.
	ScoreProbs(ctx context.Context, prompts []string) ([][]float64, error)
}

// Options configure the server. Zero values take defaults.
type Options struct {
	Model            string                 // model id reported and accepted (default "congrad-tiny"); requests may name any model
	MaxConcurrent    int                    // engine calls in flight (default 1: engines need not be reentrant)
	MaxN             int                    // largest n accepted (default 16)
	DefaultMaxTokens int                    // when a request gives none (default 256)
	MaxTokensLimit   int                    // largest max_tokens accepted (default 4096)
	MaxBodyBytes     int64                  // request size limit (default 8 MiB)
	ChatTemplate     func([]Message) string // renders messages into one prompt (default DefaultChatTemplate)
	CountTokens      func(string) int       // usage accounting (default: runes, matching byte/char-level tiny models)
	// BatchWindow > 0 merges requests with identical sampling settings
	// (seed included) that arrive within the window into one engine call of
	// up to MaxBatchPrompts prompts (default 8). Off by default: it adds up
	// to one window of latency to every request.
	BatchWindow     time.Duration
	MaxBatchPrompts int
}

func (o Options) withDefaults() Options {
	if o.Model == "" {
		o.Model = "congrad-tiny"
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 1
	}
	if o.MaxN <= 0 {
		o.MaxN = 16
	}
	if o.DefaultMaxTokens <= 0 {
		o.DefaultMaxTokens = 256
	}
	if o.MaxTokensLimit <= 0 {
		o.MaxTokensLimit = 4096
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 8 << 20
	}
	if o.ChatTemplate == nil {
		o.ChatTemplate = DefaultChatTemplate
	}
	if o.MaxBatchPrompts <= 0 {
		o.MaxBatchPrompts = 8
	}
	if o.CountTokens == nil {
		o.CountTokens = utf8.RuneCountInString
	}
	return o
}

// DefaultChatTemplate renders a conversation as plain "Role: text" turns and
// opens the assistant's turn. A single user message is sent as it is, so a
// chat request and a completions request with the same text see the same
// prompt (the tiny model has no chat training to benefit from markup).
func DefaultChatTemplate(msgs []Message) string {
	if len(msgs) == 1 && msgs[0].Role == "user" {
		return msgs[0].Content
	}
	var b strings.Builder
	for _, m := range msgs {
		role := m.Role
		if role != "" {
			role = strings.ToUpper(role[:1]) + role[1:]
		}
		fmt.Fprintf(&b, "%s: %s\n\n", role, m.Content)
	}
	b.WriteString("Assistant: ")
	return b.String()
}

// Handler serves the API over an engine.
type Handler struct {
	eng    Engine
	opts   Options
	sem    chan struct{}
	nextID atomic.Int64
	mux    *http.ServeMux
	batch  *batcher

	engineCalls atomic.Int64 // for tests and metrics: calls made to the engine
}

// EngineCalls is the number of engine calls made so far.
func (h *Handler) EngineCalls() int64 { return h.engineCalls.Load() }

// NewHandler returns the API handler.
func NewHandler(eng Engine, opts Options) *Handler {
	h := &Handler{eng: eng, opts: opts.withDefaults()}
	h.sem = make(chan struct{}, h.opts.MaxConcurrent)
	h.batch = newBatcher(h)
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("POST /v1/chat/completions", h.chat)
	h.mux.HandleFunc("POST /v1/completions", h.completions)
	h.mux.HandleFunc("GET /v1/models", h.models)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Server is a running server.
type Server struct {
	srv       *http.Server
	ln        net.Listener
	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}

	mu    sync.Mutex
	fresh map[net.Conn]bool // accepted connections that have not sent a request yet
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in the
// background until Close or until ctx ends.
func Start(ctx context.Context, addr string, eng Engine, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve: listen %s: %w", addr, err)
	}
	s := &Server{
		srv:    &http.Server{Handler: NewHandler(eng, opts), ReadHeaderTimeout: 10 * time.Second},
		ln:     ln,
		closed: make(chan struct{}),
		fresh:  map[net.Conn]bool{},
	}
	s.srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if st == http.StateNew {
			s.fresh[c] = true
		} else {
			delete(s.fresh, c)
		}
	}
	go func() { _ = s.srv.Serve(ln) }() // returns ErrServerClosed after Close
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.closed:
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL clients use ("http://127.0.0.1:PORT").
func (s *Server) URL() string { return "http://" + s.Addr() }

// Close shuts the server down, waiting up to 5 s for requests in flight.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Shutdown waits 5 s for connections that never sent a request
		// (clients dial spares); close those now, they have nothing in flight.
		s.mu.Lock()
		for c := range s.fresh {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.closeErr = s.srv.Shutdown(ctx)
		close(s.closed)
	})
	return s.closeErr
}

// ListenAndServe serves until ctx ends; what `congrad serve` runs.
func ListenAndServe(ctx context.Context, addr string, eng Engine, opts Options) error {
	s, err := Start(ctx, addr, eng, opts)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

// firstTokenLogprobs builds the log-probs of the first generated token: the
// engine can only score the tokens "0".."5", so the alternatives are those
// six, most likely first. The chosen token's own log-prob is exact when it is
// one of them, else an upper bound (the mass the six leave over). Clients read
// the alternatives, which is what a probability-weighted judge score needs.
func firstTokenLogprobs(text string, probs []float64, k int) (tok string, lp float64, top []topLogprob) {
	r, _ := utf8.DecodeRuneInString(text)
	tok = string(r)
	idx := make([]int, len(probs))
	rest := 1.0
	for i := range probs {
		idx[i] = i
		rest -= probs[i]
	}
	sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
	lp = math.Log(math.Max(rest, 1e-12))
	if d := int(r - '0'); d >= 0 && d < len(probs) {
		lp = safeLog(probs[d])
	}
	for _, i := range idx[:min(k, len(idx))] {
		t := string(rune('0' + i))
		top = append(top, topLogprob{Token: t, Logprob: safeLog(probs[i]), Bytes: []int{int(t[0])}})
	}
	return tok, lp, top
}

func safeLog(p float64) float64 {
	if p <= 0 {
		return -9999 // JSON has no -Inf; servers conventionally clamp
	}
	return math.Log(p)
}

func utf8Bytes(s string) []int {
	b := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		b[i] = int(s[i])
	}
	return b
}
