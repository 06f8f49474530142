package lakeio

import (
	"fmt"
	"reflect"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/congrad-beam/congrad/schemas"
)

// codecOpts is what a DoFn needs to rebuild a codec on a worker: a plain
// struct, so it serializes with the DoFn.
type codecOpts struct {
	Kind           string // schemas codec Name()
	Conversational bool
	K              int
	Spec           string
	Audit          bool // decisions: the audit columns
}

// anyCodec is schemas.Codec[T] with T erased, so one concrete, registered
// DoFn can write or read every record type (Beam Go cannot register generic
// DoFns).
type anyCodec interface {
	name() string
	schema() *arrow.Schema
	check(*arrow.Schema) error
	decode(rec arrow.RecordBatch, emit func(any)) error
	elemType() reflect.Type
	// newBuffer collects rows of one shard on the sending side.
	newBuffer() rowBuffer
	// newSharder assigns rows to shards and buffers them per shard.
	newSharder(shards int) sharder
	// collect gathers the shuffle batches of one shard (each calls its
	// argument once per batch) into rows sorted by key.
	collect(each func(func(arrow.RecordBatch) error) error) (rowSet, error)
}

// rowBuffer holds typed rows until they are shipped as one IPC blob.
type rowBuffer interface {
	add(v any)
	len() int
	ipc() ([]byte, error) // encodes and empties the buffer
}

// sharder is the sending side of Write: it assigns each row to shard
// shardOf(key, shards) and keeps one typed buffer per shard, so the hot
// path does no per-row allocation (no boxed copy to compute the key, no
// map lookup).
type sharder interface {
	// add appends v (a T) to its shard's buffer and returns the shard and
	// the number of rows now buffered there.
	add(v any) (shard, buffered int)
	// flush encodes and empties shard's buffer; nil when it is empty.
	flush(shard int) ([]byte, error)
	// spill writes shard's buffer to a new file under dir and empties it;
	// it returns the file's name, "" when the buffer is empty.
	spill(shard int, dir string) (string, error)
	// reset empties every buffer without encoding it.
	reset()
}

// rowSet is a shard's rows in final order, handed out as record batches
// of consecutive rows.
type rowSet interface {
	len() int
	record(lo, hi int) (arrow.RecordBatch, error)
}

type adapter[T any] struct{ c schemas.Codec[T] }

func (a adapter[T]) name() string                { return a.c.Name() }
func (a adapter[T]) schema() *arrow.Schema       { return a.c.Schema() }
func (a adapter[T]) check(s *arrow.Schema) error { return a.c.Check(s) }
func (a adapter[T]) elemType() reflect.Type      { return reflect.TypeFor[T]() }

// typedRows keeps rows as []T, not []any: boxing every row would cost an
// allocation per row on the hot path. keys, when non-nil, holds each row's
// codec key (computed once, when the row was sharded).
type typedRows[T any] struct {
	c      schemas.Codec[T]
	schema *arrow.Schema
	rows   []T
	keys   []string
	// Sizes of the last batch built, used to reserve the Arrow builders'
	// buffers for the next one instead of growing them by doubling (each
	// doubling is an allocation, a zeroing and a copy). Capacity only:
	// the values, and so the blobs and files, do not depend on it.
	last     arrow.RecordBatch
	lastBlob int
}

func (t *typedRows[T]) add(v any) { t.rows = append(t.rows, v.(T)) }
func (t *typedRows[T]) len() int  { return len(t.rows) }
func (t *typedRows[T]) record(lo, hi int) (arrow.RecordBatch, error) {
	if t.schema == nil {
		t.schema = t.c.Schema()
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, t.schema)
	defer b.Release()
	if t.last != nil {
		for i, fb := range b.Fields() {
			reserveLike(fb, t.last.Column(i).Data(), hi-lo)
		}
	}
	if err := t.c.Append(b, t.rows[lo:hi]); err != nil {
		return nil, err
	}
	return b.NewRecordBatch(), nil
}

// batch builds the buffered rows as a record plus their keys (see
// shuffle.go) and empties the buffer. The record stays owned by t (it is
// released with the next batch; only its sizes are read), the caller
// releases keys.
func (t *typedRows[T]) batch() (arrow.RecordBatch, arrow.Array, error) {
	rec, err := t.record(0, len(t.rows))
	if err != nil {
		return nil, nil, err
	}
	if t.last != nil {
		t.last.Release()
	}
	t.last = rec
	keys := t.keys
	if keys == nil {
		keys = make([]string, len(t.rows))
		for i := range t.rows {
			keys[i] = t.c.Key(&t.rows[i])
		}
	}
	kb := array.NewStringBuilder(memory.DefaultAllocator)
	defer kb.Release()
	kb.Reserve(len(keys))
	n := 0
	for _, k := range keys {
		n += len(k)
	}
	kb.ReserveData(n)
	kb.AppendValues(keys, nil)
	keyArr := kb.NewArray()
	clear(t.rows) // drop the strings the rows point to before reuse
	t.rows = t.rows[:0]
	if t.keys != nil {
		clear(t.keys)
		t.keys = t.keys[:0]
	}
	return rec, keyArr, nil
}

// ipc encodes the buffered rows plus their keys as one shuffle blob and
// empties the buffer.
func (t *typedRows[T]) ipc() ([]byte, error) {
	rec, keys, err := t.batch()
	if err != nil {
		return nil, err
	}
	defer keys.Release()
	blob, err := encodeBlob(rec, keys, t.lastBlob)
	t.lastBlob = len(blob)
	return blob, err
}

// spill writes the buffered rows plus their keys to a new file under dir
// (see spillBatch) and empties the buffer.
func (t *typedRows[T]) spill(dir string, shard int) (string, error) {
	rec, keys, err := t.batch()
	if err != nil {
		return "", err
	}
	defer keys.Release()
	return spillBatch(dir, shard, rec, keys)
}

func (a adapter[T]) newBuffer() rowBuffer { return &typedRows[T]{c: a.c} }

// typedSharder is sharder for record type T.
type typedSharder[T any] struct {
	c       schemas.Codec[T]
	shards  int
	scratch T // the row being sharded: its key is read in place, no copy escapes
	bufs    []*typedRows[T]
}

func (a adapter[T]) newSharder(shards int) sharder {
	return &typedSharder[T]{c: a.c, shards: shards, bufs: make([]*typedRows[T], shards)}
}

func (s *typedSharder[T]) add(v any) (int, int) {
	s.scratch = v.(T)
	key := s.c.Key(&s.scratch)
	sh := shardOf(key, s.shards)
	b := s.bufs[sh]
	if b == nil {
		b = &typedRows[T]{c: s.c, keys: []string{}}
		s.bufs[sh] = b
	}
	b.rows = append(b.rows, s.scratch)
	b.keys = append(b.keys, key)
	return sh, len(b.rows)
}

func (s *typedSharder[T]) reset() {
	for _, b := range s.bufs {
		if b != nil {
			clear(b.rows)
			b.rows = b.rows[:0]
			clear(b.keys)
			b.keys = b.keys[:0]
		}
	}
}

func (s *typedSharder[T]) flush(sh int) ([]byte, error) {
	b := s.bufs[sh]
	if b == nil || len(b.rows) == 0 {
		return nil, nil
	}
	return b.ipc()
}

func (s *typedSharder[T]) spill(sh int, dir string) (string, error) {
	b := s.bufs[sh]
	if b == nil || len(b.rows) == 0 {
		return "", nil
	}
	return b.spill(dir, sh)
}

// reserveLike reserves room in b for n values, sizing variable-length data
// (string bytes, list children) in proportion to prev, the same column of
// the previous batch.
func reserveLike(b array.Builder, prev arrow.ArrayData, n int) {
	b.Reserve(n)
	pn := prev.Len()
	if pn == 0 || n == 0 {
		return
	}
	scale := func(x int) int { return int(int64(x)*int64(n)/int64(pn)) + 64 }
	switch bb := b.(type) {
	case *array.StringBuilder:
		if bufs := prev.Buffers(); len(bufs) > 2 && bufs[2] != nil {
			bb.ReserveData(scale(bufs[2].Len()))
		}
	case *array.BinaryBuilder:
		if bufs := prev.Buffers(); len(bufs) > 2 && bufs[2] != nil {
			bb.ReserveData(scale(bufs[2].Len()))
		}
	case array.ListLikeBuilder:
		if ch := prev.Children(); len(ch) == 1 {
			reserveLike(bb.ValueBuilder(), ch[0], scale(ch[0].Len())-64)
		}
	case *array.StructBuilder:
		ch := prev.Children()
		for i := 0; i < bb.NumField() && i < len(ch); i++ {
			reserveLike(bb.FieldBuilder(i), ch[i], n)
		}
	}
}

func (a adapter[T]) collect(each func(func(arrow.RecordBatch) error) error) (rowSet, error) {
	return sortBatches(a.c.Schema(), each, a.tieKey)
}

// tieKey orders rows with equal keys (duplicate ids) by their printed
// value, so the order never depends on shuffle order. Only rows that tie
// are decoded.
func (a adapter[T]) tieKey(rec arrow.RecordBatch) (string, error) {
	rows, err := a.c.Decode(rec)
	if err != nil || len(rows) != 1 {
		return "", fmt.Errorf("decode tied row: %v (%d rows)", err, len(rows))
	}
	return fmt.Sprintf("%#v", rows[0]), nil
}

func (a adapter[T]) decode(rec arrow.RecordBatch, emit func(any)) error {
	rows, err := a.c.Decode(rec)
	if err != nil {
		return err
	}
	for _, r := range rows {
		emit(r)
	}
	return nil
}

// codecFor builds the codec named by o.
func codecFor(o codecOpts) (anyCodec, error) {
	switch o.Kind {
	case "prompt":
		return adapter[schemas.Prompt]{schemas.PromptCodec{}}, nil
	case "candidate":
		return adapter[schemas.Candidate]{schemas.CandidateCodec{}}, nil
	case "pair":
		return adapter[schemas.Pair]{schemas.PairCodec{Conversational: o.Conversational}}, nil
	case "sketch":
		return adapter[schemas.Sketch]{schemas.SketchCodec{K: o.K, Spec: o.Spec}}, nil
	case "dropped":
		return adapter[schemas.Dropped]{schemas.DroppedCodec{Conversational: o.Conversational}}, nil
	case "decision":
		return adapter[schemas.Decision]{schemas.DecisionCodec{Audit: o.Audit}}, nil
	case "dead_letter":
		return adapter[schemas.DeadLetter]{schemas.DeadLetterCodec{}}, nil
	}
	return nil, fmt.Errorf("%w: no codec for record kind %q", ErrUnsupported, o.Kind)
}

// kindOf maps a PCollection element type to its codec kind.
func kindOf(t reflect.Type) (string, error) {
	switch t {
	case reflect.TypeFor[schemas.Prompt]():
		return "prompt", nil
	case reflect.TypeFor[schemas.Candidate]():
		return "candidate", nil
	case reflect.TypeFor[schemas.Pair]():
		return "pair", nil
	case reflect.TypeFor[schemas.Sketch]():
		return "sketch", nil
	case reflect.TypeFor[schemas.Dropped]():
		return "dropped", nil
	case reflect.TypeFor[schemas.Decision]():
		return "decision", nil
	case reflect.TypeFor[schemas.DeadLetter]():
		return "dead_letter", nil
	}
	return "", fmt.Errorf("%w: no file layout for element type %v (want a schemas record type)", ErrUnsupported, t)
}
