package pipelines

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
)

// A stage's manifest, <out>/_MANIFEST-<stage>.json, says which files of the
// folder the stage wrote, with their sizes, SHA-256 and row counts. It is
// rewritten with State "running" when the stage starts and with State
// "committed" only after every output file is final, so a folder whose
// stage was killed, failed or is still running never reads as complete.
// Later stages read their inputs only through a committed manifest (see
// ResolveInput).
const (
	StateRunning   = "running"
	StateFailed    = "failed"
	StateCommitted = "committed"

	manifestVersion = 1
)

// ManifestName is the file name of stage's manifest.
func ManifestName(stage string) string { return "_MANIFEST-" + stage + ".json" }

// Manifest is one stage's record of its outputs.
type Manifest struct {
	Version  int                         `json:"version"`
	Stage    string                      `json:"stage"`
	State    string                      `json:"state"`
	RunID    string                      `json:"run_id"`
	Command  string                      `json:"command"`
	Host     string                      `json:"host"`
	PID      int                         `json:"pid"`
	Started  string                      `json:"started"`
	Finished string                      `json:"finished,omitempty"`
	Error    string                      `json:"error,omitempty"`
	Options  map[string]string           `json:"options,omitempty"`
	Settings map[string]string           `json:"settings,omitempty"` // sketch stage: the sketch contract select must follow
	Inputs   map[string]InputRef         `json:"inputs,omitempty"`
	Outputs  map[string]OutputSummary    `json:"outputs,omitempty"`
	Files    []FileEntry                 `json:"files,omitempty"`
	Totals   map[string]map[string]int64 `json:"totals,omitempty"` // the stage's counters (Beam metrics congrad.progress)
}

// FileEntry is one output file, Path relative to the output folder.
type FileEntry struct {
	Path   string `json:"path"`
	Output string `json:"output"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Rows   *int64 `json:"rows,omitempty"` // tabular outputs only
}

// OutputSummary sums one output's files.
type OutputSummary struct {
	Format string `json:"format,omitempty"`
	Shards int    `json:"shards,omitempty"`
	Files  int    `json:"files"`
	Rows   int64  `json:"rows"`
}

// InputRef records what a stage read: the glob, the manifest it came from
// (Stage, RunID; empty for files without one) and Digest, the SHA-256 of
// the files' sorted SHA-256s: content only, so a renamed copy of the same
// files has the same digest. Later stages compare digests to tell whether
// two inputs come from the same data.
type InputRef struct {
	Glob   string `json:"glob"`
	Dir    string `json:"dir,omitempty"`
	Stage  string `json:"stage,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	Files  int    `json:"files"`
	Digest string `json:"digest"`
}

// ErrManifest marks inputs refused by the manifest checks.
var ErrManifest = errors.New("manifest check")

// ErrNoInput marks an input with no files at all.
var ErrNoInput = errors.New("missing input")

func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// ReadManifest reads stage's manifest in dir; (nil, nil) when there is none.
func ReadManifest(ctx context.Context, dir, stage string) (*Manifest, error) {
	p := joinPath(dir, ManifestName(stage))
	b, err := readAll(ctx, p)
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s is not a manifest: %v", ErrManifest, p, err)
	}
	return &m, nil
}

func writeManifest(ctx context.Context, dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeAll(ctx, joinPath(dir, ManifestName(m.Stage)), append(b, '\n'))
}

// digest is InputRef.Digest of files.
func digest(files []FileEntry) string {
	lines := make([]string, len(files))
	for i, f := range files {
		lines[i] = f.SHA256
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

// --- files on any of lakeio's filesystems ---

func isLocalPath(p string) bool { return !strings.Contains(p, "://") }

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, storage.ErrObjectNotExist)
}

func readAll(ctx context.Context, p string) ([]byte, error) {
	if isLocalPath(p) {
		return os.ReadFile(p)
	}
	fs, err := filesystem.New(ctx, p)
	if err != nil {
		return nil, err
	}
	defer fs.Close()
	r, err := fs.OpenRead(ctx, p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// writeAll writes p whole: local files via a temporary file, fsync and
// rename; object stores (gs://, memfs://) make an object visible only when
// its upload completes.
func writeAll(ctx context.Context, p string, data []byte) error {
	if isLocalPath(p) {
		dir := filepath.Dir(p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := os.CreateTemp(dir, filepath.Base(p)+".tmp-*")
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), p)
		}
		if err != nil {
			os.Remove(f.Name())
			return err
		}
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
		return nil
	}
	fs, err := filesystem.New(ctx, p)
	if err != nil {
		return err
	}
	defer fs.Close()
	w, err := fs.OpenWrite(ctx, p)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func removeFile(ctx context.Context, p string) error {
	if isLocalPath(p) {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	fs, err := filesystem.New(ctx, p)
	if err != nil {
		return err
	}
	defer fs.Close()
	rm, ok := fs.(filesystem.Remover)
	if !ok {
		return fmt.Errorf("cannot remove %s: the filesystem has no Remove", p)
	}
	if err := rm.Remove(ctx, p); err != nil && !isNotExist(err) {
		return err
	}
	return nil
}

func removeQuiet(ctx context.Context, p string) { removeFile(ctx, p) }

// hashFile streams p once for its size and SHA-256; with rows it also counts
// the rows of a Parquet or Arrow IPC file (non-local files are counted from
// a local copy made while hashing).
func hashFile(ctx context.Context, p string, rows bool) (size int64, sum string, nrows *int64, err error) {
	h := sha256.New()
	local := p
	if isLocalPath(p) {
		f, err := os.Open(p)
		if err != nil {
			return 0, "", nil, err
		}
		size, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return 0, "", nil, err
		}
	} else {
		fs, err := filesystem.New(ctx, p)
		if err != nil {
			return 0, "", nil, err
		}
		defer fs.Close()
		r, err := fs.OpenRead(ctx, p)
		if err != nil {
			return 0, "", nil, err
		}
		defer r.Close()
		var w io.Writer = h
		if rows {
			tmp, err := os.CreateTemp("", "congrad-manifest-*")
			if err != nil {
				return 0, "", nil, err
			}
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			w = io.MultiWriter(h, tmp)
			local = tmp.Name()
		}
		if size, err = io.Copy(w, r); err != nil {
			return 0, "", nil, err
		}
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if rows {
		n, err := countRows(local, p)
		if err != nil {
			return 0, "", nil, err
		}
		nrows = &n
	}
	return size, sum, nrows, nil
}

// countRows reads the row count of a local Parquet (footer) or Arrow IPC
// file; name gives the format.
func countRows(local, name string) (int64, error) {
	if strings.HasSuffix(name, ".parquet") {
		r, err := file.OpenParquetFile(local, false)
		if err != nil {
			return 0, fmt.Errorf("count rows of %s: %w", name, err)
		}
		defer r.Close()
		return r.NumRows(), nil
	}
	f, err := os.Open(local)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", name, err)
	}
	defer r.Close()
	var n int64
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.RecordBatchAt(i)
		if err != nil {
			return 0, fmt.Errorf("count rows of %s: %w", name, err)
		}
		n += rec.NumRows()
		rec.Release()
	}
	return n, nil
}

// hashWorkers bounds how many files ResolveInput and the commit hash at
// once: local files are read from the page cache at a core's SHA-256 rate
// (~1.5 GB/s with SHA-NI), gs:// objects at the network's, so a few
// concurrent reads shorten both. (The commit hashes remote outputs one at
// a time: counting their rows takes a temporary copy of each.)
var hashWorkers = 8

// eachIndex calls fn(i) for every i in [0, n) on up to workers goroutines
// and returns the error of the lowest i that failed, so the message does
// not depend on scheduling. Once a call fails, calls for higher indices not
// yet started are skipped.
func eachIndex(n, workers int, fn func(i int) error) error {
	errs := make([]error, n)
	var (
		mu     sync.Mutex
		next   int
		failed = n // lowest failed index so far
	)
	claim := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || next > failed {
			return 0, false
		}
		next++
		return next - 1, true
	}
	var wg sync.WaitGroup
	for w := 0; w < min(n, max(workers, 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, ok := claim(); ok; i, ok = claim() {
				if errs[i] = fn(i); errs[i] != nil {
					mu.Lock()
					failed = min(failed, i)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
