package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/util/gcsx"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// LockFile is the name of the lock an output folder carries while a congrad
// command writes into it.
const LockFile = ".congrad.lock"

// ErrLocked is returned when another run holds the output folder.
var ErrLocked = errors.New("output folder in use")

// LockInfo is the lock file's content: who holds the folder.
type LockInfo struct {
	PID     int    `json:"pid"`
	Host    string `json:"host"`
	Command string `json:"command"`
	Started string `json:"started"`
	RunID   string `json:"run_id,omitempty"`
}

func (i LockInfo) String() string {
	return fmt.Sprintf("pid %d on %s (%q, started %s)", i.PID, i.Host, i.Command, i.Started)
}

// Lock is a held lock on an output folder: one congrad command at a time per
// --out. Local folders: <out>/.congrad.lock is created and flock(2)ed for the
// life of the process, so a crashed or killed holder never blocks the folder
// (the kernel drops the flock with the process); a lock file whose flock is
// free (or, where flock is unavailable, whose pid is dead on this host) is
// taken over with a warning. gs://: the lock is an object created only if
// absent (ifGenerationMatch=0) and deleted on Release; a leftover one is taken
// over only if it names this host and a dead pid. memfs:// lives in this
// process only, so an in-process table decides and the object is informative.
type Lock struct {
	path string
	info LockInfo
	f    *os.File // local: the flocked file
	gen  int64    // gs://: generation of our object
	mem  bool
}

// Info says who holds the lock (this process).
func (l *Lock) Info() LockInfo { return l.info }

// AcquireLock locks out for command; warn receives the take-over notice of a
// stale lock. A held lock fails at once with ErrLocked naming the holder.
func AcquireLock(ctx context.Context, out, command, runID string, warn io.Writer) (*Lock, error) {
	host, _ := os.Hostname()
	info := LockInfo{PID: os.Getpid(), Host: host, Command: command, Started: time.Now().UTC().Format(time.RFC3339), RunID: runID}
	out = strings.TrimSuffix(out, "/")
	p := joinPath(out, LockFile)
	switch {
	case !strings.Contains(out, "://"):
		return lockLocal(p, info, warn)
	case strings.HasPrefix(out, "gs://"):
		return lockGCS(ctx, p, info, warn)
	case strings.HasPrefix(out, "memfs://"):
		return lockMem(ctx, p, info)
	}
	return nil, fmt.Errorf("lock %s: filesystem not supported for --out (local, gs:// or memfs://)", out)
}

func lockedErr(p string, holder LockInfo) error {
	return fmt.Errorf("%w: %s is held by %s; wait for that run or use another --out", ErrLocked, p, holder)
}

// staleMsg is the take-over warning.
func staleMsg(p string, prev LockInfo) string {
	return fmt.Sprintf("congrad: warning: taking over the stale lock %s left by %s, which is no longer running\n", p, prev)
}

func lockLocal(p string, info LockInfo, warn io.Writer) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		held, flockOK := tryFlock(f)
		prevBytes, _ := io.ReadAll(f)
		var prev LockInfo
		hasPrev := len(bytes.TrimSpace(prevBytes)) > 0 && json.Unmarshal(prevBytes, &prev) == nil
		if held {
			f.Close()
			return nil, lockedErr(p, prev)
		}
		// The path may have been released (removed) between our open and our
		// flock: then we locked an orphan inode; start again.
		if st, err := f.Stat(); err != nil || !sameFile(st, p) {
			f.Close()
			continue
		}
		if hasPrev {
			alive := !flockOK && prev.Host == info.Host && pidAlive(prev.PID)
			if alive || prev.Host != info.Host && !flockOK {
				f.Close()
				return nil, lockedErr(p, prev)
			}
			if prev.Host != info.Host {
				// flock is free, but a holder on another host may not share
				// our flock (some network filesystems): do not guess.
				f.Close()
				return nil, fmt.Errorf("%w: %s was left by %s, another host; remove it if no run is using this folder", ErrLocked, p, prev)
			}
			if warn != nil {
				fmt.Fprint(warn, staleMsg(p, prev))
			}
		} else if !flockOK && len(prevBytes) > 0 {
			f.Close()
			return nil, fmt.Errorf("%w: %s exists and is unreadable; remove it if no run is using this folder", ErrLocked, p)
		}
		b, _ := json.MarshalIndent(info, "", "  ")
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt(append(b, '\n'), 0)
			if err == nil {
				err = f.Sync()
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", p, err)
			}
		}
		return &Lock{path: p, info: info, f: f}, nil
	}
	return nil, fmt.Errorf("%w: %s keeps changing under us", ErrLocked, p)
}

func sameFile(st os.FileInfo, p string) bool {
	pst, err := os.Stat(p)
	return err == nil && os.SameFile(st, pst)
}

var memLocks = struct {
	sync.Mutex
	held map[string]bool
}{held: map[string]bool{}}

func lockMem(ctx context.Context, p string, info LockInfo) (*Lock, error) {
	memLocks.Lock()
	defer memLocks.Unlock()
	if memLocks.held[p] {
		var prev LockInfo
		if b, err := readAll(ctx, p); err == nil {
			json.Unmarshal(b, &prev)
		}
		return nil, lockedErr(p, prev)
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := writeAll(ctx, p, b); err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	memLocks.held[p] = true
	return &Lock{path: p, info: info, mem: true}, nil
}

var gcsLockClient struct {
	once sync.Once
	c    *storage.Client
	err  error
}

func lockGCSClient(ctx context.Context) (*storage.Client, error) {
	gcsLockClient.once.Do(func() {
		gcsLockClient.c, gcsLockClient.err = storage.NewClient(context.Background())
		if gcsLockClient.err != nil {
			gcsLockClient.c, gcsLockClient.err = storage.NewClient(context.Background(), option.WithoutAuthentication())
		}
	})
	return gcsLockClient.c, gcsLockClient.err
}

func gcsObj(ctx context.Context, p string) (*storage.ObjectHandle, error) {
	bucket, object, err := gcsx.ParseObject(p)
	if err != nil {
		return nil, err
	}
	c, err := lockGCSClient(ctx)
	if err != nil {
		return nil, err
	}
	return c.Bucket(bucket).Object(object), nil
}

func isPrecondition(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == 412
}

func lockGCS(ctx context.Context, p string, info LockInfo, warn io.Writer) (*Lock, error) {
	obj, err := gcsObj(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	for attempt := 0; attempt < 3; attempt++ {
		w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
		w.ContentType = "application/json"
		_, werr := w.Write(b)
		cerr := w.Close()
		if werr == nil && cerr == nil {
			return &Lock{path: p, info: info, gen: w.Attrs().Generation}, nil
		}
		if cerr == nil || !isPrecondition(cerr) {
			return nil, fmt.Errorf("lock %s: %v %v", p, werr, cerr)
		}
		// Someone's lock is there: take it over only if it is provably dead.
		r, err := obj.NewReader(ctx)
		if errors.Is(err, storage.ErrObjectNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		gen := r.Attrs.Generation
		prevBytes, _ := io.ReadAll(r)
		r.Close()
		var prev LockInfo
		json.Unmarshal(prevBytes, &prev)
		if prev.Host != info.Host || pidAlive(prev.PID) {
			return nil, lockedErr(p, prev)
		}
		if warn != nil {
			fmt.Fprint(warn, staleMsg(p, prev))
		}
		if err := obj.If(storage.Conditions{GenerationMatch: gen}).Delete(ctx); err != nil && !isPrecondition(err) && !errors.Is(err, storage.ErrObjectNotExist) {
			return nil, fmt.Errorf("lock %s: remove stale lock: %w", p, err)
		}
	}
	return nil, fmt.Errorf("%w: %s keeps changing under us", ErrLocked, p)
}

// Release removes the lock. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.path == "" {
		return nil
	}
	p := l.path
	l.path = ""
	switch {
	case l.f != nil:
		// Remove before unlocking: a waiter that opened the old inode finds
		// it orphaned (sameFile) and starts again on a fresh file.
		err := os.Remove(p)
		l.f.Close()
		return err
	case l.mem:
		ctx := context.Background()
		removeQuiet(ctx, p)
		memLocks.Lock()
		delete(memLocks.held, p)
		memLocks.Unlock()
		return nil
	default:
		ctx := context.Background()
		obj, err := gcsObj(ctx, p)
		if err != nil {
			return err
		}
		if err := obj.If(storage.Conditions{GenerationMatch: l.gen}).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
			return fmt.Errorf("release %s: %w", p, err)
		}
		return nil
	}
}
