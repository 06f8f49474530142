package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/markov"
)

// fakeBackend answers with fault, or (fault returns false) with our serve
// handler over the Markov engine with the overlap judge.
func fakeBackend(t *testing.T, fault func(w http.ResponseWriter, r *http.Request) bool) string {
	t.Helper()
	real := serve.NewHandler(markov.OverlapJudge{Engine: markov.New("", 4)}, serve.Options{MaxConcurrent: 4})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fault != nil && fault(w, r) {
			return
		}
		real.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s.URL
}

func twoPrompts(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "p.jsonl")
	os.WriteFile(p, []byte(`{"id":"p1","lang":"en","prompt":"Explain why the sky looks blue during the day."}
{"id":"p2","lang":"en","prompt":"Give three tips for learning a new language."}
`), 0o644)
	return p
}

// lastLine is what main printed as its error.
func lastLine(stderr string) string {
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	return lines[len(lines)-1]
}

// A backend that cannot serve fails before the pipeline, in one line, with
// exit code 1: nothing listening, 5xx only, garbage, or no answer in time.
func TestBackendCheckFailsFast(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + l.Addr().String()
	l.Close()
	hang := func(w http.ResponseWriter, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return true
	}
	cases := []struct {
		name, url string
		extra     []string
		want      string
	}{
		{"unreachable", closed, nil, "unreachable"},
		{"5xx", fakeBackend(t, func(w http.ResponseWriter, _ *http.Request) bool { http.Error(w, "down", 500); return true }), nil, "HTTP 500"},
		{"garbage", fakeBackend(t, func(w http.ResponseWriter, _ *http.Request) bool { w.Write([]byte("<html>")); return true }), nil, "OpenAI-compatible"},
		{"hang", fakeBackend(t, hang), []string{"--request_timeout=300ms"}, "no answer to a one-token test request within 300ms"},
		{"auth", fakeBackend(t, func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Authorization") == "" {
				http.Error(w, "missing key", 401)
				return true
			}
			return false
		}), nil, "API key"},
	}
	out := t.TempDir()
	for _, c := range cases {
		start := time.Now()
		args := append([]string{"generate", "--backend_url=" + c.url, "--prompts=" + twoPrompts(t), "--out=" + out,
			"--api_key_env=CONGRAD_TEST_NO_KEY_" + c.name}, c.extra...)
		t.Setenv("CONGRAD_TEST_NO_KEY_"+c.name, "x")
		if c.name == "auth" {
			t.Setenv("CONGRAD_TEST_NO_KEY_"+c.name, "")
			args[4] = "--backend_model=m" // default key variable, unset: no header
			os.Unsetenv("OPENAI_API_KEY")
		}
		code, _, stderr := runCLI(args...)
		line := lastLine(stderr)
		if code != 1 || !strings.Contains(line, c.want) || !strings.Contains(line, c.url) {
			t.Errorf("%s: exit %d, last line %q; want exit 1 and a line with %q and the URL", c.name, code, line, c.want)
		}
		if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "Job[") {
			t.Errorf("%s: the pipeline started:\n%s", c.name, stderr)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s: took %v", c.name, d)
		}
	}
}

// Past the check, a backend that fails every request leaves every prompt
// dead-lettered: the run exits 1 with one line saying so, and the retries
// were announced on stderr.
func TestAllDeadLetteredExitsNonZero(t *testing.T) {
	var n atomic.Int64
	url := fakeBackend(t, func(w http.ResponseWriter, r *http.Request) bool {
		if n.Add(1) == 1 {
			return false // the check passes
		}
		http.Error(w, "overloaded", 503)
		return true
	})
	out := t.TempDir()
	code, stdout, stderr := runCLI("generate", "--backend_url="+url, "--prompts="+twoPrompts(t), "--out="+out,
		"--max_retries=1", "--progress_every=0.2")
	line := lastLine(stderr)
	if code != 1 || !strings.Contains(line, "generate produced no pairs: 2 prompts read") || !strings.Contains(line, "dead-generate") {
		t.Errorf("exit %d, last line %q", code, line)
	}
	if !strings.Contains(stderr, "retry 1 of 1") || !strings.Contains(stderr, "HTTP 503") {
		t.Errorf("no retry notice on stderr:\n%s", stderr)
	}
	if !strings.Contains(stdout, "dead letters:") {
		t.Errorf("no summary:\n%s", stdout)
	}
}

// The key is read from the named variable, sent as a bearer token and
// found nowhere in the outputs, the report options or the logs.
func TestAPIKeyIsSentNeverStored(t *testing.T) {
	const key = "sk-congrad-test-9f8e7d"
	t.Setenv("CONGRAD_TEST_KEY", key)
	var bad atomic.Int64
	url := fakeBackend(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer "+key {
			bad.Add(1)
			http.Error(w, "bad key", 401)
			return true
		}
		return false
	})
	out := t.TempDir()
	code, stdout, stderr := runCLI("generate", "--backend_url="+url, "--prompts="+twoPrompts(t), "--out="+out,
		"--api_key_env=CONGRAD_TEST_KEY", "--min_margin=0", "--n=3", "--j=1", "--max_tokens=40", "--judge_max_tokens=3")
	if code != 0 || bad.Load() != 0 {
		t.Fatalf("exit %d, %d requests without the key\n%s", code, bad.Load(), stderr)
	}
	if strings.Contains(stdout+stderr, key) {
		t.Error("the key was printed")
	}
	filepath.Walk(out, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), key) || strings.Contains(string(b), "CONGRAD_TEST_KEY") {
				t.Errorf("%s holds the key or its variable", p)
			}
		}
		return nil
	})
}
