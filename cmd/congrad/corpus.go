package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// markovCorpus builds the training text of the in-process markov generator:
// every answer line of answersPath ("lang<TAB>text", self-written, see
// testdata/prompts) and, for each local JSONL prompt matching promptGlob, the
// prompt followed by an answer of its language. A candidate then continues a
// prompt with text of its language, more or less on topic, so the overlap
// judge's scores vary and pairs form in every language. It only shapes the
// demo generator; real runs point --backend_url at a real model server.
func markovCorpus(promptGlob, answersPath string) (string, error) {
	if answersPath == "" {
		return "", nil
	}
	f, err := os.Open(answersPath)
	if err != nil {
		return "", fmt.Errorf("--generator_corpus: %w", err)
	}
	defer f.Close()
	answers := map[string][]string{}
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		lang, text, ok := strings.Cut(line, "\t")
		if !ok {
			text, lang = line, ""
		}
		answers[lang] = append(answers[lang], text)
		b.WriteString(text + "\n")
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("--generator_corpus %s: %w", answersPath, err)
	}
	files, _ := filepath.Glob(promptGlob) // remote or bad globs: answers only
	sort.Strings(files)
	for _, path := range files {
		if !strings.HasSuffix(path, ".jsonl") {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			var p struct{ ID, Lang, Prompt string }
			if json.Unmarshal([]byte(line), &p) != nil || p.Prompt == "" {
				continue
			}
			as := answers[p.Lang]
			if len(as) == 0 {
				continue
			}
			i, _ := strconv.Atoi(strings.TrimLeft(p.ID, "p"))
			b.WriteString(p.Prompt + " " + as[topic(i-1, len(as))] + "\n")
		}
	}
	return b.String(), nil
}

// topic maps prompt index i (0-based, ten everyday topics) to an answer
// line of a language with n answers: the shorter lists skip topics 5 and 6.
func topic(i, n int) int {
	switch {
	case i < 0:
		return 0
	case n >= 10 || i < 5:
		return i % n
	case n == 9:
		if i == 5 {
			return 5
		}
		return (i - 1) % n
	case i <= 6:
		return i % n
	default:
		return (i - 2) % n
	}
}
