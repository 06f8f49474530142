package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/pipelines"
	"github.com/congrad-beam/congrad/runners"
	sr "github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// checkInputs lists every input glob of cmd before the pipeline is built, so
// a mistyped path fails in one line naming the flag instead of inside a failed
// bundle several screens into the runner's log. (lakeio still checks again on
// the workers, where the pipeline actually reads.)
func checkInputs(ctx context.Context, cmd string, c pipelines.Config) error {
	type input struct{ flag, glob string }
	var ins []input
	or := func(glob, def string) string {
		if glob != "" {
			return glob
		}
		return def
	}
	switch cmd {
	case "run", "generate":
		ins = append(ins, input{"--prompts", c.Prompts})
	case "sketch":
		ins = append(ins, input{"--pairs", or(c.Pairs, c.Glob(pipelines.OutPairs))})
	case "select":
		ins = append(ins,
			input{"--pairs", or(c.Pairs, c.Glob(pipelines.OutPairs))},
			input{"--sketches", or(c.Sketches, c.Glob(pipelines.OutSketches))})
	}
	for _, in := range ins {
		if in.glob == "" {
			return fmt.Errorf("%w: %s is required", errUsage, in.flag)
		}
		files, err := lakeio.Match(ctx, in.glob)
		if err != nil {
			return fmt.Errorf("%s %s: %w", in.flag, in.glob, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("%w: %s: no files match %s", errUsage, in.flag, in.glob)
		}
	}
	return nil
}

// checkModel checks a checkpoint directory without loading its weights:
// config.json parses and validates, every *.safetensors header parses and
// together they hold every tensor the config implies with its shape, and the
// tokenizer loads. tiny and tiny:seed=N are built in. It reads the headers
// only, so a 5 GB checkpoint costs milliseconds.
func checkModel(ref string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: --model=%s: %s", errUsage, ref, fmt.Sprintf(format, a...))
	}
	if err := checkModelRef(ref); err != nil {
		return bad("%v", err)
	}
	if ref == "tiny" || strings.HasPrefix(ref, "tiny:") {
		return nil
	}
	st, err := os.Stat(ref)
	if err != nil || !st.IsDir() {
		return bad("no such directory (want tiny, tiny:seed=N or a Hugging Face checkpoint directory)")
	}
	cfg, err := model.LoadConfig(filepath.Join(ref, "config.json"))
	if err != nil {
		return bad("config.json: %v", oneLine(err))
	}
	files, _ := filepath.Glob(filepath.Join(ref, "*.safetensors"))
	if len(files) == 0 {
		return bad("no *.safetensors files")
	}
	shapes := map[string][]int{}
	for _, f := range files {
		h, err := safetensorsShapes(f)
		if err != nil {
			return bad("%s: %v", filepath.Base(f), err)
		}
		for name, dims := range h {
			shapes[name] = dims
		}
	}
	for _, w := range cfg.WeightShapes() {
		dims, ok := shapes[w.Name]
		if !ok {
			return bad("no tensor %s in the *.safetensors files (config.json says %s)", w.Name, cfg.ModelType)
		}
		if fmt.Sprint(dims) != fmt.Sprint(w.Dims) {
			return bad("tensor %s has shape %v, config.json implies %v", w.Name, dims, w.Dims)
		}
	}
	if tj := filepath.Join(ref, "tokenizer.json"); fileExists(tj) {
		if _, err := model.LoadHFTokenizer(tj, cfg); err != nil {
			return bad("tokenizer.json: %v", oneLine(err))
		}
	} else if cfg.VocabSize != 259 {
		return bad("no tokenizer.json (and vocab_size %d is not the byte tokenizer's 259)", cfg.VocabSize)
	}
	return nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// safetensorsShapes reads the tensor shapes from a safetensors header.
func safetensorsShapes(path string) (map[string][]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("not a safetensors file: %v", err)
	}
	if n > 100<<20 || int64(n)+8 > st.Size() {
		return nil, fmt.Errorf("not a safetensors file: header length %d (file %d bytes)", n, st.Size())
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(f, hb); err != nil {
		return nil, fmt.Errorf("header: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hb, &raw); err != nil {
		return nil, fmt.Errorf("header is not JSON: %v", err)
	}
	out := map[string][]int{}
	for name, v := range raw {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			Shape []int `json:"shape"`
		}
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, fmt.Errorf("tensor %s: %v", name, err)
		}
		out[name] = t.Shape
	}
	return out, nil
}

// checkOut makes sure a local output directory exists and takes files, so
// a typo or a read-only path fails before the pipeline, not in its last
// stage. Remote locations (gs://, memfs://) are left to the writers.
func checkOut(out string) error {
	if strings.Contains(out, "://") {
		return nil
	}
	if st, err := os.Stat(out); err == nil && !st.IsDir() {
		return fmt.Errorf("%w: --out=%s: is a file, not a directory", errUsage, out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("%w: --out=%s: cannot create the directory: %v", errUsage, out, errors.Unwrap(err))
	}
	f, err := os.CreateTemp(out, ".congrad-write-check-*")
	if err != nil {
		return fmt.Errorf("%w: --out=%s: cannot write there: %v", errUsage, out, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// checkBackend sends one test request to --backend_url.
func checkBackend(ctx context.Context, c sr.HTTPConfig) error {
	b, err := sr.NewHTTPBackend(c)
	if err != nil {
		return fmt.Errorf("%w: --backend_url=%s: %v", errUsage, c.BaseURL, err)
	}
	if err := b.Check(ctx); err != nil {
		return fmt.Errorf("%v (--backend_url=%s; --backend_check=false skips this test)", err, c.BaseURL)
	}
	return nil
}

// oneLine keeps an error message on one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// inProcess reports whether the SDK harness runs in this process, so that
// the progress counters see every element.
func inProcess(r runners.Options) bool {
	switch r.Runner {
	case runners.Direct:
		return true
	case runners.Prism:
		if r.Endpoint == "" {
			return true
		}
		fallthrough
	case runners.Universal:
		return r.EnvironmentType == "" || strings.EqualFold(r.EnvironmentType, "LOOPBACK")
	}
	return false
}

// checkLocal checks, before anything starts, what this machine can check:
// the model's files where the gradient stage (or --generator=model) runs
// in this process, and a local --out. A Dataflow or remote job's model path
// names the workers' files, so only its spelling is checked there.
func (o *opts) checkLocal(ro runners.Options) error {
	if ro.DryRun {
		return nil
	}
	needModel := o.cmd == "run" || o.cmd == "sketch" || (o.cmd == "generate" && o.backendURL == "" && o.generator == "model")
	if needModel && inProcess(ro) {
		if err := checkModel(o.modelRef); err != nil {
			return err
		}
	}
	return checkOut(o.out)
}
