package lakeio

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
)

// Write writes col, a PCollection of a schemas record type (Prompt,
// Candidate, Pair, Sketch, Decision or DeadLetter), as opts.Shards files
// named ShardName(prefix, i, Shards, Format), and returns PCollection<string>
// of the file names once every file is final.
//
//	files := lakeio.Write(s, "/lake/run1/kept", kept, lakeio.WriteOptions{Shards: 4})
//
// A row goes to shard fnv64a(key) mod Shards, where key is the record's
// stable key (PairID for pairs, sketches and decisions); rows are sorted by
// key within a shard. Each file is written under "<name>.tmp-<random>" and
// renamed when complete. After all shards are final, files matching
// "<prefix>-NNNNN-of-MMMMM<ext>" with MMMMM != Shards (left by an earlier run
// with another shard count) and leftover temporary files of the prefix are
// removed, so rerunning a stage never leaves duplicates. Files of the other
// format (.arrow vs .parquet) are not touched.
//
// One shard is sorted in memory on one worker: choose Shards so that a shard
// fits comfortably (a few hundred MB). col must be a bounded PCollection in
// the global window (every ConGrad stage is a batch job): rows are shipped to
// the shard writers in batches flushed at bundle end.
//
// Write panics on invalid options or an element type without a file layout,
// like beam.ParDo; TryWrite returns the error instead.
func Write(s beam.Scope, prefix string, col beam.PCollection, opts WriteOptions) beam.PCollection {
	out, err := TryWrite(s, prefix, col, opts)
	if err != nil {
		panic(err)
	}
	return out
}

// WritePairs is Write for PCollection<schemas.Pair>.
func WritePairs(s beam.Scope, prefix string, pairs beam.PCollection, opts WriteOptions) beam.PCollection {
	return Write(s, prefix, pairs, opts)
}

// WriteSketches is Write for PCollection<schemas.Sketch>; opts.SketchK and
// opts.SketchSpec are required.
func WriteSketches(s beam.Scope, prefix string, sketches beam.PCollection, opts WriteOptions) beam.PCollection {
	return Write(s, prefix, sketches, opts)
}

// TryWrite is Write returning construction errors.
func TryWrite(s beam.Scope, prefix string, col beam.PCollection, opts WriteOptions) (beam.PCollection, error) {
	s = s.Scope("lakeio.Write")
	o, err := opts.withDefaults()
	if err != nil {
		return beam.PCollection{}, err
	}
	if strings.TrimSpace(prefix) == "" {
		return beam.PCollection{}, fmt.Errorf("%w: empty output prefix", ErrBadOptions)
	}
	if _, err := filesystem.New(context.Background(), prefix); err != nil {
		return beam.PCollection{}, fmt.Errorf("lakeio.Write %s: %w", prefix, err)
	}
	kind, err := kindOf(col.Type().Type())
	if err != nil {
		return beam.PCollection{}, fmt.Errorf("lakeio.Write %s: %w", prefix, err)
	}
	co := codecOpts{Kind: kind, Conversational: o.Conversational, K: o.SketchK, Spec: o.SketchSpec, Audit: o.DecisionAudit}
	if kind == "sketch" && o.SketchK <= 0 {
		return beam.PCollection{}, fmt.Errorf("%w: writing sketches to %s needs SketchK > 0 (and SketchSpec)", ErrBadOptions, prefix)
	}
	sp := shardParams{Prefix: prefix, Format: o.Format, Shards: o.Shards, RowGroupRows: o.RowGroupRows}
	if o.SpillDir != "" {
		sp.Spill = filepath.Join(o.SpillDir, "write-"+RandomHex(8))
	}
	keyed := beam.ParDo(s, &shardFn{Codec: co, Shards: o.Shards, Spill: sp.Spill}, col)
	grouped := beam.GroupByKey(s, keyed)
	written := beam.ParDo(s, &writeShardFn{Codec: co, P: sp}, grouped)
	return beam.ParDo(s, &finalizeFn{Codec: co, P: sp}, beam.Impulse(s), beam.SideInput{Input: written}), nil
}

type shardParams struct {
	Prefix       string
	Format       Format
	Shards       int
	RowGroupRows int
	Spill        string // this Write's spill directory (WriteOptions.SpillDir); "" = batches go through the shuffle
}

// shardOf is the shard of a key (KeyHash mod n).
func shardOf(key string, n int) int { return int(KeyHash(key) % uint64(n)) }

// KeyHash is the 64-bit FNV-1a hash of a key: stable across processes, Go
// versions and languages, unlike Go's map hash. Computed inline (the same
// function as hash/fnv's New64a, checked by a test) because hash/fnv's
// interface makes []byte(key) escape: one allocation per row.
func KeyHash(key string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	return h
}

// shardFn assigns rows to shards and ships them to the shard writers as
// Arrow IPC blobs of up to batchRows rows, one blob per shard per bundle
// at least. Shuffling a few columnar blobs instead of every row through
// Beam's row coder is what keeps Write near raw pqarrow speed.
type shardFn struct {
	Codec  codecOpts
	Shards int
	Spill  string // when set, a batch goes to a file here and only its name is shuffled
	c      anyCodec
	sh     sharder
	used   []bool // shards with rows in this bundle
}

// batchRows bounds a blob: large enough to amortise the IPC framing, small
// enough that a bundle's buffers stay far below worker memory.
const batchRows = 8192

// Setup builds the codec and the per-shard buffers once per DoFn
// instance; they are empty between bundles (FinishBundle flushes them) but
// keep the sizes that presize the next batches.
func (f *shardFn) Setup() (err error) {
	f.c, err = codecFor(f.Codec)
	if err != nil {
		return err
	}
	f.sh = f.c.newSharder(f.Shards)
	f.used = make([]bool, f.Shards)
	return nil
}

// StartBundle drops rows a failed bundle may have left in the buffers of
// a reused instance.
func (f *shardFn) StartBundle(_ context.Context, _ func(int, []byte)) {
	f.sh.reset()
	clear(f.used)
}

func (f *shardFn) ProcessElement(v beam.X, emit func(int, []byte)) error {
	sh, n := f.sh.add(v)
	f.used[sh] = true
	if n >= batchRows {
		return f.flush(sh, emit)
	}
	return nil
}

// FinishBundle ships what is left, in shard order.
func (f *shardFn) FinishBundle(_ context.Context, emit func(int, []byte)) error {
	for sh, u := range f.used {
		if !u {
			continue
		}
		f.used[sh] = false
		if err := f.flush(sh, emit); err != nil {
			return err
		}
	}
	return nil
}

func (f *shardFn) flush(sh int, emit func(int, []byte)) error {
	if f.Spill != "" {
		name, err := f.sh.spill(sh, f.Spill)
		if err != nil {
			return fmt.Errorf("lakeio: spill shard %d batch: %w", sh, err)
		}
		if name != "" {
			emit(sh, []byte(name))
		}
		return nil
	}
	blob, err := f.sh.flush(sh)
	if err != nil {
		return fmt.Errorf("lakeio: encode shard %d batch: %w", sh, err)
	}
	if blob != nil {
		emit(sh, blob)
	}
	return nil
}

// spillBatch writes rec plus its key column to a new file under dir as one
// uncompressed Arrow IPC file, streamed (no copy of the batch in memory),
// and returns the file's name. Uncompressed because the file is read back
// on the same machine, from the page cache: the reader maps the bytes
// without decoding them (unspill), where LZ4 cost a compression and a
// decompression pass over every batch.
func spillBatch(dir string, sh int, rec arrow.RecordBatch, keys arrow.Array) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("spill directory: %w", err)
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("%05d-*.arrow", sh))
	if err != nil {
		return "", err
	}
	withKey := keyed(rec, keys)
	defer withKey.Release()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := ipc.NewFileWriter(bw, ipc.WithSchema(withKey.Schema()))
	if err == nil {
		err = w.Write(withKey)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// unspill reads the spilled batch files named by names (each a file under
// dir written by spillBatch) and calls fn with their record batches,
// which reference the file bytes without a decoding copy. A name outside
// dir or a missing or corrupt file is an error.
func unspill(dir string, names func(*[]byte) bool, fn func(arrow.RecordBatch) error) error {
	var name []byte
	for names(&name) {
		n := string(name)
		if filepath.Dir(n) != dir {
			return fmt.Errorf("spilled batch %q is not in %s", n, dir)
		}
		data, err := os.ReadFile(n)
		if err != nil {
			return fmt.Errorf("read spilled batch: %w", err)
		}
		r, err := ipc.NewMappedFileReader(data)
		if err != nil {
			return fmt.Errorf("spilled batch %s: %w", n, err)
		}
		for i := 0; i < r.NumRecords() && err == nil; i++ {
			var rec arrow.RecordBatch
			if rec, err = r.RecordBatch(i); err == nil {
				err = fn(rec)
			}
		}
		r.Close()
		if err != nil {
			return fmt.Errorf("spilled batch %s: %w", n, err)
		}
	}
	return nil
}

type writeShardFn struct {
	Codec codecOpts
	P     shardParams
	c     anyCodec
}

func (f *writeShardFn) Setup() (err error) {
	f.c, err = codecFor(f.Codec)
	return err
}

func (f *writeShardFn) ProcessElement(ctx context.Context, shard int, blobs func(*[]byte) bool, emit func(string)) error {
	var each func(func(arrow.RecordBatch) error) error
	if f.P.Spill != "" {
		each = func(fn func(arrow.RecordBatch) error) error { return unspill(f.P.Spill, blobs, fn) }
	} else {
		each = func(fn func(arrow.RecordBatch) error) error { return eachBlobBatch(blobs, fn) }
	}
	rows, err := f.c.collect(each)
	if err != nil {
		return fmt.Errorf("lakeio: decode batches for shard %d of %s: %w", shard, f.P.Prefix, err)
	}
	name := ShardName(f.P.Prefix, shard, f.P.Shards, f.P.Format)
	if err := writeFile(ctx, f.c, rows, name, f.P); err != nil {
		return err
	}
	emit(name)
	return nil
}

// onceCloser lets the Parquet writer close the sink and us close it again
// (to learn the error) without a double close reaching the filesystem.
type onceCloser struct {
	io.WriteCloser
	once sync.Once
	err  error
}

func (o *onceCloser) Close() error {
	o.once.Do(func() { o.err = o.WriteCloser.Close() })
	return o.err
}

func tmpSuffix() string { return ".tmp-" + RandomHex(6) }

// RandomHex is n random bytes in hex: names for spill directories and
// temporary files that no other run or retry picks.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeFile writes rows (already sorted) to name via a temporary file.
func writeFile(ctx context.Context, c anyCodec, rows rowSet, name string, p shardParams) error {
	fs, err := filesystem.New(ctx, name)
	if err != nil {
		return err
	}
	defer fs.Close()
	tmp := name + tmpSuffix()
	w, err := fs.OpenWrite(ctx, tmp)
	if err != nil {
		return fmt.Errorf("lakeio: create %s: %w", tmp, err)
	}
	sink := &onceCloser{WriteCloser: w}
	if err := encode(c, rows, sink, p); err != nil {
		sink.Close()
		removeQuietly(ctx, fs, tmp)
		return fmt.Errorf("lakeio: write %s: %w", name, err)
	}
	if err := sink.Close(); err != nil {
		removeQuietly(ctx, fs, tmp)
		return fmt.Errorf("lakeio: close %s: %w", tmp, err)
	}
	if err := rename(ctx, fs, tmp, name); err != nil {
		return fmt.Errorf("lakeio: rename %s -> %s: %w", tmp, name, err)
	}
	return nil
}

func removeQuietly(ctx context.Context, fs filesystem.Interface, p string) {
	if rm, ok := fs.(filesystem.Remover); ok {
		rm.Remove(ctx, p) // best effort: the next finalize removes leftovers too
	}
}

// ParquetProps are the writer properties of the Parquet files lakeio
// writes: zstd, row groups of at most rowGroupRows rows, and float32 leaves
// inside lists (the sketch values) in BYTE_STREAM_SPLIT encoding without a
// dictionary. Sketch values are close to random float32s: zstd over their
// plain bytes saves about 7% and its Huffman stage was the largest single
// cost of reading them (docs/perf/select.md); split into byte streams, the
// exponent bytes compress and the mantissa bytes are stored raw, so the
// file is smaller and decoding is mostly a copy. arrow-go and DuckDB read
// it (tested here); pyarrow and Spark list it as supported.
func ParquetProps(schema *arrow.Schema, rowGroupRows int, mem memory.Allocator) *parquet.WriterProperties {
	opts := []parquet.WriterProperty{
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithMaxRowGroupLength(int64(rowGroupRows)),
		parquet.WithAllocator(mem),
	}
	for _, path := range splitFloatLeaves(schema) {
		opts = append(opts, parquet.WithDictionaryFor(path, false),
			parquet.WithEncodingFor(path, parquet.Encodings.ByteStreamSplit))
	}
	return parquet.NewWriterProperties(opts...)
}

// splitFloatLeaves lists the dotted Parquet paths of schema's float32
// leaves that sit inside a list. (Judge score lists are float64 and few,
// often repeated values: they keep the dictionary.)
func splitFloatLeaves(schema *arrow.Schema) []string {
	sc, err := pqarrow.ToParquet(schema, nil, pqarrow.DefaultWriterProps())
	if err != nil {
		return nil // the writer reports the schema error itself
	}
	var paths []string
	for i := 0; i < sc.NumColumns(); i++ {
		col := sc.Column(i)
		if col.PhysicalType() == parquet.Types.Float && col.MaxRepetitionLevel() > 0 {
			paths = append(paths, col.Path())
		}
	}
	return paths
}

// encode streams rows to w in batches of p.RowGroupRows.
func encode(c anyCodec, rows rowSet, w io.Writer, p shardParams) error {
	mem := memory.DefaultAllocator
	schema := c.schema()
	var write func(arrow.RecordBatch) error
	var closeFn func() error
	switch p.Format {
	case Parquet:
		props := ParquetProps(schema, p.RowGroupRows, mem)
		// The footer passes through footerSorter: see footer.go for why.
		fs := &footerSorter{w: w}
		fw, err := pqarrow.NewFileWriter(schema, fs, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem)))
		if err != nil {
			return err
		}
		write = fw.Write
		closeFn = func() error { fs.holdTail(); return fw.Close() }
	case ArrowIPC:
		fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem))
		if err != nil {
			return err
		}
		write, closeFn = fw.Write, fw.Close
	default:
		return fmt.Errorf("%w: write format %q", ErrUnsupported, p.Format)
	}
	for start := 0; start < rows.len(); start += p.RowGroupRows {
		end := min(start+p.RowGroupRows, rows.len())
		rec, err := rows.record(start, end)
		if err != nil {
			closeFn()
			return err
		}
		err = write(rec)
		rec.Release()
		if err != nil {
			closeFn()
			return err
		}
	}
	return closeFn()
}

type finalizeFn struct {
	Codec codecOpts
	P     shardParams
	c     anyCodec
}

func (f *finalizeFn) Setup() (err error) {
	f.c, err = codecFor(f.Codec)
	return err
}

func (f *finalizeFn) ProcessElement(ctx context.Context, _ []byte, written func(*string) bool, emit func(string)) error {
	done := map[string]bool{}
	var name string
	for written(&name) {
		done[name] = true
	}
	var all []string
	for i := 0; i < f.P.Shards; i++ {
		n := ShardName(f.P.Prefix, i, f.P.Shards, f.P.Format)
		all = append(all, n)
		if !done[n] {
			// No rows hashed here; still write the (empty) file so the file set
			// is a function of the options and an old file of this name is
			// replaced.
			if err := writeFile(ctx, f.c, f.c.newBuffer().(rowSet), n, f.P); err != nil {
				return err
			}
		}
	}
	if err := removeStale(ctx, f.P, all); err != nil {
		return err
	}
	if f.P.Spill != "" {
		if err := os.RemoveAll(f.P.Spill); err != nil {
			return fmt.Errorf("lakeio: remove spilled batches: %w", err)
		}
	}
	for _, n := range all {
		emit(n)
	}
	return nil
}

// removeStale deletes files of the prefix and format that this run did not
// write: shards of another shard count and temporary files.
func removeStale(ctx context.Context, p shardParams, keep []string) error {
	keepSet := map[string]bool{}
	for _, k := range keep {
		keepSet[k] = true
	}
	matches, err := list(ctx, p.Prefix+"-*")
	if err != nil {
		return err
	}
	base := p.Prefix
	re := regexp.MustCompile(`-(\d{5})-of-(\d{5})` + regexp.QuoteMeta(p.Format.Ext()) + `(\.tmp-[0-9a-f]+)?$`)
	fs, err := filesystem.New(ctx, p.Prefix)
	if err != nil {
		return err
	}
	defer fs.Close()
	rm, ok := fs.(filesystem.Remover)
	for _, m := range matches {
		if keepSet[m] || !strings.HasPrefix(trimScheme(m), trimScheme(base)+"-") {
			continue
		}
		sm := re.FindStringSubmatch(m)
		if sm == nil || len(trimScheme(m)) != len(trimScheme(base))+len(sm[0]) {
			continue // another prefix that merely starts with ours ("pairs-dropped-...")
		}
		if n, _ := strconv.Atoi(sm[2]); n == p.Shards && sm[3] == "" {
			continue
		}
		if !ok {
			return fmt.Errorf("%w: cannot remove stale %s: filesystem has no Remove", ErrUnsupported, m)
		}
		if err := rm.Remove(ctx, m); err != nil {
			return fmt.Errorf("lakeio: remove stale %s: %w", m, err)
		}
	}
	return nil
}

// trimScheme makes memfs names comparable: memfs lists keys with or without
// its scheme depending on how they were written.
func trimScheme(p string) string { return strings.TrimPrefix(p, "memfs://") }
