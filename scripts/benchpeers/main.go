// Command benchpeers writes the synthetic lake that `make bench-peers`
// runs `congrad select` and its DuckDB peer on: n pairs in 10 languages
// (pairs-00000-of-00001.parquet) and their k-dimensional sketches
// (sketches-0000i-of-0000s.parquet), written as lakeio.Write writes them
// (zstd Parquet with lakeio.ParquetProps, Arrow schema and sketch spec stored, 65536-row row
// groups, rows sorted by pair id). The same n, k and seed give the same
// bytes. Rows are generated and written one batch at a time, so a million
// sketches at k=2048 need no more memory than one batch.
//
//	go run ./scripts/benchpeers -n 100000 -k 2048 -out /tmp/lake
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

var langs = []string{"ar", "de", "en", "es", "fr", "hi", "ja", "ru", "th", "zh"}

func main() {
	n := flag.Int("n", 100000, "pairs (and sketches)")
	k := flag.Int("k", 2048, "sketch dimension")
	shards := flag.Int("shards", 4, "sketch files")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *out == "" || *n < 1 || *k < 1 || *shards < 1 {
		log.Fatal("usage: benchpeers -n N -k K -shards S -out DIR")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	spec := sketch.DefaultSpec()
	spec.K = *k
	base := make([][]float32, len(langs))
	dir := rand.New(rand.NewPCG(1, 1))
	for l := range base {
		base[l] = make([]float32, *k)
		for j := range base[l] {
			base[l][j] = float32(dir.NormFloat64())
			if l == 1 { // one language opposes another: PCGrad has work to do
				base[l][j] = -base[0][j] + 0.5*base[l][j]
			}
		}
	}
	id := func(i int) string { return fmt.Sprintf("p%08d", i) }
	// Pairs: ids in order, one file.
	err := write(filepath.Join(*out, "pairs-00000-of-00001.parquet"), schemas.PairCodec{}, *n, func(i int) schemas.Pair {
		l := langs[i%len(langs)]
		return schemas.Pair{PairID: id(i), PromptID: fmt.Sprint(i), Lang: l, Prompt: "prompt " + id(i), Chosen: "good", Rejected: "bad",
			ChosenScore: 4, RejectedScore: 1, Margin: 3, ChosenScores: []float64{4}, RejectedScores: []float64{1},
			RefChosenLogp: math.NaN(), RefRejectedLogp: math.NaN()}
	})
	if err != nil {
		log.Fatal(err)
	}
	// Sketches: contiguous id ranges per shard, so each file is sorted.
	per := (*n + *shards - 1) / *shards
	for sh := 0; sh < *shards; sh++ {
		lo, hi := sh*per, min((sh+1)*per, *n)
		name := fmt.Sprintf("sketches-%05d-of-%05d.parquet", sh, *shards)
		err := write(filepath.Join(*out, name), schemas.SketchCodec{K: *k, Spec: spec.String()}, max(hi-lo, 0), func(j int) schemas.Sketch {
			i := lo + j
			r := rand.New(rand.NewPCG(2, uint64(i)))
			l := i % len(langs)
			v := make([]float32, *k)
			for c := range v {
				v[c] = 0.2*base[l][c] + float32(r.NormFloat64())
			}
			return schemas.Sketch{PairID: id(i), Lang: langs[l], Values: v, RefChosenLogp: -1, RefRejectedLogp: -2}
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("wrote %d pairs and sketches (k=%d, spec %s) to %s\n", *n, *k, spec, *out)
}

// write writes n rows made by row(i), 1024 at a time, to one Parquet file.
func write[T any](path string, c schemas.Codec[T], n int, row func(i int) T) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	props := lakeio.ParquetProps(c.Schema(), 65536, memory.DefaultAllocator) // as congrad writes them
	fw, err := pqarrow.NewFileWriter(c.Schema(), f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return err
	}
	const batch = 1024
	rows := make([]T, 0, batch)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		b := array.NewRecordBuilder(memory.DefaultAllocator, c.Schema())
		defer b.Release()
		if err := c.Append(b, rows); err != nil {
			return err
		}
		rec := b.NewRecordBatch()
		defer rec.Release()
		rows = rows[:0]
		return fw.WriteBuffered(rec)
	}
	for i := 0; i < n; i++ {
		rows = append(rows, row(i))
		if len(rows) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := fw.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
