package selfreward_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/selfreward"
)

// Check fails in one line that says what is wrong with the server.
func TestCheckNamesTheFault(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	cases := []struct {
		name  string
		url   func() string
		mod   func(*selfreward.HTTPConfig)
		wants []string
	}{
		{"unreachable", func() string { return closed }, nil, []string{"unreachable", "connection refused"}},
		{"5xx", func() string {
			return newFaultServer(t, func(w http.ResponseWriter, _ *http.Request, _ int64) bool {
				http.Error(w, "overloaded\nplease wait", 503)
				return true
			}).URL
		}, nil, []string{"HTTP 503", "overloaded please wait"}},
		{"garbage", func() string {
			return newFaultServer(t, func(w http.ResponseWriter, _ *http.Request, _ int64) bool {
				w.Write([]byte("<html>proxy</html>"))
				return true
			}).URL
		}, nil, []string{"OpenAI-compatible"}},
		{"hang", func() string {
			return newFaultServer(t, func(_ http.ResponseWriter, r *http.Request, _ int64) bool {
				hang(r)
				return true
			}).URL
		}, func(c *selfreward.HTTPConfig) { c.Timeout = 200 * time.Millisecond }, []string{"no answer", "200ms"}},
		{"unauthorized", func() string {
			return newFaultServer(t, func(w http.ResponseWriter, r *http.Request, _ int64) bool {
				if r.Header.Get("Authorization") != "Bearer s3cret" {
					http.Error(w, "bad key", 401)
					return true
				}
				return false
			}).URL
		}, func(c *selfreward.HTTPConfig) { c.APIKeyEnv = "CONGRAD_TEST_NO_SUCH_KEY" }, []string{"$CONGRAD_TEST_NO_SUCH_KEY is empty", "HTTP 401"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := backend(t, c.url(), c.mod)
			start := time.Now()
			err := b.Check(context.Background())
			if err == nil {
				t.Fatal("Check passed")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range c.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("Check took %v (it must not retry)", time.Since(start))
			}
		})
	}
}

// The key is read from the named variable and sent as a bearer token, both
// by Check and by every request; with it, Check and Generate pass.
func TestAPIKeyFromEnvironment(t *testing.T) {
	t.Setenv("CONGRAD_TEST_KEY", "s3cret")
	var unauthorized atomic.Int64
	fs := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			unauthorized.Add(1)
			http.Error(w, "bad key", 401)
			return true
		}
		return false
	})
	for _, api := range []string{"completions", "chat"} {
		b := backend(t, fs.URL, func(c *selfreward.HTTPConfig) { c.APIKeyEnv = "CONGRAD_TEST_KEY"; c.API = api })
		if err := b.Check(context.Background()); err != nil {
			t.Fatalf("%s: Check: %v", api, err)
		}
		if _, err := b.Generate(context.Background(), "hi", 2, so); err != nil {
			t.Fatalf("%s: Generate: %v", api, err)
		}
	}
	if n := unauthorized.Load(); n != 0 {
		t.Fatalf("%d requests without the key", n)
	}
}

// Every retry is announced through OnRetry and counted.
func TestRetriesAreVisible(t *testing.T) {
	fs := newFaultServer(t, func(w http.ResponseWriter, _ *http.Request, a int64) bool {
		if a <= 2 {
			http.Error(w, "busy", 500)
			return true
		}
		return false
	})
	var events []selfreward.RetryEvent
	var mu = make(chan struct{}, 1)
	prev := selfreward.OnRetry(func(e selfreward.RetryEvent) {
		mu <- struct{}{}
		events = append(events, e)
		<-mu
	})
	defer selfreward.OnRetry(prev)
	before := selfreward.Retries()
	b := backend(t, fs.URL, nil)
	if _, err := b.Generate(context.Background(), "hi", 1, so); err != nil {
		t.Fatal(err)
	}
	if got := selfreward.Retries() - before; got != 2 || len(events) != 2 {
		t.Fatalf("retries counted %d, events %d, want 2", got, len(events))
	}
	if e := events[1]; e.Retry != 2 || e.MaxRetries != 3 || !strings.Contains(e.Err.Error(), "HTTP 500") || !strings.HasSuffix(e.URL, "/v1/chat/completions") {
		t.Fatalf("event %+v", e)
	}
}
