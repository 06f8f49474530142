//go:build xla && cgo

package model

import "github.com/gomlx/go-xla/compute/xla"

// With -tags xla the XLA/PJRT backend is available as GOMLX_BACKEND=xla:<plugin>,
// where <plugin> is "cuda" (installed PJRT plugin) or a path to the plugin .so.
func init() { backendFactories[xla.BackendName] = xla.New }
