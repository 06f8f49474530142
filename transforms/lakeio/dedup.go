package lakeio

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/congrad-beam/congrad/schemas"
)

// dedupPromptsFn gets every valid row of one (lang, id) and keeps the first
// by (file path, position in the file); the others become duplicate_id dead
// letters naming it. The order is a property of the files, not of how the
// runner split or shuffled them, so the same row is kept on every run.
//
// JSONL rows carry their split and line within the split; the side input
// (line counts of every JSONL split) turns that into the line number in the
// file, for dead letters only.
type dedupPromptsFn struct {
	good, dead, dups beam.Counter
	lineBase         map[string][]splitLines // per path, sorted by Start; Lines is the prefix sum
}

func (f *dedupPromptsFn) Setup() {
	f.good = beam.NewCounter("lakeio", "prompts_good")
	f.dead = beam.NewCounter("lakeio", "prompts_dead")
	f.dups = beam.NewCounter("lakeio", "prompts_dead_"+ReasonDuplicateID)
}

func (f *dedupPromptsFn) StartBundle(_ context.Context, _ func(*splitLines) bool, _ func(schemas.Prompt), _ func(schemas.DeadLetter)) {
	f.lineBase = nil // side inputs may differ between bundles
}

func (f *dedupPromptsFn) ProcessElement(ctx context.Context, _ string, rows func(*posPrompt) bool, lines func(*splitLines) bool,
	good func(schemas.Prompt), dead func(schemas.DeadLetter)) {
	var first posPrompt
	var later []posPrompt
	n := 0
	var r posPrompt
	for rows(&r) {
		if n == 0 || before(r, first) {
			if n > 0 {
				later = append(later, first)
			}
			first = r
		} else {
			later = append(later, r)
		}
		n++
	}
	if n == 0 {
		return
	}
	f.good.Inc(ctx, 1)
	good(first.P)
	if len(later) == 0 {
		return
	}
	sort.Slice(later, func(i, j int) bool { return before(later[i], later[j]) })
	where := f.position(first, lines)
	for _, d := range later {
		f.dead.Inc(ctx, 1)
		f.dups.Inc(ctx, 1)
		payload, _ := json.Marshal(map[string]string{"id": d.P.ID, "lang": d.P.Lang, "prompt": d.P.Prompt})
		dead(schemas.DeadLetter{Stage: DeadStage, Source: d.Path, Row: f.row(d, lines),
			Reason:  fmt.Sprintf("%s: id %q (lang %s) first read at %s", ReasonDuplicateID, d.P.ID, d.P.Lang, where),
			Payload: truncate(payload, 1024)})
	}
}

// before orders rows by file path, then position in the file.
func before(a, b posPrompt) bool {
	if a.Path != b.Path {
		return a.Path < b.Path
	}
	return a.Offset < b.Offset
}

// row is what a dead letter's Row means for the file: the 1-based line of a
// JSONL row, the 0-based row index of a columnar one; -1 if unknown.
func (f *dedupPromptsFn) row(p posPrompt, lines func(*splitLines) bool) int64 {
	if p.Split < 0 {
		return p.Line
	}
	if f.lineBase == nil {
		f.lineBase = map[string][]splitLines{}
		var sl splitLines
		for lines(&sl) {
			f.lineBase[sl.Path] = append(f.lineBase[sl.Path], sl)
		}
		for _, ss := range f.lineBase {
			sort.Slice(ss, func(i, j int) bool { return ss[i].Start < ss[j].Start })
			var sum int64
			for i := range ss {
				sum, ss[i].Lines = sum+ss[i].Lines, sum // lines before split i
			}
		}
	}
	ss := f.lineBase[p.Path]
	i := sort.Search(len(ss), func(i int) bool { return ss[i].Start >= p.Split })
	if i == len(ss) || ss[i].Start != p.Split {
		return -1
	}
	return ss[i].Lines + p.Line
}

func (f *dedupPromptsFn) position(p posPrompt, lines func(*splitLines) bool) string {
	if p.Split < 0 {
		return fmt.Sprintf("%s row %d", p.Path, p.Line)
	}
	return fmt.Sprintf("%s line %d", p.Path, f.row(p, lines))
}
