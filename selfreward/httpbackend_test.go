package selfreward_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/markov"
)

// The judge reads overlap; generation is the Markov model.
var engine = markov.OverlapJudge{Engine: markov.New("", 4)}

// faultServer answers with fault(w, r, attempt) and, when that returns
// false, with our real serve handler over the Markov engine.
type faultServer struct {
	*httptest.Server
	attempts atomic.Int64
}

func newFaultServer(t *testing.T, fault func(w http.ResponseWriter, r *http.Request, attempt int64) bool) *faultServer {
	t.Helper()
	real := serve.NewHandler(engine, serve.Options{MaxConcurrent: 4})
	fs := &faultServer{}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := fs.attempts.Add(1)
		if fault != nil && fault(w, r, a) {
			return
		}
		real.ServeHTTP(w, r)
	}))
	t.Cleanup(fs.Close)
	return fs
}

// hang stalls until the client gives up. The body must be read first: the
// server notices a client hang-up only once the request body is consumed.
func hang(r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(3 * time.Second):
	}
}

func backend(t *testing.T, url string, mod func(*selfreward.HTTPConfig)) *selfreward.HTTPBackend {
	t.Helper()
	cfg := selfreward.HTTPConfig{BaseURL: url, Model: "tiny", Timeout: 2 * time.Second, MaxRetries: 3,
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxRetryAfter: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	b, err := selfreward.NewHTTPBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var so = selfreward.SampleOptions{Temperature: 0.7, TopP: 0.9, MaxTokens: 40, Seed: 7}

func texts(cs []selfreward.Completion) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Text)
	}
	return strings.Join(s, "|")
}

func TestHTTPFaultsRecovered(t *testing.T) {
	clean := newFaultServer(t, nil)
	want, err := backend(t, clean.URL, nil).Generate(context.Background(), "Wie kocht man Tee?", 3, so)
	if err != nil || len(want) != 3 {
		t.Fatalf("clean server: %v %d", err, len(want))
	}
	cases := []struct {
		name     string
		fault    func(w http.ResponseWriter, r *http.Request, a int64) bool
		attempts int64
		minWait  time.Duration
	}{
		{"500 twice", func(w http.ResponseWriter, _ *http.Request, a int64) bool {
			if a <= 2 {
				http.Error(w, "boom", 500)
				return true
			}
			return false
		}, 3, 0},
		{"429 with Retry-After", func(w http.ResponseWriter, _ *http.Request, a int64) bool {
			if a == 1 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "slow down", 429)
				return true
			}
			return false
		}, 2, 900 * time.Millisecond},
		{"hang past the timeout", func(w http.ResponseWriter, r *http.Request, a int64) bool {
			if a == 1 {
				hang(r)
				return true
			}
			return false
		}, 2, 0},
		{"connection closed mid-response", func(w http.ResponseWriter, _ *http.Request, a int64) bool {
			if a == 1 {
				conn, buf, _ := w.(http.Hijacker).Hijack()
				buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"choices\":[{\"index\":0,")
				buf.Flush()
				conn.Close()
				return true
			}
			return false
		}, 2, 0},
		{"malformed JSON", func(w http.ResponseWriter, _ *http.Request, a int64) bool {
			if a == 1 {
				w.Write([]byte(`{"choices": [ {"index": 0, "message": `))
				return true
			}
			if a == 2 {
				w.Write([]byte(`{"id": "x"}`)) // valid JSON, no choices
				return true
			}
			return false
		}, 3, 0},
		{"server ignores n", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			var body map[string]any
			data, _ := io.ReadAll(r.Body)
			json.Unmarshal(data, &body)
			if n, _ := body["n"].(float64); n > 1 {
				body["n"] = 1 // answer as llama.cpp does: one choice whatever n says
			}
			data, _ = json.Marshal(body)
			r.Body = io.NopCloser(strings.NewReader(string(data)))
			return false
		}, 3, 0},
		{"server rejects n", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			data, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(data)))
			if strings.Contains(string(data), `"n":`) {
				http.Error(w, `{"error":{"message":"n not supported"}}`, 400)
				return true
			}
			return false
		}, 4, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := newFaultServer(t, c.fault)
			b := backend(t, fs.URL, func(cfg *selfreward.HTTPConfig) { cfg.Timeout = 300 * time.Millisecond })
			start := time.Now()
			got, err := b.Generate(context.Background(), "Wie kocht man Tee?", 3, so)
			if err != nil {
				t.Fatalf("not recovered: %v", err)
			}
			if texts(got) != texts(want) {
				t.Fatalf("recovered output differs from a clean run:\n%q\n%q", texts(got), texts(want))
			}
			if a := fs.attempts.Load(); a != c.attempts {
				t.Errorf("%d requests, want %d", a, c.attempts)
			}
			if el := time.Since(start); el < c.minWait {
				t.Errorf("returned after %v, Retry-After asked for %v", el, c.minWait)
			}
		})
	}
}

func TestHTTPFaultsGiveUpWithReason(t *testing.T) {
	cases := []struct {
		name, reason string
		fault        func(w http.ResponseWriter, r *http.Request, a int64) bool
		attempts     int64
	}{
		{"always 500", "gave up after 4 attempts: HTTP 500", func(w http.ResponseWriter, _ *http.Request, _ int64) bool { http.Error(w, "down", 500); return true }, 4},
		{"always malformed", "malformed response", func(w http.ResponseWriter, _ *http.Request, _ int64) bool { w.Write([]byte("<html>")); return true }, 4},
		{"always hangs", "deadline exceeded", func(w http.ResponseWriter, r *http.Request, _ int64) bool { hang(r); return true }, 4},
		{"400 is not retried", "not retryable: HTTP 400", func(w http.ResponseWriter, _ *http.Request, _ int64) bool { http.Error(w, "bad", 400); return true }, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := newFaultServer(t, c.fault)
			b := backend(t, fs.URL, func(cfg *selfreward.HTTPConfig) { cfg.Timeout = 100 * time.Millisecond; cfg.NoN = true })
			p := schemas.Prompt{ID: "p1", Lang: "en", Prompt: "Explain tides."}
			res := selfreward.ProcessPrompt(context.Background(), b, p, selfreward.Options{N: 2, J: 1}.WithDefaults())
			if !res.Dead || !strings.HasPrefix(res.Reason, selfreward.BackendFailed) || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("want a dead letter mentioning %q, got dead=%v %q", c.reason, res.Dead, res.Reason)
			}
			if dl := res.DeadLetter(); dl.Stage != "selfreward" || dl.Source != "en/p1" || dl.Payload != p.Prompt {
				t.Fatalf("dead letter %+v", dl)
			}
			// NoN: 2 samples are 2 request chains; the first fails and ends the prompt.
			if a := fs.attempts.Load(); a < c.attempts {
				t.Errorf("%d requests, want at least %d", a, c.attempts)
			}
		})
	}
}

func TestJudgeWithoutScoreIsCountedNotGuessed(t *testing.T) {
	fs := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		data, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(data), "Score: N") { // generation: let the engine answer
			r.Body = io.NopCloser(strings.NewReader(string(data)))
			return false
		}
		json.NewEncoder(w).Encode(map[string]any{"choices": []map[string]any{
			{"index": 0, "message": map[string]any{"role": "assistant", "content": "Quite good, I would say four or so."}, "finish_reason": "stop"},
		}})
		return true
	})
	b := backend(t, fs.URL, nil)
	// The Markov engine answers "Explain tides." with empty text, which is no
	// longer judged; this prompt gets non-empty candidates, so the judge runs.
	p := schemas.Prompt{ID: "p1", Lang: "en", Prompt: "How do I make tea?"}
	res := selfreward.ProcessPrompt(context.Background(), b, p, selfreward.Options{N: 2, J: 2}.WithDefaults())
	if res.Empty != 0 {
		t.Fatalf("fixture: %d empty candidates, want none so that every candidate is judged", res.Empty)
	}
	if res.Dead || selfreward.ReasonCode(res.Reason) != selfreward.DropTooFewScored {
		t.Fatalf("want drop too_few_scored, got dead=%v %q", res.Dead, res.Reason)
	}
	if res.Judgments != 4 || res.ParseFailures != 4 || len(res.Candidates) != 2 || !math.IsNaN(res.Candidates[0].MeanScore) {
		t.Fatalf("judgments %d failures %d candidates %+v", res.Judgments, res.ParseFailures, res.Candidates)
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	fs := newFaultServer(t, func(w http.ResponseWriter, _ *http.Request, _ int64) bool {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "busy", 503)
		return true
	})
	b := backend(t, fs.URL, func(cfg *selfreward.HTTPConfig) { cfg.MaxRetryAfter = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Generate(ctx, "x", 1, so)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}
