package model

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
)

// DefaultBackendSpec is the pure-Go backend with ops run sequentially: on a
// 2-core machine it was the fastest configuration, and the parallel op
// scheduler of older configs could deadlock when several graphs ran at once.
const DefaultBackendSpec = "go:ops_sequential"

// backendFactories maps a backend name to its constructor. The XLA backend
// registers itself from a file built only with the "xla" tag (cgo, PJRT).
var backendFactories = map[string]func(config string) (compute.Backend, error){
	gobackend.BackendName: gobackend.New,
}

// NewBackend builds a backend from "name:config", e.g. "go:ops_sequential" or
// "xla:cuda" / "xla:/path/to/pjrt_c_api_cuda_plugin.so" (xla build tag only).
func NewBackend(spec string) (compute.Backend, error) {
	name, config, _ := strings.Cut(spec, ":")
	f, ok := backendFactories[name]
	if !ok {
		known := make([]string, 0, len(backendFactories))
		for k := range backendFactories {
			known = append(known, k)
		}
		hint := ""
		if name == "xla" {
			hint = " (rebuild with -tags xla and CGO_ENABLED=1)"
		}
		return nil, fmt.Errorf("backend %q not compiled in; available: %v%s", name, known, hint)
	}
	b, err := f(config)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", spec, err)
	}
	return b, nil
}

var defaultBackend = sync.OnceValues(func() (compute.Backend, error) {
	spec := os.Getenv("GOMLX_BACKEND")
	if spec == "" {
		spec = DefaultBackendSpec
	}
	return NewBackend(spec)
})

// DefaultBackend is the process-wide backend chosen by $GOMLX_BACKEND
// (default go:ops_sequential), created once.
func DefaultBackend() (compute.Backend, error) { return defaultBackend() }
