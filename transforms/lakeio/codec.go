package lakeio

import (
	"fmt"
	"reflect"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
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
	appendRows(b *array.RecordBuilder, rows []any) error
	decode(rec arrow.RecordBatch, emit func(any)) error
	elemType() reflect.Type
}

type adapter[T any] struct{ c schemas.Codec[T] }

func (a adapter[T]) name() string                { return a.c.Name() }
func (a adapter[T]) schema() *arrow.Schema       { return a.c.Schema() }
func (a adapter[T]) check(s *arrow.Schema) error { return a.c.Check(s) }
func (a adapter[T]) elemType() reflect.Type      { return reflect.TypeFor[T]() }
func (a adapter[T]) key(v any) string            { t := v.(T); return a.c.Key(&t) }
func (a adapter[T]) appendRows(b *array.RecordBuilder, rows []any) error {
	ts := make([]T, len(rows))
	for i, r := range rows {
		ts[i] = r.(T)
	}
	return a.c.Append(b, ts)
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
	case reflect.TypeFor[schemas.Decision]():
		return "decision", nil
	case reflect.TypeFor[schemas.DeadLetter]():
		return "dead_letter", nil
	}
	return "", fmt.Errorf("%w: no file layout for element type %v (want a schemas record type)", ErrUnsupported, t)
}
