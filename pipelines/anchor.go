package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// The anchor of --gate=anchor (METHOD.md §8.3) is a small trusted dev set:
// either its pairs (congrad run sketches them in the same pipeline, with
// the run's model, sketch spec and seed) or their sketch files (written by
// congrad sketch). Which one a glob names is decided from the files'
// columns, never from their names.

// Anchor kinds (AnchorInfo.Kind).
const (
	AnchorKindPairs    = "pairs"
	AnchorKindSketches = "sketches"
)

// AnchorInfo describes the files of an anchor glob.
type AnchorInfo struct {
	Kind  string   // AnchorKindPairs | AnchorKindSketches
	Files []string // the matching files
	Rows  int64    // pairs or sketches in them
	K     int      // sketch files: their dimension
	Spec  string   // sketch files: their sketch spec (schema metadata; "" if none)
}

// ErrAnchor marks an anchor glob whose files cannot be an anchor.
var ErrAnchor = errors.New("anchor")

// InspectAnchor lists glob and reads each file's schema and row count: every
// file must be a pair file (Parquet or Arrow IPC with the pair columns) or
// every file a sketch file (with spec's k and, when recorded, spec), and
// together they must hold at least one row. Errors name the file and what
// is wrong with it.
func InspectAnchor(ctx context.Context, glob string, spec sketch.Spec) (AnchorInfo, error) {
	var info AnchorInfo
	files, err := lakeio.Match(ctx, glob)
	if err != nil {
		return info, fmt.Errorf("%w: %s: %v", ErrAnchor, glob, err)
	}
	if len(files) == 0 {
		return info, fmt.Errorf("%w: %w: no files match %s", ErrAnchor, ErrNoInput, glob)
	}
	info.Files = files
	for _, f := range files {
		sc, n, err := schemaAndRows(ctx, f)
		if err != nil {
			return info, fmt.Errorf("%w: %v", ErrAnchor, err)
		}
		kind, err := anchorKind(f, sc, spec)
		if err != nil {
			return info, err
		}
		if info.Kind != "" && kind != info.Kind {
			return info, fmt.Errorf("%w: %s mixes %s files and %s files (%s): name one kind", ErrAnchor, glob, info.Kind, kind, f)
		}
		info.Kind = kind
		info.Rows += n
		if kind == AnchorKindSketches {
			ft := sc.Field(sc.FieldIndices("values")[0]).Type.(*arrow.FixedSizeListType)
			info.K = int(ft.Len())
			info.Spec, _ = sc.Metadata().GetValue(schemas.MetaSketchSpec)
		}
	}
	if info.Rows == 0 {
		return info, fmt.Errorf("%w: %s: the anchor is empty (%d %s files, 0 rows)", ErrAnchor, glob, len(files), info.Kind)
	}
	return info, nil
}

// anchorKind classifies one file by its columns.
func anchorKind(f string, sc *arrow.Schema, spec sketch.Spec) (string, error) {
	if (schemas.PairCodec{}).Check(sc) == nil {
		return AnchorKindPairs, nil
	}
	anyErr := (schemas.SketchCodec{}).Check(sc)
	if anyErr == nil {
		if err := (schemas.SketchCodec{K: spec.K, Spec: spec.String()}).Check(sc); err != nil {
			return "", fmt.Errorf("%w: %s: sketches made with other settings than this run's (%v)", ErrAnchor, f, err)
		}
		return AnchorKindSketches, nil
	}
	return "", fmt.Errorf("%w: %s is neither a pair file (%v) nor a sketch file (%v)", ErrAnchor, f,
		schemas.PairCodec{}.Check(sc), anyErr)
}

// schemaAndRows reads the Arrow schema and row count of a Parquet or Arrow
// IPC file (file or stream), local or on any lakeio filesystem.
func schemaAndRows(ctx context.Context, p string) (*arrow.Schema, int64, error) {
	var ra interface {
		io.Reader
		io.ReaderAt
		io.Seeker
	}
	var size int64
	if isLocalPath(p) {
		f, err := os.Open(p)
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, 0, err
		}
		ra, size = f, st.Size()
	} else {
		b, err := readAll(ctx, p)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %v", p, err)
		}
		ra, size = bytes.NewReader(b), int64(len(b))
	}
	switch strings.ToLower(path.Ext(p)) {
	case ".parquet", ".pq":
		pf, err := file.NewParquetReader(ra)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: not a Parquet file: %v", p, err)
		}
		defer pf.Close()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %v", p, err)
		}
		sc, err := fr.Schema()
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %v", p, err)
		}
		return sc, pf.NumRows(), nil
	case ".arrow", ".feather", ".ipc", ".arrows":
		magic := make([]byte, 6)
		if _, err := ra.ReadAt(magic, 0); err == nil && string(magic) == "ARROW1" {
			r, err := ipc.NewFileReader(ra)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: bad Arrow IPC file: %v", p, err)
			}
			defer r.Close()
			var n int64
			for i := 0; i < r.NumRecords(); i++ {
				rec, err := r.RecordBatchAt(i)
				if err != nil {
					return nil, 0, fmt.Errorf("%s: %v", p, err)
				}
				n += rec.NumRows()
				rec.Release()
			}
			return r.Schema(), n, nil
		}
		r, err := ipc.NewReader(io.NewSectionReader(ra, 0, size))
		if err != nil {
			return nil, 0, fmt.Errorf("%s: neither an Arrow IPC file nor stream: %v", p, err)
		}
		defer r.Release()
		var n int64
		for r.Next() {
			n += r.RecordBatch().NumRows()
		}
		if err := r.Err(); err != nil && err != io.EOF {
			return nil, 0, fmt.Errorf("%s: %v", p, err)
		}
		return r.Schema(), n, nil
	case ".jsonl", ".ndjson", ".json":
		return nil, 0, fmt.Errorf("%s: JSONL: pair and sketch files are read from Parquet or Arrow IPC only (JSONL is for prompts)", p)
	}
	return nil, 0, fmt.Errorf("%s: cannot tell the format from the extension (want .parquet or .arrow)", p)
}

// InputAnchor is the anchor's key in a manifest's inputs.
const InputAnchor = "anchor"

// resolveAnchor checks the --anchor files like the other inputs
// (ResolveInput: files listed in a committed manifest must be unchanged,
// an unlisted shard file of a manifested folder is stale, one glob is one
// source) and records them in j.Inputs, hence in the select manifest's
// inputs with their digest. Files this command rewrites cannot be its
// anchor.
func (j *Job) resolveAnchor(ctx context.Context, glob string, warn io.Writer) error {
	ref, _, _, _, err := ResolveInput(ctx, j.out, InputAnchor, glob, "--anchor", warn)
	if err != nil {
		return err
	}
	if err := AnchorNotOutput(ctx, j.Command, j.out, glob); err != nil {
		return fmt.Errorf("%w: %v", ErrManifest, err)
	}
	j.Inputs[InputAnchor] = ref
	return nil
}

// AnchorNotOutput refuses an anchor glob that matches files cmd (run,
// select) is about to rewrite in out: the job would read its anchor while
// replacing it.
func AnchorNotOutput(ctx context.Context, cmd, out, glob string) error {
	files, err := lakeio.Match(ctx, glob)
	if err != nil {
		return fmt.Errorf("--anchor %s: %w", glob, err)
	}
	for _, f := range files {
		if !sameDir(dirOf(f), out) {
			continue
		}
		name, _ := shardOutput(path.Base(f))
		for _, st := range commandStages(cmd) {
			for _, w := range writes(cmd, st) {
				if name == w {
					return fmt.Errorf("--anchor: %s is an output of this `congrad %s` in --out: the anchor must be other files", f, cmd)
				}
			}
		}
	}
	return nil
}

// recheckAnchor hashes the anchor files again after the pipeline ran: an
// anchor changed while the job read it would make the committed manifest
// vouch for data the run did not use. (The anchor is a small dev set, so
// this costs little; pairs and sketches are not hashed twice.)
func (j *Job) recheckAnchor(ctx context.Context) error {
	ref, ok := j.Inputs[InputAnchor]
	if !ok {
		return nil
	}
	again, _, _, _, err := ResolveInput(ctx, j.out, InputAnchor, ref.Glob, "--anchor", nil)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if again.Digest != ref.Digest || again.Files != ref.Files {
		return fmt.Errorf("%w: --anchor %s changed while the run read it (%s, now %s): rerun", ErrManifest, ref.Glob, describeRef(ref), describeRef(again))
	}
	return nil
}

// sameDir reports whether two folders are the same (local ones compared as
// absolute paths).
func sameDir(a, b string) bool {
	if isLocalPath(a) && isLocalPath(b) {
		aa, err1 := filepath.Abs(a)
		bb, err2 := filepath.Abs(b)
		return err1 == nil && err2 == nil && aa == bb
	}
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}
