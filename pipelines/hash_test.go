package pipelines

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// TestEachIndex: every index runs once when nothing fails, at most
// hashWorkers at a time; with failures the lowest failing index's error
// comes back whatever the order the calls finish in.
func TestEachIndex(t *testing.T) {
	var seen [100]atomic.Int32
	var running, peak atomic.Int32
	err := eachIndex(len(seen), hashWorkers, func(i int) error {
		r := running.Add(1)
		for p := peak.Load(); r > p && !peak.CompareAndSwap(p, r); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		seen[i].Add(1)
		running.Add(-1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("index %d ran %d times", i, n)
		}
	}
	if p := int(peak.Load()); p > hashWorkers || p < 2 {
		t.Errorf("peak concurrency %d, want 2..%d", p, hashWorkers)
	}
	for trial := 0; trial < 20; trial++ {
		err := eachIndex(40, hashWorkers, func(i int) error {
			// Later failures finish first.
			time.Sleep(time.Duration(40-i) * 50 * time.Microsecond)
			if i == 7 || i == 9 || i == 30 {
				return fmt.Errorf("file %d", i)
			}
			return nil
		})
		if err == nil || err.Error() != "file 7" {
			t.Fatalf("trial %d: %v, want the error of index 7", trial, err)
		}
	}
	if err := eachIndex(0, hashWorkers, func(int) error { return errors.New("called") }); err != nil {
		t.Fatal(err)
	}
	// One worker: strictly in order, one at a time.
	var order []int
	_ = eachIndex(5, 1, func(i int) error { order = append(order, i); return nil })
	if fmt.Sprint(order) != "[0 1 2 3 4]" {
		t.Errorf("one worker ran %v", order)
	}
}

// TestResolveInputHashesInOrder: files hashed in parallel give the digest
// of hashing them one by one, and of two bad files the first is named.
func TestResolveInputHashesInOrder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var want []FileEntry
	for i := 0; i < 2*hashWorkers+3; i++ {
		p := filepath.Join(dir, fmt.Sprintf("own-%02d.parquet", i))
		if err := os.WriteFile(p, []byte(strings.Repeat(fmt.Sprint(i), 1000+i)), 0o644); err != nil {
			t.Fatal(err)
		}
		size, sum, _, err := hashFile(ctx, p, false)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, FileEntry{Path: p, Size: size, SHA256: sum})
	}
	ref, _, _, _, err := ResolveInput(ctx, dir, "pairs", filepath.Join(dir, "own-*.parquet"), "--pairs", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Digest != digest(want) || ref.Files != len(want) {
		t.Fatalf("digest %s over %d files, want %s over %d", ref.Digest, ref.Files, digest(want), len(want))
	}
	// Unreadable files (directories matching the glob): the first is named.
	for _, name := range []string{"own-90.parquet", "own-95.parquet"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, _, _, _, err = ResolveInput(ctx, dir, "pairs", filepath.Join(dir, "own-*.parquet"), "--pairs", nil)
	if err == nil || !strings.Contains(err.Error(), "own-90.parquet") {
		t.Fatalf("two unreadable files: %v, want the first (own-90) named", err)
	}
}

// BenchmarkResolveInputGCS hashes 16 objects of 4 MiB on gs://
// (fake-gcs-server in this process, over HTTP) through ResolveInput, one
// file at a time and hashWorkers at a time.
//
//	go test -run '^$' -bench ResolveInputGCS -benchtime 5x ./pipelines/
func BenchmarkResolveInputGCS(b *testing.B) {
	ctx := context.Background()
	const files, size = 16, 4 << 20
	prefix := fmt.Sprintf("bench-hash-%d", time.Now().UnixNano())
	body := make([]byte, size)
	for i := 0; i < files; i++ {
		for j := range body {
			body[j] = byte(i*31 + j)
		}
		gcs.CreateObject(fakestorage.Object{
			ObjectAttrs: fakestorage.ObjectAttrs{BucketName: gcsBucket, Name: fmt.Sprintf("%s/own-%02d.parquet", prefix, i)},
			Content:     append([]byte(nil), body...),
		})
	}
	glob := fmt.Sprintf("gs://%s/%s/own-*.parquet", gcsBucket, prefix)
	for _, workers := range []int{1, hashWorkers} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			defer func(w int) { hashWorkers = w }(hashWorkers)
			hashWorkers = workers
			b.SetBytes(files * size)
			for b.Loop() {
				ref, _, _, _, err := ResolveInput(ctx, "", "pairs", glob, "--pairs", nil)
				if err != nil || ref.Files != files {
					b.Fatalf("%d files: %v", ref.Files, err)
				}
			}
		})
	}
}
