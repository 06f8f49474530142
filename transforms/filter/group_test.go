package filter

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// The group pass's partial sums, in the shuffle or spilled to files, add up
// to each group's sum of its members' values, on a split of several decode
// batches (eachSketch reuses a batch's memory, so a pass that kept a
// sketch's values past its call would sum the wrong rows). One flush: the
// same bits as a plain float64 sum in file order; a flush every 5 groups:
// to rounding.
func TestGroupSplitPartsSumTheMembers(t *testing.T) {
	const n, kk, size = 3*BatchRows + 17, 6, 4
	r := rand.New(rand.NewPCG(3, 4))
	var sks []schemas.Sketch
	for i := range n {
		v := make([]float32, kk)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		sks = append(sks, schemas.Sketch{PairID: fmt.Sprintf("p%05d", i), Lang: "en", Values: v})
	}
	dir := t.TempDir()
	p, s := beam.NewPipelineWithRoot()
	lakeio.Write(s, dir+"/sketches", beam.CreateList(s, sks), lakeio.WriteOptions{Shards: 1, RowGroupRows: 1 << 20, SketchK: kk, SketchSpec: "test"})
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(dir + "/sketches-*.parquet")
	if len(files) != 1 {
		t.Fatalf("sketch files %q", files)
	}
	// The file's rows in file order, read back the way the pass reads them.
	sp := lakeio.Split{Path: files[0], Format: lakeio.Parquet, Start: 0, End: 1} // one row group
	fo := FileOptions{K: kk, Spec: "test"}
	ctx := metrics.SetPTransformID(metrics.SetBundleID(context.Background(), "b"), "t")
	groups := (n + size - 1) / size
	want := map[string][]float64{}
	rows := 0
	if err := eachSketch(ctx, sp, fo, func(sk schemas.Sketch) error {
		rows++
		k := groupKey(sk.Lang, gate.HashGroup(9, sk.PairID, groups))
		if want[k] == nil {
			want[k] = make([]float64, kk)
		}
		for j, x := range sk.Values {
			want[k][j] += float64(x)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Fatalf("read %d rows, wrote %d", rows, n)
	}
	for _, c := range []struct {
		held  int
		spill bool
	}{{1 << 20, false}, {1 << 20, true}, {5, false}, {5, true}} {
		f := &groupSplitFn{Files: fo, Size: size, Seed: 9, Held: c.held}
		if c.spill {
			f.Spill = filepath.Join(t.TempDir(), "group")
		}
		parts := map[string][]GroupPart{}
		members := 0
		err := f.ProcessElement(ctx, BoundSplit{Split: sp, Counts: []LangCount{{Lang: "en", N: n}}},
			func(Member) { members++ }, func(k string, gp GroupPart) { parts[k] = append(parts[k], gp) })
		if err != nil {
			t.Fatal(err)
		}
		if members != n || len(parts) != len(want) {
			t.Fatalf("held %d spill %v: %d members, %d groups; want %d, %d", c.held, c.spill, members, len(parts), n, len(want))
		}
		sc := &groupScoreFn{}
		singles := 0
		for k, ps := range parts {
			slices.SortFunc(ps, func(a, b GroupPart) int { return cmp.Compare(a.Key, b.Key) })
			got := make([]float64, kk)
			for _, gp := range ps {
				if gp.One != nil || gp.Single {
					singles++
				}
				if c.spill != (gp.File != "") {
					t.Fatalf("spill %v: part in file %q", c.spill, gp.File)
				}
				if err := sc.addPart(got, gp); err != nil {
					t.Fatal(err)
				}
			}
			for j := range got {
				if d := math.Abs(got[j] - want[k][j]); (c.held > groups && d != 0) || d > 1e-12 {
					t.Fatalf("held %d spill %v: group %q value %d = %v, want %v", c.held, c.spill, k, j, got[j], want[k][j])
				}
			}
		}
		sc.Teardown()
		if singles == 0 {
			t.Fatalf("held %d spill %v: no one-sketch part (float32) exercised", c.held, c.spill)
		}
	}
}
