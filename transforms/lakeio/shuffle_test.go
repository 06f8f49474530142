package lakeio

import (
	"fmt"
	"testing"

	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// TestSortBlobsTies: rows with equal keys come out in one order whatever the
// order of the blobs and of the rows inside them.
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
	render := func(blobs [][]byte) string {
		i := 0
		set, err := c.collect(func(b *[]byte) bool {
			if i == len(blobs) {
				return false
			}
			*b = blobs[i]
			i++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := set.record(0, set.len())
		if err != nil {
			t.Fatal(err)
		}
		var out []schemas.Decision
		c.decode(rec, func(v any) { out = append(out, v.(schemas.Decision)) })
		return fmt.Sprint(out)
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
