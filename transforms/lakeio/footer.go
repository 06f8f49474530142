package lakeio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// arrow-go (v18.8) writes each Parquet column chunk's encoding_stats from
// two Go maps (dictionary pages and data pages by encoding), so when a chunk
// holds pages of two encodings (a dictionary that outgrew its page limit
// and fell back to PLAIN mid-chunk: typical for near-unique string columns
// in row groups of tens of thousands of rows) their order in the footer
// changes from run to run and the same rows give different file bytes.
// footerSorter holds back what the writer emits while closing (the footer)
// and sorts the entries of each page type in every encoding_stats list by
// (encoding, count) before passing it on. Sorting a list of equal-shaped thrift structs only
// permutes byte ranges, so the footer keeps its length and every offset in
// the file stays valid; a chunk with one entry per map is left as it was.

// footerSorter is the io.WriteCloser the Parquet writer writes to. Writes
// go straight through until holdTail; from then on (the writer's Close)
// they are buffered, and Close sorts the footer in the buffer, writes it
// and closes the underlying writer when it is an io.Closer.
type footerSorter struct {
	w    io.Writer
	hold bool
	tail []byte
}

func (f *footerSorter) Write(p []byte) (int, error) {
	if f.hold {
		f.tail = append(f.tail, p...)
		return len(p), nil
	}
	return f.w.Write(p)
}

// holdTail starts buffering: call it just before closing the Parquet writer.
func (f *footerSorter) holdTail() { f.hold = true }

func (f *footerSorter) Close() error {
	var err error
	if f.hold {
		f.hold = false
		if err = sortFooter(f.tail); err == nil {
			_, err = f.w.Write(f.tail)
		}
		f.tail = nil
	}
	if c, ok := f.w.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

var parquetMagic = []byte("PAR1")

// sortFooter sorts the encoding_stats lists of the footer at the end of
// tail: <FileMetaData><uint32 length>PAR1.
func sortFooter(tail []byte) error {
	if len(tail) < 8 || !bytes.Equal(tail[len(tail)-4:], parquetMagic) {
		return fmt.Errorf("lakeio: parquet footer not found in the %d bytes written at close", len(tail))
	}
	n := int(binary.LittleEndian.Uint32(tail[len(tail)-8:]))
	if n > len(tail)-8 {
		return fmt.Errorf("lakeio: parquet footer length %d exceeds the %d bytes written at close", n, len(tail)-8)
	}
	return sortEncodingStats(tail[len(tail)-8-n : len(tail)-8])
}

// Thrift compact protocol type ids.
const (
	ctStop   = 0
	ctTrue   = 1
	ctFalse  = 2
	ctByte   = 3
	ctI16    = 4
	ctI32    = 5
	ctI64    = 6
	ctDouble = 7
	ctBinary = 8
	ctList   = 9
	ctSet    = 10
	ctMap    = 11
	ctStruct = 12
)

var errThrift = errors.New("lakeio: malformed parquet footer")

// compact reads a thrift compact-protocol buffer.
type compact struct {
	b []byte
	p int
}

func (c *compact) byte1() (byte, error) {
	if c.p >= len(c.b) {
		return 0, errThrift
	}
	c.p++
	return c.b[c.p-1], nil
}

func (c *compact) uvarint() (uint64, error) {
	v, n := binary.Uvarint(c.b[c.p:])
	if n <= 0 {
		return 0, errThrift
	}
	c.p += n
	return v, nil
}

func (c *compact) zigzag() (int64, error) {
	u, err := c.uvarint()
	return int64(u>>1) ^ -int64(u&1), err
}

func (c *compact) advance(n int) error {
	if n < 0 || c.p+n > len(c.b) {
		return errThrift
	}
	c.p += n
	return nil
}

// field reads a field header; stop is true at the end of a struct.
func (c *compact) field(last *int16) (id int16, typ byte, stop bool, err error) {
	h, err := c.byte1()
	if err != nil || h == ctStop {
		return 0, 0, true, err
	}
	typ = h & 0x0f
	if d := h >> 4; d != 0 {
		id = *last + int16(d)
	} else {
		v, err := c.zigzag()
		if err != nil {
			return 0, 0, true, err
		}
		id = int16(v)
	}
	*last = id
	return id, typ, false, nil
}

// list reads a list or set header.
func (c *compact) list() (n int, elem byte, err error) {
	h, err := c.byte1()
	if err != nil {
		return 0, 0, err
	}
	elem = h & 0x0f
	n = int(h >> 4)
	if n == 15 {
		v, err := c.uvarint()
		if err != nil || v > uint64(len(c.b)) {
			return 0, 0, errThrift
		}
		n = int(v)
	}
	return n, elem, nil
}

// skip skips one value of type typ; inList says whether it is a list or
// map element (a boolean element takes a byte; a boolean field none).
func (c *compact) skip(typ byte, inList bool, depth int) error {
	if depth > 64 {
		return errThrift
	}
	switch typ {
	case ctTrue, ctFalse:
		if inList {
			return c.advance(1)
		}
		return nil
	case ctByte:
		return c.advance(1)
	case ctI16, ctI32, ctI64:
		_, err := c.uvarint()
		return err
	case ctDouble:
		return c.advance(8)
	case ctBinary:
		n, err := c.uvarint()
		if err != nil || n > uint64(len(c.b)) {
			return errThrift
		}
		return c.advance(int(n))
	case ctList, ctSet:
		n, elem, err := c.list()
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := c.skip(elem, true, depth+1); err != nil {
				return err
			}
		}
		return nil
	case ctMap:
		n, err := c.uvarint()
		if err != nil || n > uint64(len(c.b)) {
			return errThrift
		}
		if n == 0 {
			return nil
		}
		kv, err := c.byte1()
		if err != nil {
			return err
		}
		for i := 0; i < int(n); i++ {
			if err := c.skip(kv>>4, true, depth+1); err != nil {
				return err
			}
			if err := c.skip(kv&0x0f, true, depth+1); err != nil {
				return err
			}
		}
		return nil
	case ctStruct:
		return c.eachField(func(int16, byte) (bool, error) { return false, nil }, depth+1)
	}
	return errThrift
}

// eachField walks a struct's fields; fn reads the value itself and returns
// true, or returns false to have it skipped.
func (c *compact) eachField(fn func(id int16, typ byte) (bool, error), depth int) error {
	if depth > 64 {
		return errThrift
	}
	var last int16
	for {
		id, typ, stop, err := c.field(&last)
		if err != nil {
			return err
		}
		if stop {
			return nil
		}
		done, err := fn(id, typ)
		if err != nil {
			return err
		}
		if !done {
			if err := c.skip(typ, false, depth+1); err != nil {
				return err
			}
		}
	}
}

// eachStruct calls fn for each struct element of a list field.
func (c *compact) eachStruct(fn func() error) error {
	n, elem, err := c.list()
	if err != nil {
		return err
	}
	if elem != ctStruct && n > 0 {
		return errThrift
	}
	for i := 0; i < n; i++ {
		if err := fn(); err != nil {
			return err
		}
	}
	return nil
}

// Field ids of parquet.thrift: FileMetaData.row_groups, RowGroup.columns,
// ColumnChunk.meta_data, ColumnMetaData.encoding_stats.
const (
	fileMetaRowGroups   = 4
	rowGroupColumns     = 1
	columnChunkMetaData = 3
	columnMetaEncStats  = 13
)

// sortEncodingStats sorts, in place, the entries of each page type in each
// ColumnMetaData.encoding_stats list of a FileMetaData struct by (encoding,
// count).
func sortEncodingStats(meta []byte) error {
	c := &compact{b: meta}
	err := c.eachField(func(id int16, typ byte) (bool, error) {
		if id != fileMetaRowGroups || typ != ctList {
			return false, nil
		}
		return true, c.eachStruct(func() error {
			return c.eachField(func(id int16, typ byte) (bool, error) {
				if id != rowGroupColumns || typ != ctList {
					return false, nil
				}
				return true, c.eachStruct(func() error {
					return c.eachField(func(id int16, typ byte) (bool, error) {
						if id != columnChunkMetaData || typ != ctStruct {
							return false, nil
						}
						return true, c.eachField(func(id int16, typ byte) (bool, error) {
							if id != columnMetaEncStats || typ != ctList {
								return false, nil
							}
							return true, c.sortStats()
						}, 3)
					}, 2)
				})
			}, 1)
		})
	}, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", errThrift, err)
	}
	return nil
}

// sortStats sorts the PageEncodingStats elements of the list at c.p.
func (c *compact) sortStats() error {
	n, elem, err := c.list()
	if err != nil {
		return err
	}
	if n > 0 && elem != ctStruct {
		return errThrift
	}
	type entry struct {
		lo, hi int
		key    [3]int64 // page_type, encoding, count
	}
	entries := make([]entry, 0, n)
	for i := 0; i < n; i++ {
		e := entry{lo: c.p}
		err := c.eachField(func(id int16, typ byte) (bool, error) {
			if id < 1 || id > 3 || typ != ctI32 {
				return false, nil
			}
			v, err := c.zigzag()
			e.key[id-1] = v
			return true, err
		}, 4)
		if err != nil {
			return err
		}
		e.hi = c.p
		entries = append(entries, e)
	}
	// Only entries of one page type come from one map: sort within each
	// run of equal page_type and keep the runs where the writer put them
	// (dictionary pages first), so a chunk with one encoding per page type
	// keeps its bytes.
	less := func(i, j int) bool { return lessKey(entries[i].key, entries[j].key) }
	if len(entries) < 2 || sort.SliceIsSorted(entries, less) {
		return nil
	}
	lo, hi := entries[0].lo, entries[len(entries)-1].hi
	orig := append([]byte(nil), c.b[lo:hi]...)
	for start := 0; start < len(entries); {
		end := start + 1
		for end < len(entries) && entries[end].key[0] == entries[start].key[0] {
			end++
		}
		run := entries[start:end]
		sort.SliceStable(run, func(i, j int) bool { return lessKey(run[i].key, run[j].key) })
		start = end
	}
	// The elements are contiguous: rewrite [first.lo, last.hi) in order.
	at := lo
	for _, e := range entries {
		at += copy(c.b[at:hi], orig[e.lo-lo:e.hi-lo])
	}
	if at != hi {
		return errThrift
	}
	return nil
}

func lessKey(a, b [3]int64) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
