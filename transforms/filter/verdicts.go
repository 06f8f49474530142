package filter

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// ShardVerdicts is the verdict of each row of one pair-file split whose id
// falls in one hash shard, in file order (SplitFiles' bind stage). Rows are
// encoded compactly (verdictWriter): a 64-bit hash of the pair id, then
// either a dead-letter reason or the decision, with every string an index
// into Strs. About 40 bytes per pair, against a few hundred for the same
// rows as Go structs.
type ShardVerdicts struct {
	Shard int
	Strs  []string // the strings the rows name, each once
	Rows  []byte   // N encoded verdicts
	N     int
}

// verdict is one decoded row of ShardVerdicts.
type verdict struct {
	dead                                        string // dead-letter reason; "" when decided
	lang, reason, scoreType, target, rule, gate string
	score, refC, refR                           float64
	rank                                        int64
	kept, hasRef                                bool
}

const (
	verdictDead    = 0
	verdictDecided = 1
	flagKept       = 1
	flagRef        = 2
)

// verdictWriter encodes the rows of one ShardVerdicts.
type verdictWriter struct {
	buf   []byte
	strs  []string
	strIx map[string]uint64
	n     int
}

func (w *verdictWriter) str(s string) {
	if w.strIx == nil {
		w.strIx = map[string]uint64{}
	}
	i, ok := w.strIx[s]
	if !ok {
		i = uint64(len(w.strs))
		w.strs = append(w.strs, s)
		w.strIx[s] = i
	}
	w.buf = binary.AppendUvarint(w.buf, i)
}

func (w *verdictWriter) head(id string, kind byte) {
	w.buf = binary.LittleEndian.AppendUint64(w.buf, lakeio.KeyHash(id))
	w.buf = append(w.buf, kind)
	w.n++
}

func (w *verdictWriter) dead(id, reason string) {
	w.head(id, verdictDead)
	w.str(reason)
}

func (w *verdictWriter) decided(id string, t *decisionTable, r decRow) {
	w.head(id, verdictDecided)
	for _, s := range []uint32{r.lang, r.reason, r.scoreType, r.target, r.rule, r.gate} {
		w.str(t.strs[s])
	}
	w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(r.score))
	w.buf = binary.AppendVarint(w.buf, r.rank)
	var flags byte
	if r.kept {
		flags |= flagKept
	}
	if r.hasRef {
		flags |= flagRef
	}
	w.buf = append(w.buf, flags)
	if r.hasRef {
		w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(r.refC))
		w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(r.refR))
	}
}

// verdictReader decodes the rows of a ShardVerdicts one at a time,
// checking each against the pair id read from the file a second time.
type verdictReader struct {
	path string // the split's file, for errors
	v    ShardVerdicts
	off  int
	row  int
	err  error
}

func (r *verdictReader) fail(format string, a ...any) error {
	if r.err == nil {
		r.err = fmt.Errorf("filter: %s: pair verdicts row %d: %s", r.path, r.row, fmt.Sprintf(format, a...))
	}
	return r.err
}

func (r *verdictReader) u64() uint64 {
	if r.off+8 > len(r.v.Rows) {
		r.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.v.Rows[r.off:])
	r.off += 8
	return v
}

func (r *verdictReader) byte1() byte {
	if r.off >= len(r.v.Rows) {
		r.fail("truncated")
		return 0
	}
	r.off++
	return r.v.Rows[r.off-1]
}

func (r *verdictReader) str() string {
	i, n := binary.Uvarint(r.v.Rows[r.off:])
	if n <= 0 || i >= uint64(len(r.v.Strs)) {
		r.fail("bad string index")
		return ""
	}
	r.off += n
	return r.v.Strs[i]
}

func (r *verdictReader) varint() int64 {
	v, n := binary.Varint(r.v.Rows[r.off:])
	if n <= 0 {
		r.fail("bad rank")
		return 0
	}
	r.off += n
	return v
}

// next decodes the verdict of the next row, whose pair id must be id: the
// file was read twice, and a file rewritten in between is an error, not a
// wrong join.
func (r *verdictReader) next(id string) (verdict, error) {
	if r.err != nil {
		return verdict{}, r.err
	}
	if r.row >= r.v.N {
		return verdict{}, r.fail("the file has more rows than when it was first read (changed during the run?)")
	}
	var v verdict
	if h := r.u64(); r.err == nil && h != lakeio.KeyHash(id) {
		return verdict{}, r.fail("pair id %q differs from the first read (file changed during the run?)", id)
	}
	switch kind := r.byte1(); kind {
	case verdictDead:
		v.dead = r.str()
	case verdictDecided:
		v.lang, v.reason, v.scoreType, v.target, v.rule, v.gate = r.str(), r.str(), r.str(), r.str(), r.str(), r.str()
		v.score = math.Float64frombits(r.u64())
		v.rank = r.varint()
		flags := r.byte1()
		v.kept, v.hasRef = flags&flagKept != 0, flags&flagRef != 0
		if v.hasRef {
			v.refC, v.refR = math.Float64frombits(r.u64()), math.Float64frombits(r.u64())
		}
	default:
		r.fail("unknown verdict kind %d", kind)
	}
	r.row++
	return v, r.err
}

// done checks that every bound row was read back.
func (r *verdictReader) done() error {
	if r.err == nil && (r.row != r.v.N || r.off != len(r.v.Rows)) {
		return r.fail("the file has %d rows, %d when it was first read (changed during the run?)", r.row, r.v.N)
	}
	return r.err
}
