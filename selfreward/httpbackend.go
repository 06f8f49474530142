package selfreward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPConfig configures the OpenAI-compatible HTTP backend. It is plain data
// (it travels inside Beam DoFns as JSON); zero fields take defaults.
type HTTPConfig struct {
	BaseURL string // server root, with or without /v1 ("http://127.0.0.1:8000")
	Model   string // "model" field of every request
	// API is "chat" (/v1/chat/completions, default) or "completions"
	// (/v1/completions, raw prompt, needed for ScoreCue).
	API string
	// APIKeyEnv names the environment variable holding a bearer token; the
	// token itself never goes into pipeline options.
	APIKeyEnv string

	Timeout        time.Duration // per attempt (default 120s)
	MaxConcurrency int           // requests in flight per backend (default 8)
	MaxRetries     int           // retries after the first attempt (default 4; -1: none)
	BackoffBase    time.Duration // first backoff (default 500ms), doubled per retry
	BackoffMax     time.Duration // backoff cap (default 20s)
	MaxRetryAfter  time.Duration // longest Retry-After honoured (default 60s)
	JitterSeed     int64         // jitter is drawn from (JitterSeed, request seed, attempt): reproducible

	NoN    bool // never send n>1: one request per sample with seed+i (servers that reject n)
	NoSeed bool // do not send seed (servers that reject it)
}

func (c HTTPConfig) withDefaults() HTTPConfig {
	if c.API == "" {
		c.API = "chat"
	}
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 8
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 4
	} else if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = 500 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 20 * time.Second
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 60 * time.Second
	}
	return c
}

// HTTPBackend talks to an OpenAI-compatible server. Safe for concurrent use.
type HTTPBackend struct {
	cfg      HTTPConfig
	url      string
	client   *http.Client
	sem      chan struct{}
	ignoresN atomic.Bool // the server answered n>1 with one choice once: stop sending n
	apiKey   string
}

// NewHTTPBackend validates cfg and returns a backend.
func NewHTTPBackend(cfg HTTPConfig) (*HTTPBackend, error) {
	cfg = cfg.withDefaults()
	base := strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("selfreward: http backend: base URL %q must start with http:// or https://", cfg.BaseURL)
	}
	base = strings.TrimSuffix(base, "/v1")
	var path string
	switch cfg.API {
	case "chat":
		path = "/v1/chat/completions"
	case "completions":
		path = "/v1/completions"
	default:
		return nil, fmt.Errorf("selfreward: http backend: API %q is neither chat nor completions", cfg.API)
	}
	b := &HTTPBackend{
		cfg: cfg,
		url: base + path,
		sem: make(chan struct{}, cfg.MaxConcurrency),
		client: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: cfg.MaxConcurrency,
			IdleConnTimeout:     90 * time.Second,
		}},
	}
	if cfg.APIKeyEnv != "" {
		b.apiKey = os.Getenv(cfg.APIKeyEnv)
	}
	return b, nil
}

var (
	sharedMu       sync.Mutex
	sharedBackends = map[string]*HTTPBackend{}
)

// SharedHTTPBackend returns one backend per distinct config in the process,
// so every DoFn instance on a worker shares its connection pool and its
// concurrency bound.
func SharedHTTPBackend(cfg HTTPConfig) (*HTTPBackend, error) {
	key, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("selfreward: http backend config: %w", err)
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if b, ok := sharedBackends[string(key)]; ok {
		return b, nil
	}
	b, err := NewHTTPBackend(cfg)
	if err != nil {
		return nil, err
	}
	sharedBackends[string(key)] = b
	return b, nil
}

// URL is the endpoint requests go to.
func (b *HTTPBackend) URL() string { return b.url }

// Generate samples n responses.
func (b *HTTPBackend) Generate(ctx context.Context, prompt string, n int, o SampleOptions) ([]Completion, error) {
	o.ScoreCue, o.TopLogprobs = "", 0
	return b.sample(ctx, prompt, n, o)
}

// Judge samples j judge answers and reads a score from each.
func (b *HTTPBackend) Judge(ctx context.Context, judgePrompt string, j int, o SampleOptions) ([]Judgment, error) {
	if o.ScoreCue != "" && b.cfg.API != "completions" {
		return nil, fmt.Errorf("selfreward: a score cue needs the completions API, backend uses %s", b.cfg.API)
	}
	comps, err := b.sample(ctx, judgePrompt+o.ScoreCue, j, o)
	if err != nil {
		return nil, err
	}
	out := make([]Judgment, len(comps))
	for i, c := range comps {
		c.Text = o.ScoreCue + c.Text
		for k := range c.Logprobs {
			c.Logprobs[k].Offset += len(o.ScoreCue)
		}
		out[i] = JudgmentFrom(c, o.MinScoreMass)
	}
	return out, nil
}

// sample asks for n samples in one request and falls back to one request per
// missing sample (seed+i) when the server ignores n.
func (b *HTTPBackend) sample(ctx context.Context, prompt string, n int, o SampleOptions) ([]Completion, error) {
	if n < 1 {
		return nil, nil
	}
	first := n
	if b.cfg.NoN || b.ignoresN.Load() {
		first = 1
	}
	out, err := b.request(ctx, prompt, first, o, o.Seed)
	var se *StatusError
	if err != nil && first > 1 && errors.As(err, &se) && (se.Status == http.StatusBadRequest || se.Status == http.StatusUnprocessableEntity) {
		// Some servers refuse n>1 outright instead of ignoring it.
		b.ignoresN.Store(true)
		first = 1
		out, err = b.request(ctx, prompt, 1, o, o.Seed)
	}
	if err != nil {
		return nil, err
	}
	if len(out) > n {
		out = out[:n]
	}
	if len(out) == n {
		return out, nil
	}
	if first > 1 {
		b.ignoresN.Store(true)
	}
	// Sample i always gets seed+i, whichever way it is fetched, so results do
	// not depend on whether the server honoured n.
	rest := make([][]Completion, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := len(out); i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rest[i], errs[i] = b.request(ctx, prompt, 1, o, o.Seed+int64(i))
			if errs[i] == nil && len(rest[i]) == 0 {
				errs[i] = fmt.Errorf("%w: sample %d", ErrShortResponse, i)
			}
		}()
	}
	wg.Wait()
	for i := len(out); i < n; i++ {
		if errs[i] != nil {
			return nil, fmt.Errorf("sample %d of %d: %w", i, n, errs[i])
		}
		out = append(out, rest[i][0])
	}
	return out, nil
}

func (b *HTTPBackend) request(ctx context.Context, prompt string, n int, o SampleOptions, seed int64) ([]Completion, error) {
	chat := b.cfg.API == "chat"
	body := requestBody{Model: b.cfg.Model, Temperature: o.Temperature, TopP: o.TopP, MaxTokens: o.MaxTokens}
	if n > 1 {
		body.N = n
	}
	if !b.cfg.NoSeed {
		body.Seed = &seed
	}
	if chat {
		body.Messages = []chatMessage{{Role: "user", Content: &prompt}}
		if o.TopLogprobs > 0 {
			body.Logprobs, body.TopLogprobs = true, o.TopLogprobs
		}
	} else {
		body.Prompt = prompt
		if o.TopLogprobs > 0 {
			body.Logprobs = o.TopLogprobs
		}
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	var last error
	attempts := 0
	for attempt := 0; ; attempt++ {
		comps, retryAfter, err := b.once(ctx, data, chat)
		attempts++
		if err == nil {
			return comps, nil
		}
		last = err
		if !retryable(err) || attempt >= b.cfg.MaxRetries || ctx.Err() != nil {
			break
		}
		wait := backoff(b.cfg, seed, attempt)
		if retryAfter > wait {
			wait = min(retryAfter, b.cfg.MaxRetryAfter)
		}
		notifyRetry(RetryEvent{URL: b.url, Retry: attempt + 1, MaxRetries: b.cfg.MaxRetries, Wait: wait, Err: err})
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("POST %s: %w (after %v)", b.url, ctx.Err(), last)
		case <-t.C:
		}
	}
	failedRequests.Add(1)
	if !retryable(last) {
		return nil, fmt.Errorf("POST %s: not retryable: %w", b.url, last)
	}
	return nil, fmt.Errorf("POST %s: gave up after %d attempts: %w", b.url, attempts, last)
}

// RetryEvent is one retry of one request: the failure that caused it and
// how long the backend waits before the next attempt.
type RetryEvent struct {
	URL        string
	Retry      int // 1 for the first retry
	MaxRetries int
	Wait       time.Duration
	Err        error
}

var (
	retries        atomic.Int64
	failedRequests atomic.Int64
	retryHook      atomic.Pointer[func(RetryEvent)]
)

// Retries and FailedRequests count, process-wide, the retries made and the
// requests given up after their last retry, so a CLI can show them in its
// progress lines (with remote workers they stay in the workers' processes).
func Retries() int64        { return retries.Load() }
func FailedRequests() int64 { return failedRequests.Load() }

// OnRetry calls f (from the retrying goroutine; f must be quick and safe
// for concurrent use) before every retry in this process, e.g. to print a
// line per burst of retries; nil turns it off. It returns the previous f.
func OnRetry(f func(RetryEvent)) func(RetryEvent) {
	var old *func(RetryEvent)
	if f == nil {
		old = retryHook.Swap(nil)
	} else {
		old = retryHook.Swap(&f)
	}
	if old == nil {
		return nil
	}
	return *old
}

func notifyRetry(e RetryEvent) {
	retries.Add(1)
	if f := retryHook.Load(); f != nil {
		(*f)(e)
	}
}

// Check makes one cheap request, a one-token answer to a one-word prompt
// with the configured API and model, without retries, and says in one line
// what is wrong when it fails: nothing listening, no answer within the
// timeout, an HTTP error (bad key, unknown model, wrong path), or a body
// that is not an OpenAI-compatible response. A pipeline calls it before it
// starts, so that a bad --backend_url costs one request, not one dead
// letter per prompt.
func (b *HTTPBackend) Check(ctx context.Context) error {
	prompt := "Hello"
	body := requestBody{Model: b.cfg.Model, Temperature: 0, TopP: 1, MaxTokens: 1}
	chat := b.cfg.API == "chat"
	if chat {
		body.Messages = []chatMessage{{Role: "user", Content: &prompt}}
	} else {
		body.Prompt = prompt
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, _, err = b.once(ctx, data, chat)
	var se *StatusError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden):
		key := "no API key sent"
		if b.cfg.APIKeyEnv != "" {
			key = "API key from $" + b.cfg.APIKeyEnv
			if b.apiKey == "" {
				key = "$" + b.cfg.APIKeyEnv + " is empty, no API key sent"
			}
		}
		return fmt.Errorf("backend %s refused the request (%s): %v", b.url, key, oneLine(err))
	case errors.As(err, &se):
		return fmt.Errorf("backend %s answered a test request with %v", b.url, oneLine(err))
	case errors.Is(err, ErrMalformed):
		return fmt.Errorf("backend %s does not answer like an OpenAI-compatible server: %v", b.url, oneLine(err))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("backend %s: no answer to a one-token test request within %v", b.url, b.cfg.Timeout)
	default:
		return fmt.Errorf("backend %s is unreachable: %v", b.url, oneLine(err))
	}
}

// oneLine keeps an error on one line: server bodies may hold newlines.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status == http.StatusTooManyRequests || se.Status == http.StatusRequestTimeout || se.Status >= 500
	}
	// Everything else is a transport failure (refused, reset, EOF mid-body,
	// per-attempt timeout) or ErrMalformed: all worth another try.
	return true
}

// once makes one attempt under the concurrency bound and the per-attempt
// timeout. retryAfter is the server's Retry-After, if it sent one.
func (b *HTTPBackend) once(ctx context.Context, body []byte, chat bool) (_ []Completion, retryAfter time.Duration, _ error) {
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { <-b.sem }()
	actx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if b.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.apiKey)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode/100 != 2 {
		return nil, parseRetryAfter(resp.Header.Get("Retry-After")), &StatusError{Status: resp.StatusCode, Body: truncate(strings.TrimSpace(string(data)), 300)}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read response body: %w", err)
	}
	comps, err := decodeResponse(data, chat)
	return comps, 0, err
}

func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// backoff is exponential with "equal jitter": half fixed, half drawn from a
// hash of (JitterSeed, request seed, attempt), so that many workers retrying
// at once spread out, yet a test run is reproducible.
func backoff(c HTTPConfig, seed int64, attempt int) time.Duration {
	d := c.BackoffBase << attempt
	if d > c.BackoffMax || d <= 0 {
		d = c.BackoffMax
	}
	x := uint64(c.JitterSeed)*0x9E3779B97F4A7C15 ^ uint64(seed)*0xBF58476D1CE4E5B9 ^ uint64(attempt+1)*0x94D049BB133111EB
	x ^= x >> 31
	x *= 0xD6E8FEB86659FD93
	x ^= x >> 32
	frac := float64(x>>11) / float64(1<<53)
	return d/2 + time.Duration(frac*float64(d/2))
}
