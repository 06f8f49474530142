//go:build tools

// Package deps pins the project's decided dependencies in go.mod so that
// `go mod tidy` keeps them while packages that use them are being written.
// It is never compiled into a binary (build tag "tools").
package deps

import (
	_ "cloud.google.com/go/storage"
	_ "github.com/apache/arrow-go/v18/arrow"
	_ "github.com/apache/arrow-go/v18/parquet/pqarrow"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/gcs"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	_ "github.com/fsouza/fake-gcs-server/fakestorage"
	_ "github.com/gomlx/compute/gobackend"
	_ "github.com/gomlx/go-huggingface/tokenizers"
	_ "github.com/gomlx/gomlx/core/graph"
	_ "gonum.org/v1/gonum/blas/blas32"
)
