package train

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// ErrColumns is wrapped when a pairs file lacks a required column or has it
// in a type the trainer cannot read.
var ErrColumns = errors.New("pairs file columns")

// ReadPairsParquet reads preference pairs from a Parquet file in the layout
// the pipeline writes for kept pairs (and TRL's DPOTrainer reads): string
// columns prompt, chosen, rejected (required) and pair_id, lang (optional).
// Null cells are an error naming the row. The conversational (message list)
// form is not supported by this byte-level trainer.
func ReadPairsParquet(ctx context.Context, path string) ([]Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read pairs %s: %w", path, err)
	}
	defer f.Close()
	tbl, err := pqarrow.ReadTable(ctx, f, nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("read pairs %s: %w", path, err)
	}
	defer tbl.Release()
	pairs, err := pairsFromTable(tbl)
	if err != nil {
		return nil, fmt.Errorf("read pairs %s: %w", path, err)
	}
	return pairs, nil
}

func pairsFromTable(tbl arrow.Table) ([]Pair, error) {
	idx := map[string]int{}
	for i, fld := range tbl.Schema().Fields() {
		idx[fld.Name] = i
	}
	for _, name := range []string{"prompt", "chosen", "rejected"} {
		i, ok := idx[name]
		if !ok {
			return nil, fmt.Errorf("%w: missing column %q", ErrColumns, name)
		}
		if id := tbl.Schema().Field(i).Type.ID(); id != arrow.STRING && id != arrow.LARGE_STRING {
			return nil, fmt.Errorf("%w: column %q has type %s, want string (conversational form is not supported)", ErrColumns, name, tbl.Schema().Field(i).Type)
		}
	}
	rr := array.NewTableReader(tbl, 1<<16)
	defer rr.Release()
	var out []Pair
	row := 0
	for rr.Next() {
		rec := rr.RecordBatch()
		get := func(name string, optional bool) (func(int) (string, error), error) {
			i, ok := idx[name]
			if !ok {
				return func(int) (string, error) { return "", nil }, nil
			}
			type strArr interface {
				Value(int) string
				IsNull(int) bool
			}
			a, ok := rec.Column(i).(strArr)
			if !ok {
				if optional {
					return func(int) (string, error) { return "", nil }, nil
				}
				return nil, fmt.Errorf("%w: column %q is not a string array", ErrColumns, name)
			}
			return func(r int) (string, error) {
				if a.IsNull(r) {
					return "", fmt.Errorf("%w: row %d: null %s", ErrColumns, row+r, name)
				}
				return a.Value(r), nil
			}, nil
		}
		cols := map[string]func(int) (string, error){}
		for _, c := range []struct {
			name string
			opt  bool
		}{{"prompt", false}, {"chosen", false}, {"rejected", false}, {"pair_id", true}, {"lang", true}} {
			fn, err := get(c.name, c.opt)
			if err != nil {
				return nil, err
			}
			cols[c.name] = fn
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			var p Pair
			var err error
			fields := []struct {
				name string
				dst  *string
			}{{"prompt", &p.Prompt}, {"chosen", &p.Chosen}, {"rejected", &p.Rejected}, {"pair_id", &p.ID}, {"lang", &p.Lang}}
			for _, fl := range fields {
				if *fl.dst, err = cols[fl.name](r); err != nil {
					return nil, err
				}
			}
			if p.ID == "" {
				p.ID = fmt.Sprintf("row-%d", row+r)
			}
			out = append(out, p)
		}
		row += int(rec.NumRows())
	}
	if err := rr.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
