// Package runners selects the Beam runner a ConGrad pipeline executes on and
// checks the runner's flag set before anything is submitted.
//
// Beam Go's runners read their configuration from process-wide flags
// (--endpoint, --project, --staging_location, ...). The CLI parses its own
// subcommand flags, so Options is the one place those settings live; Apply
// copies them into Beam's flags after Validate has rejected incomplete sets,
// so a missing staging bucket fails on the laptop, not after a worker boots.
//
//	o := runners.Options{Runner: "prism"}
//	res, err := runners.Run(ctx, o, p)
package runners

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"

	// The runners a ConGrad binary can pick at run time. Importing them
	// registers their names with beam.Run and their flags with package flag.
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/dataflow"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/direct"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal"
)

// Runner names accepted by Options.Runner.
const (
	Prism     = "prism"     // in-process Prism (default); no external service
	Direct    = "direct"    // Beam's deprecated direct runner; simple pipelines only
	Universal = "universal" // any portable job server: a prism process, Flink, Spark
	Dataflow  = "dataflow"  // Google Cloud Dataflow
)

// ErrInvalid is wrapped by every Validate error, so callers can tell a bad
// flag set from a failed run.
var ErrInvalid = errors.New("invalid runner options")

// Options is the runner part of a ConGrad command line. The zero value runs on
// in-process Prism.
type Options struct {
	Runner            string // prism | direct | universal | dataflow (default prism)
	Endpoint          string // job server host:port (universal; optional for prism)
	EnvironmentType   string // LOOPBACK | DOCKER | PROCESS | EXTERNAL (universal default LOOPBACK)
	EnvironmentConfig string // container image or process command for the environment
	JobName           string // optional job name

	// Dataflow.
	Project                string
	Region                 string
	StagingLocation        string   // gs://bucket/path (required)
	TempLocation           string   // gs://bucket/path (default StagingLocation/tmp)
	WorkerMachineType      string   // e.g. g2-standard-8
	WorkerAccelerator      string   // e.g. type:nvidia-l4;count:1;install-nvidia-driver
	DataflowServiceOptions []string // extra --dataflow_service_options entries
	SDKContainerImage      string   // worker container (see deploy/Dockerfile); required with a GPU
	WorkerBinary           string   // prebuilt linux/amd64 worker binary (skips cross-compilation)
	NumWorkers             int64
	MaxNumWorkers          int64
	DryRun                 bool // print the Dataflow job description, do not submit
}

// WorkersInProcess reports whether the workers run in this process (Prism
// or the direct runner in-process, or a LOOPBACK environment), so that they
// share this machine's disk. Call after Validate.
func (o Options) WorkersInProcess() bool {
	switch o.Runner {
	case Prism, Direct:
		return o.EnvironmentType == "" || o.EnvironmentType == "LOOPBACK"
	case Universal:
		return o.EnvironmentType == "LOOPBACK"
	}
	return false
}

// Validate fills defaults and checks that the set is complete for the chosen
// runner. It never contacts a service.
func (o *Options) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	o.Runner = strings.ToLower(strings.TrimSpace(o.Runner))
	if o.Runner == "" {
		o.Runner = Prism
	}
	switch o.EnvironmentType = strings.ToUpper(o.EnvironmentType); o.EnvironmentType {
	case "", "LOOPBACK", "DOCKER", "PROCESS", "EXTERNAL":
	default:
		return bad("--environment_type=%q: want LOOPBACK, DOCKER, PROCESS or EXTERNAL", o.EnvironmentType)
	}
	switch o.Runner {
	case Prism, Direct:
		if o.Runner == Direct && o.Endpoint != "" {
			return bad("--endpoint is not used by the direct runner")
		}
	case Universal:
		if o.Endpoint == "" {
			return bad("--runner=universal needs --endpoint=host:port of a job server (prism, Flink, Spark)")
		}
		if o.EnvironmentType == "" {
			// Our workers are this binary; LOOPBACK runs them in the submitting
			// process, which is what a local prism or Flink job server needs.
			o.EnvironmentType = "LOOPBACK"
		}
	case Dataflow:
		if o.Project == "" {
			return bad("--runner=dataflow needs --project")
		}
		if o.Region == "" {
			return bad("--runner=dataflow needs --region (e.g. us-central1)")
		}
		if !strings.HasPrefix(o.StagingLocation, "gs://") {
			return bad("--runner=dataflow needs --staging_location=gs://bucket/path, got %q", o.StagingLocation)
		}
		if o.TempLocation == "" {
			o.TempLocation = strings.TrimSuffix(o.StagingLocation, "/") + "/tmp"
		}
		if !strings.HasPrefix(o.TempLocation, "gs://") {
			return bad("--temp_location must be a gs:// path, got %q", o.TempLocation)
		}
		if o.EnvironmentType == "LOOPBACK" {
			return bad("--environment_type=LOOPBACK cannot work on Dataflow: workers run in Google's VMs")
		}
		if o.WorkerAccelerator != "" {
			if err := checkAccelerator(o.WorkerAccelerator); err != nil {
				return bad("--worker_accelerator: %v", err)
			}
			if o.SDKContainerImage == "" {
				return bad("--worker_accelerator needs --sdk_container_image: the default Beam image has no CUDA or PJRT plugin (build deploy/Dockerfile)")
			}
		}
		if o.NumWorkers < 0 || o.MaxNumWorkers < 0 {
			return bad("--num_workers and --max_num_workers must be >= 0")
		}
		if o.MaxNumWorkers > 0 && o.NumWorkers > o.MaxNumWorkers {
			return bad("--num_workers=%d exceeds --max_num_workers=%d", o.NumWorkers, o.MaxNumWorkers)
		}
	default:
		return bad("--runner=%q: want prism, direct, universal or dataflow", o.Runner)
	}
	if o.Runner != Dataflow && o.DryRun {
		return bad("--dry_run is only supported by --runner=dataflow")
	}
	return nil
}

// checkAccelerator checks Dataflow's worker_accelerator syntax:
// type:<gpu>;count:<n>[;install-nvidia-driver][;...].
func checkAccelerator(spec string) error {
	var typ string
	count := -1
	for _, part := range strings.Split(spec, ";") {
		k, v, _ := strings.Cut(part, ":")
		switch k {
		case "type":
			typ = v
		case "count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("count %q: want a positive integer", v)
			}
			count = n
		case "install-nvidia-driver", "use_nvidia_mps":
		default:
			if !strings.HasPrefix(k, "install-nvidia-driver") {
				return fmt.Errorf("unknown part %q in %q", part, spec)
			}
		}
	}
	if !strings.HasPrefix(typ, "nvidia-") {
		return fmt.Errorf("%q: want type:nvidia-<gpu> (e.g. nvidia-l4, nvidia-tesla-t4)", spec)
	}
	if count < 1 {
		return fmt.Errorf("%q: missing count:<n>", spec)
	}
	return nil
}

// BeamFlags returns the Beam flag settings that Apply would make, sorted by
// name; they are also what a job description shows.
func (o Options) BeamFlags() [][2]string {
	m := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("endpoint", o.Endpoint)
	set("environment_type", o.EnvironmentType)
	set("environment_config", o.EnvironmentConfig)
	set("job_name", o.JobName)
	if o.Runner == Dataflow {
		set("project", o.Project)
		set("region", o.Region)
		set("staging_location", o.StagingLocation)
		set("temp_location", o.TempLocation)
		set("worker_machine_type", o.WorkerMachineType)
		set("sdk_container_image", o.SDKContainerImage)
		set("worker_binary", o.WorkerBinary)
		svc := append([]string(nil), o.DataflowServiceOptions...)
		if o.WorkerAccelerator != "" {
			svc = append(svc, "worker_accelerator="+o.WorkerAccelerator)
		}
		set("dataflow_service_options", strings.Join(svc, ","))
		if o.NumWorkers > 0 {
			set("num_workers", strconv.FormatInt(o.NumWorkers, 10))
		}
		if o.MaxNumWorkers > 0 {
			set("max_num_workers", strconv.FormatInt(o.MaxNumWorkers, 10))
		}
		if o.DryRun {
			set("dry_run", "true")
		}
	}
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// managed lists every Beam flag Apply may set; Apply resets them all first so
// that one run's settings (say --dry_run) never leak into the next run in the
// same process (tests, or `congrad run` after `congrad sketch`).
var managed = []string{"endpoint", "environment_type", "environment_config", "job_name",
	"project", "region", "staging_location", "temp_location", "worker_machine_type",
	"sdk_container_image", "worker_binary", "dataflow_service_options", "num_workers",
	"max_num_workers", "dry_run"}

// inProcEndpoint is the in-process Prism job server started by the first
// prism run, reused by later runs instead of starting another server.
var inProcEndpoint string

// Apply validates o and copies it into Beam's process-wide flags.
func Apply(o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	for _, name := range managed {
		f := flag.Lookup(name)
		if f == nil {
			return fmt.Errorf("runners: beam flag --%s is not registered (runner package not linked?)", name)
		}
		if err := f.Value.Set(f.DefValue); err != nil {
			return fmt.Errorf("runners: reset --%s: %w", name, err)
		}
	}
	if o.Runner == Prism && o.Endpoint == "" {
		*jobopts.Endpoint = inProcEndpoint
	}
	for _, kv := range o.BeamFlags() {
		if flag.Lookup(kv[0]) == nil {
			return fmt.Errorf("runners: beam flag --%s is not registered (runner package not linked?)", kv[0])
		}
		if err := flag.Set(kv[0], kv[1]); err != nil {
			return fmt.Errorf("runners: set --%s=%s: %w", kv[0], kv[1], err)
		}
	}
	if o.Runner == Prism && o.Endpoint == "" && *jobopts.EnvironmentType == "" {
		// In-process Prism runs the SDK harness in this process too.
		*jobopts.EnvironmentType = "loopback"
	}
	return nil
}

// Run validates o, applies it and runs p. beam.Init must have been called
// (the CLI does it first thing, so the same binary can serve as a worker).
func Run(ctx context.Context, o Options, p *beam.Pipeline) (beam.PipelineResult, error) {
	if err := Apply(&o); err != nil {
		return nil, err
	}
	if !beam.Initialized() {
		beam.Init()
	}
	res, err := beam.Run(ctx, o.Runner, p)
	if o.Runner == Prism && o.Endpoint == "" {
		inProcEndpoint = *jobopts.Endpoint
	}
	if err != nil {
		return nil, fmt.Errorf("run on %s: %w", o.Runner, err)
	}
	return res, nil
}
