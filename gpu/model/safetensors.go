package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// Tensor is a host-side float32 tensor in row-major order.
type Tensor struct {
	Dims []int
	Data []float32
}

// Size is the number of elements the dims imply.
func (t *Tensor) Size() int {
	n := 1
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// ErrSafetensors is wrapped by every malformed-file error.
var ErrSafetensors = errors.New("safetensors")

// maxHeader bounds the JSON header so a corrupt length cannot allocate gigabytes.
const maxHeader = 100 << 20

type stEntry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// TensorInfo is one tensor's entry in a safetensors header.
type TensorInfo struct {
	DType string
	Shape []int
}

var dtypeWidth = map[string]int{"F32": 4, "BF16": 2, "F16": 2, "F64": 8}

// stHeader is a parsed, validated safetensors header.
type stHeader struct {
	entries   map[string]stEntry
	meta      map[string]string
	dataStart int64
}

func readHeader(f *os.File, path string) (*stHeader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	var hlen uint64
	if err := binary.Read(f, binary.LittleEndian, &hlen); err != nil {
		return nil, fmt.Errorf("%w %s: header length: %v", ErrSafetensors, path, err)
	}
	if hlen > maxHeader || int64(hlen)+8 > st.Size() {
		return nil, fmt.Errorf("%w %s: header length %d out of range (file %d bytes)", ErrSafetensors, path, hlen, st.Size())
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(f, hb); err != nil {
		return nil, fmt.Errorf("%w %s: header: %v", ErrSafetensors, path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hb, &raw); err != nil {
		return nil, fmt.Errorf("%w %s: header json: %v", ErrSafetensors, path, err)
	}
	h := &stHeader{entries: map[string]stEntry{}, meta: map[string]string{}, dataStart: int64(8 + hlen)}
	dataLen := st.Size() - h.dataStart
	for name, r := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(r, &h.meta); err != nil {
				return nil, fmt.Errorf("%w %s: metadata: %v", ErrSafetensors, path, err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("%w %s: tensor %q: %v", ErrSafetensors, path, name, err)
		}
		n := 1
		for _, d := range e.Shape {
			if d < 0 {
				return nil, fmt.Errorf("%w %s: tensor %q: negative dim", ErrSafetensors, path, name)
			}
			n *= d
		}
		width, ok := dtypeWidth[e.DType]
		if !ok {
			return nil, fmt.Errorf("%w %s: tensor %q: dtype %s not supported (F32, BF16, F16, F64)", ErrSafetensors, path, name, e.DType)
		}
		b, end := e.Offsets[0], e.Offsets[1]
		if b < 0 || end < b || end > dataLen || end-b != int64(n*width) {
			return nil, fmt.Errorf("%w %s: tensor %q: offsets %v do not match shape %v %s (data %d bytes)",
				ErrSafetensors, path, name, e.Offsets, e.Shape, e.DType, dataLen)
		}
		h.entries[name] = e
	}
	return h, nil
}

// ReadSafetensorsHeader reads and validates only the header of a
// .safetensors file: every tensor's dtype and shape, no data.
func ReadSafetensorsHeader(path string) (map[string]TensorInfo, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	defer f.Close()
	h, err := readHeader(f, path)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]TensorInfo, len(h.entries))
	for n, e := range h.entries {
		out[n] = TensorInfo{DType: e.DType, Shape: append([]int{}, e.Shape...)}
	}
	return out, h.meta, nil
}

// ReadSafetensors reads every tensor of a .safetensors file, converting
// F32/BF16/F16/F64 to float32. Metadata is returned separately.
func ReadSafetensors(path string) (map[string]*Tensor, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	defer f.Close()
	h, err := readHeader(f, path)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]*Tensor{}
	for name, e := range h.entries {
		b, end := e.Offsets[0], e.Offsets[1]
		buf := make([]byte, end-b)
		if _, err := f.ReadAt(buf, h.dataStart+b); err != nil {
			return nil, nil, fmt.Errorf("%w %s: tensor %q data: %v", ErrSafetensors, path, name, err)
		}
		t := &Tensor{Dims: append([]int{}, e.Shape...)}
		t.Data = decode(buf, e.DType, t.Size())
		out[name] = t
	}
	return out, h.meta, nil
}

func decode(buf []byte, dtype string, n int) []float32 {
	d := make([]float32, n)
	le := binary.LittleEndian
	for i := range d {
		switch dtype {
		case "F32":
			d[i] = math.Float32frombits(le.Uint32(buf[4*i:]))
		case "F64":
			d[i] = float32(math.Float64frombits(le.Uint64(buf[8*i:])))
		case "BF16":
			d[i] = math.Float32frombits(uint32(le.Uint16(buf[2*i:])) << 16)
		case "F16":
			d[i] = halfToFloat(le.Uint16(buf[2*i:]))
		}
	}
	return d
}

// halfToFloat converts IEEE 754 binary16 to float32, subnormals included.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: value = mant * 2^-24
		v := float32(mant) * float32(math.Ldexp(1, -24))
		if sign != 0 {
			v = -v
		}
		return v
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

// WriteSafetensors writes tensors as F32 in sorted name order (deterministic bytes).
func WriteSafetensors(path string, ts map[string]*Tensor, meta map[string]string) error {
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, n := range names {
		t := ts[n]
		if t.Size() != len(t.Data) {
			return fmt.Errorf("safetensors %s: tensor %q: dims %v imply %d values, have %d", path, n, t.Dims, t.Size(), len(t.Data))
		}
		dims := t.Dims
		if dims == nil {
			dims = []int{}
		}
		header[n] = stEntry{DType: "F32", Shape: dims, Offsets: [2]int64{off, off + int64(4*len(t.Data))}}
		off += int64(4 * len(t.Data))
	}
	hb, err := json.Marshal(header) // encoding/json sorts map keys: deterministic
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	for len(hb)%8 != 0 { // the format recommends 8-byte alignment of the data section
		hb = append(hb, ' ')
	}
	buf := make([]byte, 8, 8+len(hb)+int(off))
	binary.LittleEndian.PutUint64(buf, uint64(len(hb)))
	buf = append(buf, hb...)
	for _, n := range names {
		for _, v := range ts[n].Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	return nil
}
