package lakeio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
	"github.com/congrad-beam/congrad/schemas"
)

// split is one unit of reading work. For JSONL [Start, End) is a byte range
// (a line belongs to the split its first byte is in); for Parquet a range of
// row groups; for an Arrow IPC file a range of record batches (End = -1: an
// Arrow IPC stream, read whole). RowBase is the file row index of the first
// row of the split, or -1 when unknown (only dead letters need it).
type split struct {
	Path    string
	Format  Format
	Start   int64
	End     int64
	RowBase int64
}

// Read reads files written by Write (or any file with the needed columns)
// matching glob into a PCollection of elemType, which must be a schemas
// record type. Parquet files split by row group, Arrow IPC files by record
// batch.
//
//	sketches := lakeio.Read(s, "/lake/run1/sketches-*.parquet", reflect.TypeFor[schemas.Sketch](), lakeio.ReadOptions{})
//
// A glob that matches nothing, an unreadable file or a file whose columns do
// not match fails the pipeline when it starts, naming the path and columns.
// Read panics on invalid arguments, like beam.ParDo; TryRead returns them.
func Read(s beam.Scope, glob string, elemType reflect.Type, opts ReadOptions) beam.PCollection {
	out, err := TryRead(s, glob, elemType, opts)
	if err != nil {
		panic(err)
	}
	return out
}

// ReadPairs reads PCollection<schemas.Pair> (either TRL form).
func ReadPairs(s beam.Scope, glob string, opts ReadOptions) beam.PCollection {
	return Read(s, glob, reflect.TypeFor[schemas.Pair](), opts)
}

// ReadSketches reads PCollection<schemas.Sketch>; opts.SketchK/SketchSpec,
// when set, must match the files.
func ReadSketches(s beam.Scope, glob string, opts ReadOptions) beam.PCollection {
	return Read(s, glob, reflect.TypeFor[schemas.Sketch](), opts)
}

// ReadDecisions reads PCollection<schemas.Decision>.
func ReadDecisions(s beam.Scope, glob string, opts ReadOptions) beam.PCollection {
	return Read(s, glob, reflect.TypeFor[schemas.Decision](), opts)
}

// ReadDeadLetters reads PCollection<schemas.DeadLetter>.
func ReadDeadLetters(s beam.Scope, glob string, opts ReadOptions) beam.PCollection {
	return Read(s, glob, reflect.TypeFor[schemas.DeadLetter](), opts)
}

// ReadCandidates reads PCollection<schemas.Candidate>.
func ReadCandidates(s beam.Scope, glob string, opts ReadOptions) beam.PCollection {
	return Read(s, glob, reflect.TypeFor[schemas.Candidate](), opts)
}

// TryRead is Read returning construction errors.
func TryRead(s beam.Scope, glob string, elemType reflect.Type, opts ReadOptions) (beam.PCollection, error) {
	s = s.Scope("lakeio.Read")
	splits, co, err := splitsOf(s, glob, elemType, opts)
	if err != nil {
		return beam.PCollection{}, err
	}
	return beam.ParDo(s, &readFn{Codec: co}, splits, beam.TypeDefinition{Var: beam.XType, T: elemType}), nil
}

func checkGlob(glob string) error {
	if strings.TrimSpace(glob) == "" {
		return fmt.Errorf("%w: empty glob", ErrBadOptions)
	}
	if _, err := filesystem.New(context.Background(), glob); err != nil {
		return fmt.Errorf("lakeio: %s: %w", glob, err)
	}
	return nil
}

// expandFn lists the glob and cuts every file into splits, checking each
// columnar file's schema on the way so a wrong file fails before any row is
// read. Codec.Kind == "" means "prompts" (lenient column check).
type expandFn struct {
	Glob  string
	Opts  ReadOptions
	Codec codecOpts
}

func (f *expandFn) ProcessElement(ctx context.Context, _ []byte, emit func(split)) error {
	files, err := list(ctx, f.Glob)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%w: %s", ErrNoMatch, f.Glob)
	}
	check := promptColumns
	if f.Codec.Kind != "" {
		c, err := codecFor(f.Codec)
		if err != nil {
			return err
		}
		check = c.check
	}
	for _, p := range files {
		format, err := formatOf(f.Opts.Format, p)
		if err != nil {
			return err
		}
		switch format {
		case JSONL:
			if f.Codec.Kind != "" {
				return fmt.Errorf("%w: %s: %s records cannot be read from JSONL", ErrUnsupported, p, f.Codec.Kind)
			}
			n, err := size(ctx, p)
			if err != nil {
				return err
			}
			for start := int64(0); start < n; start += f.Opts.SplitBytes {
				emit(split{Path: p, Format: JSONL, Start: start, End: min(start+f.Opts.SplitBytes, n), RowBase: -1})
			}
		case Parquet:
			if err := expandParquet(ctx, p, check, emit); err != nil {
				return err
			}
		case ArrowIPC:
			// Prompts need row numbers for dead letters, so a prompt file is
			// one split; written record files split by batch.
			if err := expandArrow(ctx, p, check, f.Codec.Kind != "", emit); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: format %q", ErrUnsupported, format)
		}
	}
	return nil
}

func schemaErr(p string, err error) error {
	var se *schemas.SchemaError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %s: %v", ErrBadSchema, p, err)
	}
	return fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
}

func openParquet(ctx context.Context, p string) (*file.Reader, *pqarrow.FileReader, io.Closer, error) {
	rr, _, err := openRandom(ctx, p)
	if err != nil {
		return nil, nil, nil, err
	}
	pf, err := file.NewParquetReader(rr)
	if err != nil {
		rr.Close()
		return nil, nil, nil, fmt.Errorf("%w %s: not a Parquet file: %v", ErrUnreadable, p, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		pf.Close()
		return nil, nil, nil, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
	}
	return pf, fr, pf, nil
}

func expandParquet(ctx context.Context, p string, check func(*arrow.Schema) error, emit func(split)) error {
	pf, fr, c, err := openParquet(ctx, p)
	if err != nil {
		return err
	}
	defer c.Close()
	sc, err := fr.Schema()
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
	}
	if err := check(sc); err != nil {
		return schemaErr(p, err)
	}
	var base int64
	for i := 0; i < pf.NumRowGroups(); i++ {
		emit(split{Path: p, Format: Parquet, Start: int64(i), End: int64(i + 1), RowBase: base})
		base += pf.MetaData().RowGroup(i).NumRows()
	}
	return nil
}

// arrowMagic starts (and ends) an Arrow IPC file; a stream has no magic.
const arrowMagic = "ARROW1"

func expandArrow(ctx context.Context, p string, check func(*arrow.Schema) error, perBatch bool, emit func(split)) error {
	rr, _, err := openRandom(ctx, p)
	if err != nil {
		return err
	}
	defer rr.Close()
	magic := make([]byte, len(arrowMagic))
	if _, err := rr.ReadAt(magic, 0); err != nil || string(magic) != arrowMagic {
		// An IPC stream: no footer, so no random access; read it whole.
		r, err := ipc.NewReader(io.NewSectionReader(rr, 0, 1<<62))
		if err != nil {
			return fmt.Errorf("%w %s: neither an Arrow IPC file nor stream: %v", ErrUnreadable, p, err)
		}
		defer r.Release()
		if err := check(r.Schema()); err != nil {
			return schemaErr(p, err)
		}
		emit(split{Path: p, Format: ArrowIPC, Start: 0, End: -1, RowBase: 0})
		return nil
	}
	fr, err := ipc.NewFileReader(rr)
	if err != nil {
		return fmt.Errorf("%w %s: bad Arrow IPC file: %v", ErrUnreadable, p, err)
	}
	defer fr.Close()
	if err := check(fr.Schema()); err != nil {
		return schemaErr(p, err)
	}
	n := int64(fr.NumRecords())
	if !perBatch {
		if n > 0 {
			emit(split{Path: p, Format: ArrowIPC, Start: 0, End: n, RowBase: 0})
		}
		return nil
	}
	for i := int64(0); i < n; i++ {
		emit(split{Path: p, Format: ArrowIPC, Start: i, End: i + 1, RowBase: -1})
	}
	return nil
}

// eachRowGroupBatch calls fn with the record batches of sp's row groups in
// order, reading only the Parquet columns named in cols (all when nil).
func eachRowGroupBatch(ctx context.Context, pf *file.Reader, fr *pqarrow.FileReader, sp split, cols []string, fn func(rec arrow.RecordBatch) error) error {
	var idx []int
	for _, name := range cols {
		if i := pf.MetaData().Schema.ColumnIndexByName(name); i >= 0 {
			idx = append(idx, i)
		}
	}
	var groups []int
	for g := sp.Start; g < sp.End; g++ {
		groups = append(groups, int(g))
	}
	rr, err := fr.GetRecordReader(ctx, idx, groups)
	if err != nil {
		return fmt.Errorf("%w %s: row groups %v: %v", ErrUnreadable, sp.Path, groups, err)
	}
	defer rr.Release()
	for rr.Next() {
		if err := fn(rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && err != io.EOF {
		return fmt.Errorf("%w %s: %v", ErrUnreadable, sp.Path, err)
	}
	return nil
}

// readBatches calls fn with every record batch of a columnar split and the
// file row index of its first row (-1 when unknown). cols, when non-nil,
// names the Parquet columns to read.
func readBatches(ctx context.Context, sp split, cols []string, fn func(rec arrow.RecordBatch, rowBase int64) error) error {
	switch sp.Format {
	case Parquet:
		pf, fr, c, err := openParquet(ctx, sp.Path)
		if err != nil {
			return err
		}
		defer c.Close()
		base := sp.RowBase
		each := func(rec arrow.RecordBatch) error {
			err := fn(rec, base)
			base += rec.NumRows()
			return err
		}
		if cols == nil && directFixedList {
			if fl, ok := fixedFloatList(pf, fr, sp); ok { // sketch values: see fixedlist.go
				return eachBatchFixedList(ctx, pf, fr, sp, fl, each)
			}
		}
		return eachRowGroupBatch(ctx, pf, fr, sp, cols, each)
	case ArrowIPC:
		rr, _, err := openRandom(ctx, sp.Path)
		if err != nil {
			return err
		}
		defer rr.Close()
		base := sp.RowBase
		if sp.End < 0 {
			r, err := ipc.NewReader(io.NewSectionReader(rr, 0, 1<<62))
			if err != nil {
				return fmt.Errorf("%w %s: %v", ErrUnreadable, sp.Path, err)
			}
			defer r.Release()
			for r.Next() {
				rec := r.RecordBatch()
				if err := fn(rec, base); err != nil {
					return err
				}
				base += rec.NumRows()
			}
			if err := r.Err(); err != nil && err != io.EOF {
				return fmt.Errorf("%w %s: %v", ErrUnreadable, sp.Path, err)
			}
			return nil
		}
		fr, err := ipc.NewFileReader(rr)
		if err != nil {
			return fmt.Errorf("%w %s: %v", ErrUnreadable, sp.Path, err)
		}
		defer fr.Close()
		for i := sp.Start; i < sp.End; i++ {
			rec, err := fr.RecordBatch(int(i))
			if err != nil {
				return fmt.Errorf("%w %s: batch %d: %v", ErrUnreadable, sp.Path, i, err)
			}
			if err := fn(rec, base); err != nil {
				return err
			}
			if base >= 0 {
				base += rec.NumRows()
			}
		}
		return nil
	}
	return fmt.Errorf("%w: columnar read of format %q", ErrUnsupported, sp.Format)
}

type readFn struct {
	Codec codecOpts
	c     anyCodec
	rows  beam.Counter
}

func (f *readFn) Setup() (err error) {
	f.c, err = codecFor(f.Codec)
	f.rows = beam.NewCounter("lakeio", f.Codec.Kind+"_rows_read")
	return err
}

func (f *readFn) ProcessElement(ctx context.Context, sp split, emit func(beam.X)) error {
	return readBatches(ctx, sp, nil, func(rec arrow.RecordBatch, _ int64) error {
		if err := f.c.decode(rec, func(v any) { emit(v) }); err != nil {
			return schemaErr(sp.Path, err)
		}
		f.rows.Inc(ctx, rec.NumRows())
		return nil
	})
}
