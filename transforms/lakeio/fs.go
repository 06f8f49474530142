package lakeio

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/util/gcsx"
	"google.golang.org/api/option"
)

// Beam's filesystem.Interface only offers sequential reads, but a Parquet
// footer sits at the end of the file and a split starts in the middle. So:
//   - local files are opened directly (an *os.File seeks);
//   - gs:// objects are read with ranged GETs through a storage client
//     (honours STORAGE_EMULATOR_HOST like Beam's own gcs filesystem);
//   - any other filesystem (memfs, s3, ...) is copied to a local temporary
//     file once per open, streaming, never whole in memory.

type randomReader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
}

func isGCS(p string) bool   { return strings.HasPrefix(p, "gs://") }
func isLocal(p string) bool { return !strings.Contains(p, "://") }

var gcsClient struct {
	once sync.Once
	c    *storage.Client
	err  error
}

func gcs() (*storage.Client, error) {
	gcsClient.once.Do(func() {
		ctx := context.Background()
		gcsClient.c, gcsClient.err = storage.NewClient(ctx)
		if gcsClient.err != nil {
			// Same fallback as Beam's gcs filesystem: public buckets work
			// without credentials.
			gcsClient.c, gcsClient.err = storage.NewClient(ctx, option.WithoutAuthentication())
		}
	})
	return gcsClient.c, gcsClient.err
}

// gcsObject is a random-access view of one object: each ReadAt is one ranged
// GET, which matches how Parquet reads (footer, then whole column chunks).
type gcsObject struct {
	ctx  context.Context
	obj  *storage.ObjectHandle
	size int64
	pos  int64
}

func (g *gcsObject) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil // a zero-length range GET would not mean "nothing"
	}
	if off >= g.size {
		return 0, io.EOF
	}
	n := int64(len(p))
	if off+n > g.size {
		n = g.size - off
	}
	r, err := g.obj.NewRangeReader(g.ctx, off, n)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	m, err := io.ReadFull(r, p[:n])
	if err == nil && n < int64(len(p)) {
		err = io.EOF
	}
	return m, err
}

func (g *gcsObject) Read(p []byte) (int, error) {
	n, err := g.ReadAt(p, g.pos)
	g.pos += int64(n)
	return n, err
}

func (g *gcsObject) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		g.pos = off
	case io.SeekCurrent:
		g.pos += off
	case io.SeekEnd:
		g.pos = g.size + off
	}
	if g.pos < 0 {
		return 0, fmt.Errorf("seek before start")
	}
	return g.pos, nil
}

func (g *gcsObject) Close() error { return nil }

func gcsHandle(p string) (*storage.ObjectHandle, error) {
	bucket, object, err := gcsx.ParseObject(p)
	if err != nil {
		return nil, err
	}
	c, err := gcs()
	if err != nil {
		return nil, err
	}
	return c.Bucket(bucket).Object(object), nil
}

// tempCopy removes its file on Close.
type tempCopy struct{ *os.File }

func (t tempCopy) Close() error {
	err := t.File.Close()
	os.Remove(t.File.Name())
	return err
}

// openRandom opens p for random access and returns its size.
func openRandom(ctx context.Context, p string) (randomReader, int64, error) {
	switch {
	case isLocal(p):
		f, err := os.Open(p)
		if err != nil {
			return nil, 0, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		return f, st.Size(), nil
	case isGCS(p):
		h, err := gcsHandle(p)
		if err != nil {
			return nil, 0, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		attrs, err := h.Attrs(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		return &gcsObject{ctx: ctx, obj: h, size: attrs.Size}, attrs.Size, nil
	}
	fs, err := filesystem.New(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	defer fs.Close()
	r, err := fs.OpenRead(ctx, p)
	if err != nil {
		return nil, 0, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp("", "lakeio-*")
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(tmp, r)
	if err != nil {
		tempCopy{tmp}.Close()
		return nil, 0, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
	}
	return tempCopy{tmp}, n, nil
}

// openAt opens p for sequential reading from byte off.
func openAt(ctx context.Context, p string, off int64) (io.ReadCloser, error) {
	switch {
	case isLocal(p):
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		return f, nil
	case isGCS(p):
		h, err := gcsHandle(p)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		r, err := h.NewRangeReader(ctx, off, -1)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
		}
		return r, nil
	}
	fs, err := filesystem.New(ctx, p)
	if err != nil {
		return nil, err
	}
	r, err := fs.OpenRead(ctx, p)
	if err != nil {
		fs.Close()
		return nil, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
	}
	if _, err := io.CopyN(io.Discard, r, off); err != nil {
		r.Close()
		fs.Close()
		return nil, fmt.Errorf("%w %s: skip to %d: %v", ErrUnreadable, p, off, err)
	}
	return closeBoth{r, fs}, nil
}

type closeBoth struct {
	io.ReadCloser
	fs filesystem.Interface
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.fs.Close()
	return err
}

// list expands glob, sorted so splits and shard order never depend on the
// filesystem's listing order.
func list(ctx context.Context, glob string) ([]string, error) {
	fs, err := filesystem.New(ctx, glob)
	if err != nil {
		return nil, err
	}
	defer fs.Close()
	broad, narrow := listingGlob(glob)
	files, err := fs.List(ctx, broad)
	if err != nil {
		return nil, fmt.Errorf("lakeio: list %s: %w", glob, err)
	}
	if narrow {
		kept := files[:0]
		for _, f := range files {
			if ok, _ := path.Match(glob, f); ok {
				kept = append(kept, f)
			}
		}
		files = kept
	}
	sort.Strings(files)
	return files, nil
}

// listingGlob works around Beam's GCS List (v2.77), which lists objects by
// the pattern's text up to the first '*' and so finds nothing when a '?' or
// '[' comes before it (ShardGlob's "-?????-of-?????"). For such a gs://
// pattern it returns a broader glob ending in "**" at the first wildcard and
// narrow=true: the caller then keeps the names that match the original
// pattern (path.Match: '*' and '?' do not cross '/', as in Beam's own
// translation). Other patterns are returned unchanged.
func listingGlob(glob string) (broad string, narrow bool) {
	if !strings.HasPrefix(glob, "gs://") || strings.Contains(glob, "**") {
		return glob, false
	}
	i := strings.IndexAny(glob, "?[")
	if i < 0 {
		return glob, false
	}
	if star := strings.IndexByte(glob, '*'); star >= 0 && star < i {
		return glob, false
	}
	if _, err := path.Match(glob, ""); err != nil {
		return glob, false // malformed: let the filesystem report it
	}
	return glob[:i] + "**", true
}

func size(ctx context.Context, p string) (int64, error) {
	fs, err := filesystem.New(ctx, p)
	if err != nil {
		return 0, err
	}
	defer fs.Close()
	n, err := fs.Size(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("%w %s: %v", ErrUnreadable, p, err)
	}
	return n, nil
}

// rename moves a finished temporary file to its final name. Local rename is
// atomic; on object stores the final object appears whole when the copy
// completes.
func rename(ctx context.Context, fs filesystem.Interface, from, to string) error {
	if r, ok := fs.(filesystem.Renamer); ok {
		return r.Rename(ctx, from, to)
	}
	c, ok := fs.(filesystem.Copier)
	rm, ok2 := fs.(filesystem.Remover)
	if !ok || !ok2 {
		return fmt.Errorf("%w: filesystem of %s can neither rename nor copy+remove", ErrUnsupported, to)
	}
	if err := c.Copy(ctx, from, to); err != nil {
		return err
	}
	return rm.Remove(ctx, from)
}

// Match lists the files glob matches, sorted, on any registered filesystem
// (with the gs:// listing workaround of list). Callers use it to check their
// inputs before a pipeline starts.
func Match(ctx context.Context, glob string) ([]string, error) {
	return list(ctx, glob)
}
