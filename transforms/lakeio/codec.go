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
}

// anyCodec is schemas.Codec[T] with T erased, so one concrete, registered
// DoFn can write or read every record type (Beam Go cannot register generic
// DoFns).
type anyCodec interface {
	name() string
	schema() *arrow.Schema
	check(*arrow.Schema) error
	key(v any) string
	decode(rec arrow.RecordBatch, emit func(any)) error
	elemType() reflect.Type
	// newBuffer collects rows of one shard on the sending side.
	newBuffer() rowBuffer
	// collect decodes the IPC blobs of one shard into rows sorted by key.
	collect(blobs func(*[]byte) bool) (rowSet, error)
}

// rowBuffer holds typed rows until they are shipped as one IPC blob.
type rowBuffer interface {
	add(v any)
	len() int
	ipc() ([]byte, error) // encodes and empties the buffer
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
func (a adapter[T]) key(v any) string            { t := v.(T); return a.c.Key(&t) }

// typedRows keeps rows as []T, not []any: boxing every row would cost an
// allocation per row on the hot path.
type typedRows[T any] struct {
	c    schemas.Codec[T]
	rows []T
}

func (t *typedRows[T]) add(v any) { t.rows = append(t.rows, v.(T)) }
func (t *typedRows[T]) len() int  { return len(t.rows) }
func (t *typedRows[T]) record(lo, hi int) (arrow.RecordBatch, error) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, t.c.Schema())
	defer b.Release()
	if err := t.c.Append(b, t.rows[lo:hi]); err != nil {
		return nil, err
	}
	return b.NewRecordBatch(), nil
}

// ipc encodes the buffered rows plus their keys (see shuffle.go) and empties
// the buffer.
func (t *typedRows[T]) ipc() ([]byte, error) {
	rec, err := t.record(0, len(t.rows))
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	kb := array.NewStringBuilder(memory.DefaultAllocator)
	defer kb.Release()
	kb.Reserve(len(t.rows))
	for i := range t.rows {
		kb.Append(t.c.Key(&t.rows[i]))
	}
	keys := kb.NewArray()
	defer keys.Release()
	t.rows = t.rows[:0]
	return encodeBlob(rec, keys)
}

func (a adapter[T]) newBuffer() rowBuffer { return &typedRows[T]{c: a.c} }

func (a adapter[T]) collect(blobs func(*[]byte) bool) (rowSet, error) {
	return sortBlobs(a.c.Schema(), blobs, a.tieKey)
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
		return adapter[schemas.Decision]{schemas.DecisionCodec{}}, nil
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
