package lakeio

import (
	"bytes"
	"context"
	"math/rand"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// TestParquetFooterDeterministic: row groups whose string dictionaries
// overflow (near-unique columns, pages of two encodings in one chunk) give
// the same bytes on every write. arrow-go lists such a chunk's encoding
// stats in Go map order; before footerSorter these writes differed in a
// few footer bytes almost every time.
func TestParquetFooterDeterministic(t *testing.T) {
	c, _ := codecFor(codecOpts{Kind: "pair"})
	b := c.newBuffer()
	rows := schematest.Pairs(30000)
	for _, p := range rows {
		b.add(p)
	}
	p := shardParams{Format: Parquet, RowGroupRows: 30000}
	var first []byte
	for i := 0; i < 5; i++ {
		var out bytes.Buffer
		if err := encode(c, b.(rowSet), &out, p); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = out.Bytes()
			continue
		}
		if !bytes.Equal(first, out.Bytes()) {
			t.Fatalf("write %d differs from write 0 (%d bytes)", i, len(first))
		}
	}

	// The file reads back, and at least one chunk has pages of two
	// encodings (else this test would not test anything), listed in order.
	pf, err := file.NewParquetReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	mixed := 0
	for g := 0; g < pf.NumRowGroups(); g++ {
		rg := pf.MetaData().RowGroup(g)
		for col := 0; col < rg.NumColumns(); col++ {
			cc, err := rg.ColumnChunk(col)
			if err != nil {
				t.Fatal(err)
			}
			stats := cc.EncodingStats()
			data := 0
			for i, s := range stats {
				if i > 0 && s.PageType == stats[i-1].PageType && s.Encoding < stats[i-1].Encoding {
					t.Errorf("row group %d column %d: encoding stats out of order: %+v", g, col, stats)
				}
				if s.PageType != 0 && i > 0 { // the dictionary page's entry stays first
					t.Errorf("row group %d column %d: %v page listed after another: %+v", g, col, s.PageType, stats)
				}
				if s.PageType == 0 { // DATA_PAGE
					data++
				}
			}
			if data > 1 {
				mixed++
			}
		}
	}
	if mixed == 0 {
		t.Fatal("no column chunk with two data page encodings: the test data no longer overflows a dictionary")
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 16}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if tbl.NumRows() != int64(len(rows)) {
		t.Fatalf("read %d rows, wrote %d", tbl.NumRows(), len(rows))
	}
}

// TestSortFooterRejectsGarbage: a footer that is not what the writer
// produces is an error, never a panic or a silent rewrite.
func TestSortFooterRejectsGarbage(t *testing.T) {
	if err := sortFooter([]byte("not a parquet tail")); err == nil {
		t.Error("sortFooter accepted a tail without PAR1")
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		b := make([]byte, r.Intn(200))
		r.Read(b)
		_ = sortEncodingStats(b) // must not panic
	}
}
