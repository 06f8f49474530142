package hftok

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// bpeModel is the BPE model of tokenizer.json (HF tokenizers models/bpe):
// vocabulary, ranked merges, unk / fuse_unk, byte_fallback, ignore_merges,
// continuing_subword_prefix and end_of_word_suffix.
type bpeModel struct {
	vocab        map[string]int
	vocabR       map[int]string
	merges       map[[2]int]mergeRank
	unk          int // -1: no unk_token (unknown characters are dropped, as HF does)
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	byteIDs      [256]int
}

type mergeRank struct{ rank, newID int }

type bpeJSON struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

func newBPE(raw json.RawMessage) (*bpeModel, error) {
	var j bpeJSON
	if err := strictDecode(raw, &j); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if j.Type != "BPE" {
		return nil, unsupported("model.type %q (only BPE)", j.Type)
	}
	if j.Dropout != nil && *j.Dropout != 0 {
		return nil, unsupported("model.dropout %v (BPE dropout is random)", *j.Dropout)
	}
	m := &bpeModel{vocab: j.Vocab, vocabR: make(map[int]string, len(j.Vocab)), unk: -1,
		fuseUnk: j.FuseUnk, byteFallback: j.ByteFallback, ignoreMerges: j.IgnoreMerges,
		merges: make(map[[2]int]mergeRank, len(j.Merges))}
	if j.ContinuingSubwordPrefix != nil {
		m.prefix = *j.ContinuingSubwordPrefix
	}
	if j.EndOfWordSuffix != nil {
		m.suffix = *j.EndOfWordSuffix
	}
	for s, id := range j.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("model.vocab: %q has negative id %d", s, id)
		}
		m.vocabR[id] = s
	}
	if j.UnkToken != nil {
		id, ok := j.Vocab[*j.UnkToken]
		if !ok {
			return nil, fmt.Errorf("model.unk_token %q is not in the vocabulary", *j.UnkToken)
		}
		m.unk = id
	}
	for b := 0; b < 256; b++ {
		m.byteIDs[b] = -1
		if id, ok := j.Vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
	}
	// merges: ["a b", ...] (older files) or [["a", "b"], ...]; one decode of the whole list.
	var pairs [][2]string
	var lines []string
	if err := json.Unmarshal(j.Merges, &lines); err == nil {
		pairs = make([][2]string, len(lines))
		for i, line := range lines {
			a, b, ok := strings.Cut(line, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("model.merges[%d]: %q is not two tokens", i, line)
			}
			pairs[i] = [2]string{a, b}
		}
	} else {
		var lists [][]string
		if err := json.Unmarshal(j.Merges, &lists); err != nil && !isNull(j.Merges) {
			return nil, fmt.Errorf("model.merges: neither [\"a b\", ...] nor [[a, b], ...]: %v", err)
		}
		pairs = make([][2]string, len(lists))
		for i, l := range lists {
			if len(l) != 2 {
				return nil, fmt.Errorf("model.merges[%d]: %q is not two tokens", i, l)
			}
			pairs[i] = [2]string{l[0], l[1]}
		}
	}
	for rank, pr := range pairs {
		a, b := pr[0], pr[1]
		ia, oka := j.Vocab[a]
		ib, okb := j.Vocab[b]
		if !oka || !okb {
			return nil, fmt.Errorf("model.merges[%d]: %q %q not in the vocabulary", rank, a, b)
		}
		merged := a + strings.TrimPrefix(b, m.prefix)
		if m.prefix == "" {
			merged = a + b
		}
		in, ok := j.Vocab[merged]
		if !ok {
			return nil, fmt.Errorf("model.merges[%d]: merged token %q not in the vocabulary", rank, merged)
		}
		// A repeated pair keeps its last rank (HF collects the merges into a map).
		m.merges[[2]int{ia, ib}] = mergeRank{rank, in}
	}
	return m, nil
}

// tokenize appends the ids of one pre-tokenized word (HF BPE::tokenize).
func (m *bpeModel) tokenize(w string, out []int) []int {
	if w == "" {
		return out
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[w]; ok {
			return append(out, id)
		}
	}
	// merge_word: one symbol per character (or its byte tokens, or unk).
	syms := make([]symbol, 0, len(w))
	unk, unkPending := 0, false
	add := func(id int) {
		syms = append(syms, symbol{id: id, prev: len(syms) - 1, next: len(syms) + 1})
	}
	for i := 0; i < len(w); {
		_, n := utf8.DecodeRuneInString(w[i:])
		s := w[i : i+n]
		if i > 0 && m.prefix != "" {
			s = m.prefix + s
		}
		i += n
		if i == len(w) && m.suffix != "" {
			s += m.suffix
		}
		if id, ok := m.vocab[s]; ok {
			if unkPending {
				add(unk)
				unkPending = false
			}
			add(id)
			continue
		}
		if m.byteFallback {
			all := true
			for k := 0; k < len(s); k++ {
				if m.byteIDs[s[k]] < 0 {
					all = false
					break
				}
			}
			if all {
				for k := 0; k < len(s); k++ {
					add(m.byteIDs[s[k]])
				}
				continue
			}
		}
		if m.unk >= 0 {
			if unkPending && !m.fuseUnk {
				add(unk)
			}
			unk, unkPending = m.unk, true
		}
	}
	if unkPending {
		add(unk)
	}
	if len(syms) == 0 {
		return out
	}
	syms[len(syms)-1].next = -1
	m.mergeAll(syms)
	for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out
}

type symbol struct {
	id, prev, next int
	gone           bool
}

type mergeItem struct{ rank, pos, newID int }

type mergeQueue []mergeItem

func (q mergeQueue) Len() int { return len(q) }
func (q mergeQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}
func (q mergeQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *mergeQueue) Push(x any)   { *q = append(*q, x.(mergeItem)) }
func (q *mergeQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// mergeAll applies the merges lowest rank first, leftmost first among equal
// ranks (HF Word::merge_all with its priority queue, no dropout).
func (m *bpeModel) mergeAll(syms []symbol) {
	q := &mergeQueue{}
	for i := 0; i+1 < len(syms); i++ {
		if mr, ok := m.merges[[2]int{syms[i].id, syms[i+1].id}]; ok {
			*q = append(*q, mergeItem{mr.rank, i, mr.newID})
		}
	}
	heap.Init(q)
	for q.Len() > 0 {
		top := heap.Pop(q).(mergeItem)
		cur := &syms[top.pos]
		if cur.gone || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		if mr, ok := m.merges[[2]int{cur.id, right.id}]; !ok || mr.newID != top.newID {
			continue // an expired entry
		}
		cur.id = top.newID
		syms[cur.next].gone = true
		cur.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if mr, ok := m.merges[[2]int{syms[cur.prev].id, cur.id}]; ok {
				heap.Push(q, mergeItem{mr.rank, cur.prev, mr.newID})
			}
		}
		if cur.next >= 0 {
			if mr, ok := m.merges[[2]int{cur.id, syms[cur.next].id}]; ok {
				heap.Push(q, mergeItem{mr.rank, top.pos, mr.newID})
			}
		}
	}
}
