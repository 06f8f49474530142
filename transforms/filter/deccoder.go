package filter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/congrad-beam/congrad/schemas"
)

// DecisionBlocks cross a shuffle between ranking and SplitFiles (one row
// per scored pair), so they have their own coder: the strings that repeat
// from row to row (language, reason and the audit fields) are written once
// per block and referred to by index, about 30 bytes a row where Beam's
// schema coder writes every field of every row (~80 bytes; measured in
// TestDecisionBlockCoder). The encoding is deterministic: strings are
// numbered in order of first use.
//
//	uvarint #strings, each string (uvarint length, bytes)
//	uvarint #rows, each row: pair id (uvarint length, bytes), six uvarint
//	string indexes (lang, reason, score type, target, rule, gate), score
//	(8 bytes, little-endian IEEE 754), rank (varint), kept (1 byte)
func encodeDecisionBlock(b DecisionBlock) []byte {
	var strs []string
	ix := map[string]uint64{}
	body := make([]byte, 0, 32*len(b.Rows))
	body = binary.AppendUvarint(body, uint64(len(b.Rows)))
	for _, d := range b.Rows {
		body = binary.AppendUvarint(body, uint64(len(d.PairID)))
		body = append(body, d.PairID...)
		for _, s := range [...]string{d.Lang, d.Reason, d.ScoreType, d.Target, d.Rule, d.Gate} {
			i, ok := ix[s]
			if !ok {
				i = uint64(len(strs))
				strs = append(strs, s)
				ix[s] = i
			}
			body = binary.AppendUvarint(body, i)
		}
		body = binary.LittleEndian.AppendUint64(body, math.Float64bits(d.Score))
		body = binary.AppendVarint(body, int64(d.Rank))
		kept := byte(0)
		if d.Kept {
			kept = 1
		}
		body = append(body, kept)
	}
	out := binary.AppendUvarint(nil, uint64(len(strs)))
	for _, s := range strs {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	return append(out, body...)
}

var errDecisionBlock = errors.New("filter: malformed encoded DecisionBlock")

func decodeDecisionBlock(data []byte) (DecisionBlock, error) {
	d := decBuf{data: data}
	strs := make([]string, d.count())
	for i := range strs {
		strs[i] = d.str()
	}
	str := func() string {
		i := d.uvarint()
		if i >= uint64(len(strs)) {
			d.err = errDecisionBlock
			return ""
		}
		return strs[i]
	}
	rows := make([]schemas.Decision, d.count())
	for i := range rows {
		r := &rows[i]
		r.PairID = d.str()
		r.Lang, r.Reason, r.ScoreType, r.Target, r.Rule, r.Gate = str(), str(), str(), str(), str(), str()
		r.Score = math.Float64frombits(d.u64())
		r.Rank = int(d.varint())
		switch d.byte1() {
		case 0:
		case 1:
			r.Kept = true
		default:
			d.err = errDecisionBlock
		}
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.data) != 0 {
		d.err = errDecisionBlock
	}
	if d.err != nil {
		return DecisionBlock{}, fmt.Errorf("%w (%d bytes)", d.err, len(data))
	}
	if len(rows) == 0 {
		rows = nil
	}
	return DecisionBlock{Rows: rows}, nil
}

// decBuf reads the fields of an encoded DecisionBlock; the first error
// sticks and later reads return zeros.
type decBuf struct {
	data []byte
	err  error
}

func (d *decBuf) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		d.err = errDecisionBlock
		return 0
	}
	d.data = d.data[n:]
	return v
}

// varint is binary.Varint's zig-zag decoding over uvarint.
func (d *decBuf) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// count reads a length that must fit in the bytes left (each counted item
// takes at least one byte), so a corrupt count cannot allocate much.
func (d *decBuf) count() int {
	n := d.uvarint()
	if n > uint64(len(d.data)) {
		d.err = errDecisionBlock
		return 0
	}
	return int(n)
}

func (d *decBuf) take(n uint64) []byte {
	if d.err != nil || n > uint64(len(d.data)) {
		d.err = errDecisionBlock
		return nil
	}
	b := d.data[:n]
	d.data = d.data[n:]
	return b
}

func (d *decBuf) str() string { return string(d.take(d.uvarint())) }
func (d *decBuf) u64() uint64 {
	b := d.take(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}
func (d *decBuf) byte1() byte {
	b := d.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}
