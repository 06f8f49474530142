package lakeio

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// TestSortBlobsTies: rows with equal keys come out in one order whatever the
// order of the blobs and of the rows inside them, and whether the batches
// travel as shuffle blobs or as spilled files.
func TestSortBlobsTies(t *testing.T) {
	c, _ := codecFor(codecOpts{Kind: "decision"})
	base := schematest.Decisions(6)
	var rows []schemas.Decision
	for i, d := range base {
		for v := 0; v < 3; v++ { // three rows per key, different content
			d.Reason = fmt.Sprintf("variant %d of %d", (v*7+i)%3, i)
			rows = append(rows, d)
		}
	}
	blobsOf := func(order []schemas.Decision, per int) [][]byte {
		var out [][]byte
		for lo := 0; lo < len(order); lo += per {
			b := c.newBuffer()
			for _, r := range order[lo:min(lo+per, len(order))] {
				b.add(r)
			}
			blob, err := b.ipc()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, blob)
		}
		return out
	}
	collectBlobs := func(blobs [][]byte) (rowSet, error) {
		return c.collect(func(fn func(arrow.RecordBatch) error) error { return eachBlobBatch(iterOf(blobs), fn) })
	}
	// The same batches spilled: each blob's rows written with spillBatch.
	collectSpilled := func(blobs [][]byte) (rowSet, error) {
		dir := t.TempDir()
		var names [][]byte
		err := eachBlobBatch(iterOf(blobs), func(rec arrow.RecordBatch) error {
			n := rec.NumCols() - 1
			plain := array.NewRecordBatch(arrow.NewSchema(rec.Schema().Fields()[:n], nil), rec.Columns()[:n], rec.NumRows())
			defer plain.Release()
			name, err := spillBatch(dir, 0, plain, rec.Column(int(n)))
			names = append(names, []byte(name))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return c.collect(func(fn func(arrow.RecordBatch) error) error { return unspill(dir, iterOf(names), fn) })
	}
	render := func(blobs [][]byte) string {
		var outs []string
		for _, collect := range []func([][]byte) (rowSet, error){collectBlobs, collectSpilled} {
			set, err := collect(blobs)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := set.record(0, set.len())
			if err != nil {
				t.Fatal(err)
			}
			var out []schemas.Decision
			c.decode(rec, func(v any) { out = append(out, v.(schemas.Decision)) })
			outs = append(outs, fmt.Sprint(out))
		}
		if outs[0] != outs[1] {
			t.Fatalf("spilled batches sort differently from shuffled ones:\n%s\n%s", outs[1], outs[0])
		}
		return outs[0]
	}
	reversed := make([]schemas.Decision, len(rows))
	for i := range rows {
		reversed[len(rows)-1-i] = rows[i]
	}
	want := render(blobsOf(rows, 4))
	for _, got := range []string{render(blobsOf(reversed, 4)), render(blobsOf(reversed, 5)), render(blobsOf(rows, 100))} {
		if got != want {
			t.Fatalf("order depends on input order:\n got %s\nwant %s", got, want)
		}
	}
}

// iterOf is a Beam-style iterator over items.
func iterOf(items [][]byte) func(*[]byte) bool {
	i := 0
	return func(b *[]byte) bool {
		if i == len(items) {
			return false
		}
		*b = items[i]
		i++
		return true
	}
}

// TestShardOfIsFNV64a: the inline hash is hash/fnv's 64-bit FNV-1a, so
// shard assignment (and every file written) is unchanged.
func TestShardOfIsFNV64a(t *testing.T) {
	keys := []string{"", "a", "pair-00000000", "pair-00999999", "en\x00p000123", "日本語のキー", string([]byte{0, 255, 128})}
	for i := 0; i < 1000; i++ {
		keys = append(keys, schematest.Pair(i).PairID)
	}
	for _, k := range keys {
		h := fnv.New64a()
		h.Write([]byte(k))
		for _, n := range []int{1, 3, 8, 16, 99999} {
			if got, want := shardOf(k, n), int(h.Sum64()%uint64(n)); got != want {
				t.Fatalf("shardOf(%q, %d) = %d, want %d", k, n, got, want)
			}
		}
	}
}

// TestSharderBlobsMatchBuffer: the sending side's per-shard buffers (keys
// computed once, builders presized from the previous batch) ship the same
// blobs as a plain buffer of the same rows, batch after batch.
func TestSharderBlobsMatchBuffer(t *testing.T) {
	for _, kind := range []codecOpts{{Kind: "pair"}, {Kind: "pair", Conversational: true}, {Kind: "sketch", K: 8, Spec: "s"}, {Kind: "prompt"}} {
		c, err := codecFor(kind)
		if err != nil {
			t.Fatal(err)
		}
		var rows []any
		switch kind.Kind {
		case "pair":
			for _, p := range schematest.Pairs(700) {
				rows = append(rows, p)
			}
		case "sketch":
			for _, p := range schematest.Sketches(700, 8) {
				rows = append(rows, p)
			}
		case "prompt":
			for _, p := range schematest.Prompts(700) {
				rows = append(rows, p)
			}
		}
		const shards = 3
		sh := c.newSharder(shards)
		plain := make([]rowBuffer, shards)
		for i := range plain {
			plain[i] = c.newBuffer()
		}
		check := func(s int) {
			got, err := sh.flush(s)
			if err != nil {
				t.Fatal(err)
			}
			want, err := plain[s].ipc()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%+v shard %d: sharder blob differs from plain buffer blob (%d vs %d bytes)", kind, s, len(got), len(want))
			}
		}
		for i, r := range rows {
			s, n := sh.add(r)
			plain[s].add(r)
			if n != plain[s].len() {
				t.Fatalf("sharder holds %d rows for shard %d, plain buffer %d", n, s, plain[s].len())
			}
			if n >= 50+i%37 { // uneven batch sizes, so presizing is exercised both ways
				check(s)
			}
		}
		for s := 0; s < shards; s++ {
			if plain[s].len() > 0 {
				check(s)
			}
		}
	}
}
