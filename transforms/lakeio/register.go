package lakeio

import (
	"context"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/congrad-beam/congrad/schemas"

	// The filesystems lakeio promises: local paths, gs:// and memfs://.
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/gcs"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/local"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/memfs"
)

func init() {
	for _, t := range []reflect.Type{
		reflect.TypeFor[schemas.Prompt](), reflect.TypeFor[schemas.Candidate](), reflect.TypeFor[schemas.Pair](),
		reflect.TypeFor[schemas.Sketch](), reflect.TypeFor[schemas.Decision](), reflect.TypeFor[schemas.DeadLetter](),
		reflect.TypeFor[split](), reflect.TypeFor[posPrompt](), reflect.TypeFor[splitLines](),
	} {
		beam.RegisterType(t)
	}
	register.DoFn3x1[context.Context, []byte, func(split), error](&expandFn{})
	register.DoFn2x1[beam.X, func(int, []byte), error](&shardFn{})
	register.DoFn4x1[context.Context, int, func(*[]byte) bool, func(string), error](&writeShardFn{})
	register.DoFn4x1[context.Context, []byte, func(*string) bool, func(string), error](&finalizeFn{})
	register.DoFn3x1[context.Context, split, func(beam.X), error](&readFn{})
	register.DoFn5x1[context.Context, split, func(string, posPrompt), func(schemas.DeadLetter), func(splitLines), error](&readPromptsFn{})
	register.DoFn6x0[context.Context, string, func(*posPrompt) bool, func(*splitLines) bool, func(schemas.Prompt), func(schemas.DeadLetter)](&dedupPromptsFn{})
	register.Emitter2[string, posPrompt]()
	register.Emitter1[splitLines]()
	register.Iter1[posPrompt]()
	register.Iter1[splitLines]()
	register.Emitter1[split]()
	register.Emitter1[beam.X]()
	register.Emitter1[string]()
	register.Emitter1[schemas.Prompt]()
	register.Emitter1[schemas.DeadLetter]()
	register.Emitter2[int, []byte]()
	register.Iter1[[]byte]()
	register.Iter1[string]()
}
