package runners

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/fsouza/fake-gcs-server/fakestorage"
)

func square(x int) int { return x * x }

func init() {
	register.Function1x1(square)
}

// squares is the pipeline every runner test submits: the squares of 1..n,
// checked inside the pipeline by passert, so a runner that drops or
// duplicates elements fails the job.
func squares(n int) *beam.Pipeline {
	p, s := beam.NewPipelineWithRoot()
	in := make([]int, n)
	want := make([]any, n)
	for i := range in {
		in[i] = i + 1
		want[i] = (i + 1) * (i + 1)
	}
	out := beam.ParDo(s, square, beam.CreateList(s, in))
	passert.Equals(s, out, want...)
	return p
}

func TestValidate(t *testing.T) {
	df := func(mod func(*Options)) Options {
		o := Options{Runner: "dataflow", Project: "p", Region: "us-central1", StagingLocation: "gs://b/stage"}
		if mod != nil {
			mod(&o)
		}
		return o
	}
	cases := []struct {
		name    string
		o       Options
		wantErr string // substring; "" means valid
	}{
		{"zero is prism", Options{}, ""},
		{"direct", Options{Runner: "Direct"}, ""},
		{"unknown runner", Options{Runner: "spark-ish"}, "want prism, direct"},
		{"universal needs endpoint", Options{Runner: "universal"}, "needs --endpoint"},
		{"universal ok", Options{Runner: "universal", Endpoint: "localhost:8073"}, ""},
		{"bad env", Options{Runner: "universal", Endpoint: "x:1", EnvironmentType: "vm"}, "environment_type"},
		{"dataflow ok", df(nil), ""},
		{"dataflow no project", df(func(o *Options) { o.Project = "" }), "needs --project"},
		{"dataflow no region", df(func(o *Options) { o.Region = "" }), "needs --region"},
		{"dataflow local staging", df(func(o *Options) { o.StagingLocation = "/tmp/x" }), "staging_location"},
		{"dataflow bad temp", df(func(o *Options) { o.TempLocation = "/tmp/x" }), "temp_location"},
		{"dataflow loopback", df(func(o *Options) { o.EnvironmentType = "loopback" }), "LOOPBACK cannot"},
		{"gpu without image", df(func(o *Options) { o.WorkerAccelerator = "type:nvidia-l4;count:1;install-nvidia-driver" }), "sdk_container_image"},
		{"gpu ok", df(func(o *Options) {
			o.WorkerAccelerator = "type:nvidia-l4;count:1;install-nvidia-driver"
			o.SDKContainerImage = "us-docker.pkg.dev/p/r/congrad-gpu:1"
		}), ""},
		{"gpu bad type", df(func(o *Options) { o.WorkerAccelerator = "type:l4;count:1"; o.SDKContainerImage = "i" }), "nvidia-"},
		{"gpu bad count", df(func(o *Options) { o.WorkerAccelerator = "type:nvidia-l4;count:0"; o.SDKContainerImage = "i" }), "count"},
		{"gpu no count", df(func(o *Options) { o.WorkerAccelerator = "type:nvidia-l4"; o.SDKContainerImage = "i" }), "missing count"},
		{"workers", df(func(o *Options) { o.NumWorkers = 5; o.MaxNumWorkers = 2 }), "exceeds"},
		{"dry run elsewhere", Options{DryRun: true}, "only supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			err := o.Validate()
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid containing %q", err, c.wantErr)
			}
		})
	}
}

func TestBeamFlagsDataflow(t *testing.T) {
	o := Options{Runner: "dataflow", Project: "p", Region: "r", StagingLocation: "gs://b/s/",
		WorkerAccelerator: "type:nvidia-l4;count:1;install-nvidia-driver", SDKContainerImage: "img",
		DataflowServiceOptions: []string{"enable_prime"}, NumWorkers: 2, WorkerBinary: "/tmp/w"}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range o.BeamFlags() {
		got[kv[0]] = kv[1]
	}
	want := map[string]string{
		"project": "p", "region": "r", "staging_location": "gs://b/s/", "temp_location": "gs://b/s/tmp",
		"sdk_container_image": "img", "worker_binary": "/tmp/w", "num_workers": "2",
		"dataflow_service_options": "enable_prime,worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("BeamFlags:\n got %v\nwant %v", got, want)
	}
}

func TestPrismInProcess(t *testing.T) {
	for i := 0; i < 2; i++ { // the second run reuses the in-process job server
		if _, err := Run(context.Background(), Options{}, squares(20)); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}

func TestDirect(t *testing.T) {
	if _, err := Run(context.Background(), Options{Runner: Direct}, squares(20)); err != nil {
		t.Fatal(err)
	}
}

// captureLog records Beam log lines so the dry-run job description can be
// inspected offline.
type captureLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (c *captureLog) Log(_ context.Context, _ log.Severity, _ int, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.WriteString(msg)
	c.buf.WriteByte('\n')
}

func TestDataflowDryRun(t *testing.T) {
	// The runner checks the staging bucket's soft-delete policy with a real
	// GCS client; an in-process fake-gcs-server answers it, so the test needs
	// no credentials and no network (a closed port makes the client retry
	// for ever).
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1",
		InitialObjects: []fakestorage.Object{{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "congrad-staging", Name: "jobs/.keep"}}},
	})
	if err != nil {
		t.Fatalf("fake gcs: %v", err)
	}
	defer srv.Stop()
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := &captureLog{}
	log.SetLogger(c)
	defer log.SetLogger(&log.Structural{})
	o := Options{Runner: Dataflow, Project: "congrad-test", Region: "europe-west4",
		StagingLocation: "gs://congrad-staging/jobs", DryRun: true, JobName: "congrad-dryrun",
		WorkerMachineType: "g2-standard-8", SDKContainerImage: "europe-docker.pkg.dev/congrad-test/congrad/gpu:dev",
		WorkerAccelerator: "type:nvidia-l4;count:1;install-nvidia-driver", WorkerBinary: "/tmp/congrad-worker"}
	res, err := Run(ctx, o, squares(3))
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if res != nil {
		t.Fatalf("dry run returned a job result; want nothing submitted")
	}
	out := c.buf.String()
	for _, want := range []string{`"name": "congrad-dryrun"`, `"projectId": "congrad-test"`,
		"worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver", "g2-standard-8",
		"gs://congrad-staging/jobs/tmp", "europe-docker.pkg.dev/congrad-test/congrad/gpu:dev"} {
		if !strings.Contains(out, want) {
			t.Errorf("job description lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("captured log:\n%s", out)
	}
}

// PrismBinary returns a prism job-server binary: $CONGRAD_PRISM_BIN when CI
// has built one, else it builds Beam's cmd/prism into dir.
func prismBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CONGRAD_PRISM_BIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "prism")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/apache/beam/sdks/v2/go/cmd/prism")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build prism: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartJobServer starts prism as a separate process on a free loopback port
// and returns its endpoint; the process is killed when the test ends.
func startJobServer(t *testing.T) string {
	t.Helper()
	bin := prismBinary(t)
	port := freePort(t)
	cmd := exec.Command(bin, fmt.Sprintf("--job_port=%d", port), "--serve_http=false",
		"--idle_shutdown_timeout=5m", "--log_level=warn")
	var errBuf strings.Builder
	cmd.Stdout, cmd.Stderr = &errBuf, &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prism: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("prism job server did not listen on %s: %v\n%s", addr, err, errBuf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUniversalSeparateJobServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a prism job server")
	}
	ep := startJobServer(t)
	o := Options{Runner: Universal, Endpoint: ep, EnvironmentType: "loopback", JobName: "congrad-universal"}
	if _, err := Run(context.Background(), o, squares(50)); err != nil {
		t.Fatalf("universal run on %s: %v", ep, err)
	}
	// A pipeline whose assertion fails must fail through the job server too,
	// or the test above proves nothing.
	p, s := beam.NewPipelineWithRoot()
	passert.Equals(s, beam.ParDo(s, square, beam.Create(s, 2)), 5)
	if _, err := Run(context.Background(), o, p); err == nil {
		t.Fatal("failing pipeline succeeded through the job server")
	}
	// And in-process prism still works after the universal run.
	if _, err := Run(context.Background(), Options{}, squares(5)); err != nil {
		t.Fatalf("prism after universal: %v", err)
	}
}
