package lakeio

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// The test package's one registration point (the package's own is in
// register.go).
func init() {
	register.Function1x1(deadSummary)
	register.Function1x1(promptSummary)
	register.Function1x1(deadWithFirst)
	register.Function1x1(promptText)
	register.Function2x0(malformedLine)
	register.Emitter1[string]()
	register.DoFn2x0[[]byte, func(int)](&benchChunksFn{})
	register.DoFn2x0[int, func(schemas.Pair)](&benchPairsFn{})
	register.DoFn2x0[schemas.Pair, func(int)](&benchCountFn{})
	register.Function2x0(benchTotal)
	register.Emitter1[int]()
	// As the project's own stages do for the records they emit (without it
	// the benchmark's generator emits through reflection).
	register.Emitter1[schemas.Pair]()
}

// testBucket is created in the in-process fake GCS server.
const testBucket = "congrad-test"

// TestMain starts fake-gcs-server in-process, points every GCS client at it
// (STORAGE_EMULATOR_HOST, read by cloud.google.com/go/storage and so by
// Beam's gs filesystem too) and runs the Beam tests on Prism.
func TestMain(m *testing.M) {
	srv, err := startFakeGCS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-gcs-server:", err)
		os.Exit(1)
	}
	code := 0
	func() {
		defer srv.Stop()
		// Prism explicitly: it is ptest's default in v2.77, but the tests
		// rely on the in-process loopback worker (memfs, fake GCS).
		code = ptest.MainRetWithDefault(m, "prism")
	}()
	os.Exit(code)
}

func startFakeGCS() (*fakestorage.Server, error) {
	// Pick the port first: PublicHost must carry it, or object reads (which
	// go to the public XML endpoint) are not routed to the bucket.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: uint16(port),
		PublicHost: fmt.Sprintf("127.0.0.1:%d", port), Writer: nil,
	})
	if err != nil {
		return nil, err
	}
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: testBucket})
	os.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))
	return srv, nil
}
