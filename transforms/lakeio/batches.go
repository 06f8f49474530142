package lakeio

import (
	"context"
	"fmt"
	"reflect"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
)

// Split is one unit of columnar reading work: a range of Parquet row groups
// or of Arrow record batches of one file. Splits lets a transform read the
// same files more than once (select reads sketch files in passes) without
// carrying their rows between stages.
type Split = split

// Splits lists glob, checks every file's columns against elemType's layout
// (as Read does, so a wrong file fails before any row is read) and returns
// its splits, reshuffled so a runner spreads them over workers. Columnar
// files only.
//
//	PCollection<lakeio.Split>
func Splits(s beam.Scope, glob string, elemType reflect.Type, opts ReadOptions) (beam.PCollection, error) {
	splits, _, err := splitsOf(s.Scope("lakeio.Splits"), glob, elemType, opts)
	return splits, err
}

// splitsOf checks glob and elemType, lists the files and returns their
// splits, reshuffled, with the codec options the readers need.
func splitsOf(s beam.Scope, glob string, elemType reflect.Type, opts ReadOptions) (beam.PCollection, codecOpts, error) {
	if err := checkGlob(glob); err != nil {
		return beam.PCollection{}, codecOpts{}, err
	}
	kind, err := kindOf(elemType)
	if err != nil {
		return beam.PCollection{}, codecOpts{}, err
	}
	if opts.Format == JSONL {
		return beam.PCollection{}, codecOpts{}, fmt.Errorf("%w: %s records from JSONL (only prompts)", ErrUnsupported, kind)
	}
	co := codecOpts{Kind: kind, K: opts.SketchK, Spec: opts.SketchSpec}
	splits := beam.ParDo(s, &expandFn{Glob: glob, Opts: opts.withDefaults(), Codec: co}, beam.Impulse(s))
	return beam.Reshuffle(s, splits), co, nil
}

// EachBatch calls fn with the record batches of sp, at most batchRows rows
// each (Parquet; an Arrow file's batches are as written). cols, when non-nil,
// names the flat Parquet columns to read. Parquet pages are
// streamed through a small buffer, so memory is about one batch whatever
// the size of a row group. rec and its buffers are only valid until fn
// returns (the next batch may reuse them): fn copies what it keeps.
func EachBatch(ctx context.Context, sp Split, cols []string, batchRows int, fn func(rec arrow.RecordBatch) error) error {
	if sp.Format != Parquet {
		return readBatches(ctx, sp, cols, func(rec arrow.RecordBatch, _ int64) error { return fn(rec) })
	}
	if batchRows <= 0 {
		batchRows = 1024
	}
	rr, _, err := openRandom(ctx, sp.Path)
	if err != nil {
		return err
	}
	props := parquet.NewReaderProperties(memory.DefaultAllocator)
	props.BufferedStreamEnabled = true
	props.BufferSize = 1 << 20
	pf, err := file.NewParquetReader(rr, file.WithReadProps(props))
	if err != nil {
		rr.Close()
		return fmt.Errorf("%w %s: not a Parquet file: %v", ErrUnreadable, sp.Path, err)
	}
	defer pf.Close()
	if n := int64(pf.NumRowGroups()); sp.Start < 0 || sp.End > n || sp.Start > sp.End {
		return fmt.Errorf("%w %s: split of row groups [%d, %d) but the file has %d", ErrUnreadable, sp.Path, sp.Start, sp.End, n)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(batchRows)}, memory.DefaultAllocator)
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrUnreadable, sp.Path, err)
	}
	if cols == nil && directFixedList {
		if fl, ok := fixedFloatList(pf, fr, sp); ok {
			return eachBatchFixedList(ctx, pf, fr, sp, fl, fn)
		}
	}
	return eachRowGroupBatch(ctx, pf, fr, sp, cols, fn)
}
