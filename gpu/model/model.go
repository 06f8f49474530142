package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/gomlx/core/tensors"
)

// Model is a configured transformer with its host weights and tokenizer.
// It is safe for concurrent use; weights are immutable after load.
type Model struct {
	Ref     string // what Open was called with ("tiny", "tiny:seed=7", a directory)
	Config  *Config
	Tok     Tokenizer
	Weights map[string]*Tensor
	Backend compute.Backend

	mu  sync.Mutex
	dev map[dtypes.DType][]*tensors.Tensor // weights as backend tensors, in WeightShapes order
}

// NewTiny builds the embedded tiny model with weights drawn from seed.
func NewTiny(seed uint64) *Model {
	cfg := TinyConfig()
	return &Model{Ref: fmt.Sprintf("tiny:seed=%d", seed), Config: cfg, Tok: ByteTokenizer{}, Weights: InitWeights(cfg, seed)}
}

// InitWeights draws every weight deterministically from seed: norm scales are
// the identity (1 for Llama, 0 for Gemma's 1+w), matrices N(0, 1/fan_in) so
// activations and logits stay O(1) at any width.
func InitWeights(cfg *Config, seed uint64) map[string]*Tensor {
	specs := cfg.WeightShapes()
	ts := make([]*Tensor, len(specs))
	// One goroutine per tensor: each has its own RNG stream, so the result
	// does not depend on scheduling, and a 2B-parameter model inits in seconds.
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, s := range specs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ts[i] = initTensor(cfg, seed, s)
		}()
	}
	wg.Wait()
	w := make(map[string]*Tensor, len(specs))
	for i, s := range specs {
		w[s.Name] = ts[i]
	}
	return w
}

func initTensor(cfg *Config, seed uint64, s WeightSpec) *Tensor {
	t := &Tensor{Dims: s.Dims}
	t.Data = make([]float32, t.Size())
	if len(s.Dims) == 1 {
		if cfg.Family() == Llama {
			for i := range t.Data {
				t.Data[i] = 1
			}
		}
		return t
	}
	std := 1 / math.Sqrt(float64(s.Dims[1]))
	r := NewRNG(seed, s.Name)
	for i := range t.Data {
		t.Data[i] = float32(std * r.Normal())
	}
	return t
}

// CheckWeights verifies that every tensor the config needs is present with the
// right shape; the error names the first offending tensor.
func CheckWeights(cfg *Config, w map[string]*Tensor) error {
	for _, s := range cfg.WeightShapes() {
		t, ok := w[s.Name]
		if !ok {
			return fmt.Errorf("%w: tensor %q missing from checkpoint", ErrConfig, s.Name)
		}
		if !equalDims(t.Dims, s.Dims) {
			return fmt.Errorf("%w: tensor %q has shape %v, config implies %v", ErrConfig, s.Name, t.Dims, s.Dims)
		}
	}
	return nil
}

func equalDims(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Load reads a checkpoint directory: config.json, every *.safetensors file
// (sharded checkpoints included) and tokenizer.json when present (else the
// byte tokenizer, which only fits vocab_size 259).
func Load(dir string) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if len(files) == 0 {
		return nil, fmt.Errorf("load %s: no .safetensors files", dir)
	}
	sort.Strings(files)
	w := map[string]*Tensor{}
	for _, f := range files {
		ts, _, err := ReadSafetensors(f)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
		for n, t := range ts {
			w[n] = t
		}
	}
	if err := CheckWeights(cfg, w); err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	var tok Tokenizer = ByteTokenizer{}
	if tj := filepath.Join(dir, "tokenizer.json"); fileExists(tj) {
		if tok, err = LoadHFTokenizer(tj, cfg); err != nil {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
	} else if cfg.VocabSize != 259 {
		return nil, fmt.Errorf("load %s: no tokenizer.json and vocab_size %d is not the byte tokenizer's 259", dir, cfg.VocabSize)
	}
	return &Model{Ref: dir, Config: cfg, Tok: tok, Weights: w}, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Save writes config.json and model.safetensors (F32) into dir.
func (m *Model) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	return WriteSafetensors(filepath.Join(dir, "model.safetensors"), m.Weights, map[string]string{"format": "pt", "source": m.Ref})
}

// DeviceWeights returns the weights as backend tensors of dtype in
// WeightShapes order, converted once and cached.
func (m *Model) DeviceWeights(dt dtypes.DType) ([]*tensors.Tensor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ts, ok := m.dev[dt]; ok {
		return ts, nil
	}
	specs := m.Config.WeightShapes()
	ts := make([]*tensors.Tensor, len(specs))
	for i, s := range specs {
		w := m.Weights[s.Name]
		switch dt {
		case dtypes.Float32:
			ts[i] = tensors.FromFlatDataAndDimensions(w.Data, w.Dims...)
		case dtypes.Float64:
			d := make([]float64, len(w.Data))
			for j, v := range w.Data {
				d[j] = float64(v)
			}
			ts[i] = tensors.FromFlatDataAndDimensions(d, w.Dims...)
		case dtypes.BFloat16:
			ts[i] = tensors.FromFlatDataAndDimensions(bfloat16.FromFloat32s(w.Data...), w.Dims...)
		default:
			return nil, fmt.Errorf("model: dtype %s not supported (Float32, Float64, BFloat16)", dt)
		}
	}
	if m.dev == nil {
		m.dev = map[dtypes.DType][]*tensors.Tensor{}
	}
	m.dev[dt] = ts
	return ts, nil
}

var (
	openMu    sync.Mutex
	openCache = map[string]*Model{}
)

// Open returns the process-wide model for ref, loading it on first use, so
// Beam DoFns on one worker share one copy. ref is "tiny", "tiny:seed=N" or a
// checkpoint directory. The backend comes from GOMLX_BACKEND (see NewBackend).
func Open(ref string) (*Model, error) {
	openMu.Lock()
	defer openMu.Unlock()
	if m, ok := openCache[ref]; ok {
		return m, nil
	}
	var m *Model
	switch {
	case ref == "tiny" || strings.HasPrefix(ref, "tiny:"):
		seed := uint64(0)
		if rest, ok := strings.CutPrefix(ref, "tiny:seed="); ok {
			s, err := strconv.ParseUint(rest, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("model.Open(%q): bad seed: %w", ref, err)
			}
			seed = s
		} else if ref != "tiny" {
			return nil, fmt.Errorf("model.Open(%q): want tiny or tiny:seed=N", ref)
		}
		m = NewTiny(seed)
		m.Ref = ref
	default:
		var err error
		if m, err = Load(ref); err != nil {
			return nil, fmt.Errorf("model.Open(%q): %w", ref, err)
		}
	}
	b, err := DefaultBackend()
	if err != nil {
		return nil, fmt.Errorf("model.Open(%q): %w", ref, err)
	}
	m.Backend = b
	openCache[ref] = m
	return m, nil
}
