// Package lakeio reads and writes ConGrad records as files on any Beam
// filesystem (local paths, gs://, memfs://, s3:// when imported): prompts from
// JSONL, Parquet or Arrow IPC, and every record type as sharded Parquet (zstd)
// or Arrow IPC files that TRL, DuckDB, pyarrow and Spark read as they are.
//
// Reads expand a glob into files and files into splits (byte ranges of a JSONL
// file, row groups of a Parquet file, record batches of an Arrow file), then
// reshuffle the splits so a runner spreads them over workers; no step holds a
// whole file in memory. Writes assign rows to shards by a hash of the record's
// stable key, sort each shard, write it under a temporary name and rename it,
// so a file is either complete or absent and a rerun gives byte-identical
// files.
//
//	good, dead := lakeio.ReadPrompts(s, "gs://bucket/prompts/*.jsonl", lakeio.ReadOptions{})
//	files := lakeio.Write(s, "gs://bucket/run1/pairs", pairs, lakeio.WriteOptions{Shards: 16})
//	pairs2 := lakeio.ReadPairs(s, "gs://bucket/run1/pairs-*.parquet", lakeio.ReadOptions{})
package lakeio

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// Format is a file format.
type Format string

// Formats. The zero value means "from the file extension" when reading and
// Parquet when writing.
const (
	Auto     Format = ""
	Parquet  Format = "parquet" // .parquet, zstd-compressed, Arrow schema stored
	ArrowIPC Format = "arrow"   // .arrow/.feather/.ipc: Arrow IPC file (or stream, read only)
	JSONL    Format = "jsonl"   // .jsonl/.ndjson/.json: one JSON object per line (prompts only)
)

// Ext is the file extension (with dot) written for f.
func (f Format) Ext() string {
	if f == ArrowIPC {
		return ".arrow"
	}
	return ".parquet"
}

// formatOf picks the format from a path's extension when f is Auto.
func formatOf(f Format, p string) (Format, error) {
	if f != Auto {
		return f, nil
	}
	switch strings.ToLower(path.Ext(p)) {
	case ".parquet", ".pq":
		return Parquet, nil
	case ".arrow", ".feather", ".ipc", ".arrows":
		return ArrowIPC, nil
	case ".jsonl", ".ndjson", ".json":
		return JSONL, nil
	}
	return "", fmt.Errorf("lakeio: cannot tell the format of %s from its extension; set ReadOptions.Format", p)
}

// Sentinel errors. Errors that cross a runner boundary arrive as text, so the
// messages name the path, glob and columns involved as well.
var (
	ErrNoMatch     = errors.New("lakeio: glob matched no files")
	ErrBadOptions  = errors.New("lakeio: bad options")
	ErrUnreadable  = errors.New("lakeio: cannot read file")
	ErrBadSchema   = errors.New("lakeio: file schema does not match")
	ErrUnsupported = errors.New("lakeio: unsupported")
)

// ReadOptions configure the readers. The zero value is useful.
type ReadOptions struct {
	// Format of the files; Auto picks it from each file's extension.
	Format Format
	// Langs are the accepted language codes for prompts (the primary subtag
	// of a BCP-47 tag, lower case). Nil means ISO639_1.
	Langs []string
	// SplitBytes is the target byte size of one JSONL split (default 32 MiB).
	SplitBytes int64
	// MaxLineBytes bounds one JSONL line; longer lines are dead-lettered
	// (default 16 MiB).
	MaxLineBytes int
	// SketchK and SketchSpec, when set, make ReadSketches fail on files
	// written with another k or spec instead of mixing them.
	SketchK    int
	SketchSpec string
}

// WriteOptions configure Write. The zero value is useful.
type WriteOptions struct {
	// Format of the files (default Parquet).
	Format Format
	// Shards is the number of output files (default 8). Every shard file is
	// written, empty ones included, so the set of names depends only on
	// prefix, Shards and Format.
	Shards int
	// RowGroupRows is the number of rows per Parquet row group / Arrow record
	// batch (default 65536); it is also the unit a later read splits on.
	RowGroupRows int
	// Conversational writes pairs in TRL's conversational form (message
	// lists) instead of plain strings.
	Conversational bool
	// SketchK and SketchSpec describe sketches (required to write sketches).
	SketchK    int
	SketchSpec string
	// DecisionAudit writes decisions with their audit columns
	// (schemas.DecisionCodec.Audit); readers take files with or without.
	DecisionAudit bool
	// SpillDir, when set, ships the shard batches to the writers through
	// files under this local directory and shuffles only their names. Use
	// it only where every worker runs on this machine (Prism in-process, a
	// LOOPBACK environment): Prism keeps every shuffled byte in memory, in
	// several copies while a bundle's input is assembled and sent, so the
	// writer stage's input was the largest part of a big job's memory.
	// Batches are stored as uncompressed Arrow IPC files (the writer maps
	// them without decoding), so the directory needs about the Arrow size of
	// the written rows. Each Write uses its own subdirectory and removes it
	// once its files are final; the caller owns (and removes) SpillDir.
	SpillDir string
}

func (o WriteOptions) withDefaults() (WriteOptions, error) {
	if o.Format == Auto {
		o.Format = Parquet
	}
	if o.Format != Parquet && o.Format != ArrowIPC {
		return o, fmt.Errorf("%w: cannot write format %q", ErrBadOptions, o.Format)
	}
	if o.Shards == 0 {
		o.Shards = 8
	}
	if o.Shards < 0 || o.Shards > 99999 {
		return o, fmt.Errorf("%w: Shards=%d, want 1..99999", ErrBadOptions, o.Shards)
	}
	if o.RowGroupRows == 0 {
		o.RowGroupRows = 65536
	}
	if o.RowGroupRows < 0 {
		return o, fmt.Errorf("%w: RowGroupRows=%d", ErrBadOptions, o.RowGroupRows)
	}
	if o.SpillDir != "" && (!filepath.IsAbs(o.SpillDir) || strings.Contains(o.SpillDir, "://")) {
		return o, fmt.Errorf("%w: SpillDir=%q, want an absolute local path", ErrBadOptions, o.SpillDir)
	}
	return o, nil
}

func (o ReadOptions) withDefaults() ReadOptions {
	if o.SplitBytes <= 0 {
		o.SplitBytes = 32 << 20
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = 16 << 20
	}
	if o.Langs == nil {
		o.Langs = ISO639_1
	}
	return o
}

// ShardName is the name of shard i of n: "<prefix>-00003-of-00008.parquet".
func ShardName(prefix string, i, n int, f Format) string {
	return fmt.Sprintf("%s-%05d-of-%05d%s", prefix, i, n, f.Ext())
}

// ShardGlob matches the shard files of prefix and nothing else (not the
// shards of a longer prefix such as "<prefix>-dropped"):
// "<prefix>-?????-of-?????.parquet".
func ShardGlob(prefix string, f Format) string {
	return prefix + "-?????-of-?????" + f.Ext()
}
