package model

import (
	"encoding/json"
	"errors"
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
	// GenerationEOS is generation_config.json's eos_token_id, when the
	// checkpoint has one (instruct models often list several ids there).
	GenerationEOS IDList

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
		if !cfg.gemmaLike() {
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
	info := make(map[string]TensorInfo, len(w))
	for n, t := range w {
		info[n] = TensorInfo{DType: "F32", Shape: t.Dims}
	}
	return checkTensorSet(cfg, info)
}

// checkTensorSet checks names and shapes against the config: every tensor
// the config implies must be there with its shape, and every tensor there
// must be used (never silently ignored). Two kinds of extra tensors are let
// through here and checked against their values by checkExtras: RoPE
// inv_freq buffers of older conversions, and lm_head.weight next to tied
// embeddings.
func checkTensorSet(cfg *Config, info map[string]TensorInfo) error {
	hint := ""
	if len(cfg.defaulted) > 0 {
		hint = fmt.Sprintf(" (config.json leaves %s at HF defaults)", strings.Join(cfg.defaulted, ", "))
	}
	need := map[string]bool{}
	for _, s := range cfg.WeightShapes() {
		need[s.Name] = true
		t, ok := info[s.Name]
		if !ok {
			return fmt.Errorf("%w: tensor %q missing from checkpoint%s", ErrConfig, s.Name, hint)
		}
		if !equalDims(t.Shape, s.Dims) {
			return fmt.Errorf("%w: tensor %q has shape %v, config implies %v%s", ErrConfig, s.Name, t.Shape, s.Dims, hint)
		}
	}
	names := make([]string, 0, len(info))
	for n := range info {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case need[n]:
		case n == "lm_head.weight" && cfg.Tied():
			if !equalDims(info[n].Shape, []int{cfg.VocabSize, cfg.HiddenSize}) {
				return fmt.Errorf("%w: tensor %q has shape %v but tie_word_embeddings is true", ErrConfig, n, info[n].Shape)
			}
		case isInvFreq(n):
		default:
			return fmt.Errorf("%w: tensor %q is in the checkpoint but model_type %q with this config does not use it%s",
				ErrConfig, n, cfg.ModelType, hint)
		}
	}
	return nil
}

func isInvFreq(name string) bool {
	return strings.HasPrefix(name, "model.layers.") && strings.HasSuffix(name, ".self_attn.rotary_emb.inv_freq")
}

// checkExtras verifies the tensors checkTensorSet let through and removes
// them: an inv_freq buffer must equal the RoPE frequencies rope_theta gives,
// and a lm_head.weight next to tied embeddings must equal the embeddings
// (HF would silently use the embeddings).
func checkExtras(cfg *Config, w map[string]*Tensor) error {
	for n, t := range w {
		switch {
		case n == "lm_head.weight" && cfg.Tied():
			emb := w["model.embed_tokens.weight"]
			for i, v := range t.Data {
				if math.Float32bits(v) != math.Float32bits(emb.Data[i]) {
					return fmt.Errorf("%w: tensor %q differs from model.embed_tokens.weight but tie_word_embeddings is true (HF would ignore it)", ErrConfig, n)
				}
			}
			delete(w, n)
		case isInvFreq(n):
			d := cfg.HeadDim
			if !equalDims(t.Dims, []int{d / 2}) {
				return fmt.Errorf("%w: tensor %q has shape %v, head_dim %d implies [%d]", ErrConfig, n, t.Dims, d, d/2)
			}
			for i, v := range t.Data {
				want := 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(d))
				if math.Abs(float64(v)-want) > 1e-2*want {
					return fmt.Errorf("%w: tensor %q[%d] = %g, rope_theta %g gives %g", ErrConfig, n, i, v, cfg.RopeTheta, want)
				}
			}
			delete(w, n)
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

// checkpointFiles lists the safetensors files transformers would read from
// dir: model.safetensors, else the shards model.safetensors.index.json names.
// index is the index's weight_map (nil for a single file).
func checkpointFiles(dir string) (files []string, index map[string]string, err error) {
	if single := filepath.Join(dir, "model.safetensors"); fileExists(single) {
		return []string{single}, nil, nil
	}
	ip := filepath.Join(dir, "model.safetensors.index.json")
	b, err := os.ReadFile(ip)
	if err != nil {
		return nil, nil, fmt.Errorf("no model.safetensors or model.safetensors.index.json")
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("model.safetensors.index.json: no weight_map (%v)", err)
	}
	seen := map[string]bool{}
	for _, f := range idx.WeightMap {
		if strings.ContainsAny(f, `/\`) || f == ".." {
			return nil, nil, fmt.Errorf("model.safetensors.index.json: shard %q outside the directory", f)
		}
		if !seen[f] {
			seen[f] = true
			files = append(files, filepath.Join(dir, f))
		}
	}
	sort.Strings(files)
	return files, idx.WeightMap, nil
}

// readHeaders reads the headers of files and checks them against the index:
// every tensor in exactly one file, and where the index says.
func readHeaders(files []string, index map[string]string) (map[string]TensorInfo, error) {
	all := map[string]TensorInfo{}
	where := map[string]string{}
	for _, f := range files {
		h, _, err := ReadSafetensorsHeader(f)
		if err != nil {
			return nil, err
		}
		for n, t := range h {
			if prev, dup := where[n]; dup {
				return nil, fmt.Errorf("tensor %q is in both %s and %s", n, filepath.Base(prev), filepath.Base(f))
			}
			if index != nil && index[n] != filepath.Base(f) {
				return nil, fmt.Errorf("tensor %q is in %s but model.safetensors.index.json says %q", n, filepath.Base(f), index[n])
			}
			where[n] = f
			all[n] = t
		}
	}
	for n, f := range index {
		if _, ok := all[n]; !ok {
			return nil, fmt.Errorf("model.safetensors.index.json lists %q in %s, which does not have it", n, f)
		}
	}
	return all, nil
}

// CheckDir validates a checkpoint directory without loading weights:
// config.json (HF defaults, refused fields), the safetensors headers (every
// tensor the config needs with its shape and a supported dtype, no tensor
// left unused) and the tokenizer (tokenizer.json and tokenizer_config.json,
// or the byte tokenizer when vocab_size is 259). Load does the same checks
// and, with the data, the ones CheckDir cannot do cheaply (a lm_head next to
// tied embeddings must equal them; inv_freq buffers must match rope_theta).
func CheckDir(dir string) error {
	cfg, files, index, err := loadDirConfig(dir)
	if err != nil {
		return err
	}
	info, err := readHeaders(files, index)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if err := checkTensorSet(cfg, info); err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if _, err := loadDirTokenizer(dir, cfg); err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if _, err := loadGenerationEOS(dir); err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	return nil
}

func loadDirConfig(dir string) (*Config, []string, map[string]string, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load %s: %w", dir, err)
	}
	files, index, err := checkpointFiles(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load %s: %w", dir, err)
	}
	return cfg, files, index, nil
}

func loadDirTokenizer(dir string, cfg *Config) (Tokenizer, error) {
	if tj := filepath.Join(dir, "tokenizer.json"); fileExists(tj) {
		return LoadHFTokenizer(tj, cfg)
	}
	if cfg.VocabSize != 259 {
		return nil, fmt.Errorf("no tokenizer.json and vocab_size %d is not the byte tokenizer's 259", cfg.VocabSize)
	}
	return ByteTokenizer{}, nil
}

// Load reads a checkpoint directory as transformers would: config.json with
// HF defaults, model.safetensors or the shards of
// model.safetensors.index.json, and tokenizer.json (else the byte
// tokenizer, which only fits vocab_size 259). Anything it cannot compute
// exactly is an error naming the field, tensor or tokenizer feature.
func Load(dir string) (*Model, error) {
	cfg, files, index, err := loadDirConfig(dir)
	if err != nil {
		return nil, err
	}
	info, err := readHeaders(files, index)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	if err := checkTensorSet(cfg, info); err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	tok, err := loadDirTokenizer(dir, cfg)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
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
	if err := checkExtras(cfg, w); err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	gen, err := loadGenerationEOS(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	return &Model{Ref: dir, Config: cfg, Tok: tok, Weights: w, GenerationEOS: gen}, nil
}

// loadGenerationEOS reads eos_token_id from the optional
// generation_config.json (an int, a list or null).
func loadGenerationEOS(dir string) (IDList, error) {
	p := filepath.Join(dir, "generation_config.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var g struct {
		EOS IDList `json:"eos_token_id"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("generation_config.json: %w", err)
	}
	return g.EOS, nil
}

// StopIDs are the token ids that end a generated answer: the tokenizer's
// EOS, every eos_token_id of config.json and of generation_config.json
// (Llama-3 Instruct ends turns with <|eot_id|>, listed only there), sorted.
func (m *Model) StopIDs() []int {
	seen := map[int]bool{m.Tok.EOS(): true}
	if m.Config != nil {
		for _, id := range m.Config.EOSTokenID {
			seen[id] = true
		}
	}
	for _, id := range m.GenerationEOS {
		seen[id] = true
	}
	ids := make([]int, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
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
