package bench

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// DeviceMem is the peak device memory as the backend reports it.
//
// The XLA backend (go-xla) logs, at klog verbosity 1, XLA's compiled memory
// statistics of every program it compiles ("Memory usage: On Device:
// [Code:…, Inputs:…, Outputs:…, Aliases:…, Temporary:…]"). PeakMiB is the
// largest arguments + outputs + temporaries − aliases + code over the
// programs of the run: what XLA's buffer assignment needs on the device for
// the biggest program, weights included (they are arguments). It leaves out
// the CUDA context, cuBLAS/cuDNN workspaces and allocator slack, which
// gpu-check.sh's nvidia-smi sample includes. go-xla gives no other way to
// the PJRT device memory statistics (PJRT_Device_MemoryStats is not
// wrapped), and its figures are rounded by go-humanize to 2 significant
// digits.
type DeviceMem struct {
	PeakMiB     float64
	Programs    int    // compiled programs that reported statistics
	Unavailable string // why there is no figure, when there is none
}

// Line renders the figure as gpu-check.sh prints it.
func (d DeviceMem) Line() string {
	if d.Unavailable != "" {
		return "device_peak_mem=unavailable (" + d.Unavailable + ")"
	}
	return fmt.Sprintf("device_peak_mem_mib=%.0f (XLA compiled memory stats: max over %d programs of args+outputs+temp-aliases+code)", d.PeakMiB, d.Programs)
}

var (
	xlaMemLine = regexp.MustCompile(`Memory usage: On Device: \[([^\]]*)\]`)
	xlaMemItem = regexp.MustCompile(`(\w+):\s*([0-9.]+)\s*([kKMGTPE]?i?B)`)
)

// parseXLAMemStats returns the device bytes of one "Memory usage" line.
func parseXLAMemStats(line string) (int64, bool) {
	m := xlaMemLine.FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	var total float64
	found := 0
	for _, it := range xlaMemItem.FindAllStringSubmatch(m[1], -1) {
		v, err := strconv.ParseFloat(it[2], 64)
		if err != nil {
			return 0, false
		}
		v *= unitBytes(it[3])
		switch it[1] {
		case "Code", "Inputs", "Outputs", "Temporary":
			total += v
			found++
		case "Aliases":
			total -= v
		}
	}
	if found == 0 {
		return 0, false
	}
	return int64(max(total, 0)), true
}

// unitBytes: go-humanize's SI units (kB = 1000 B), and IEC ones for safety.
func unitBytes(u string) float64 {
	mul := 1000.0
	if strings.Contains(u, "i") {
		mul = 1024
	}
	switch strings.ToUpper(u[:1]) {
	case "K":
		return mul
	case "M":
		return mul * mul
	case "G":
		return mul * mul * mul
	case "T":
		return mul * mul * mul * mul
	case "P":
		return mul * mul * mul * mul * mul
	case "E":
		return mul * mul * mul * mul * mul * mul
	}
	return 1
}

// memCapture receives klog's output line by line: forwards each line to log
// and keeps the largest XLA device memory figure.
type memCapture struct {
	mu       sync.Mutex
	log      io.Writer
	pending  []byte
	peak     int64
	programs int
}

func (m *memCapture) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending = append(m.pending, p...)
	for {
		i := bytes.IndexByte(m.pending, '\n')
		if i < 0 {
			break
		}
		line := string(m.pending[:i])
		m.pending = m.pending[i+1:]
		b, ok := parseXLAMemStats(line)
		if ok {
			m.programs++
			m.peak = max(m.peak, b)
		}
		if ok || !strings.HasPrefix(line, "I") { // memory lines, warnings and errors
			fmt.Fprintln(m.log, "backend-log:", line)
		}
	}
	return len(p), nil
}

var klogMu sync.Mutex

// captureBackendLog routes klog (used by go-xla) to a memCapture until the
// returned function restores klog's defaults and returns what was seen.
// Verbosity 1 is turned on for files named executable.go only (go-xla's
// compute/xla/executable.go logs the statistics there): the Go backend logs
// every op at verbosity 1, which would slow it down.
func captureBackendLog(log io.Writer) func() DeviceMem {
	klogMu.Lock()
	m := &memCapture{log: log}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	set := func(k, v string) { _ = fs.Set(k, v) }
	set("vmodule", "executable=1")
	set("logtostderr", "false")
	set("alsologtostderr", "false")
	set("stderrthreshold", "FATAL")
	// The INFO stream carries every severity; the others would repeat them.
	klog.SetOutputBySeverity("INFO", m)
	for _, s := range []string{"WARNING", "ERROR", "FATAL"} {
		klog.SetOutputBySeverity(s, io.Discard)
	}
	return func() DeviceMem {
		klog.Flush()
		set("vmodule", "")
		set("logtostderr", "true")
		set("stderrthreshold", "ERROR")
		klog.SetOutput(os.Stderr)
		klogMu.Unlock()
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.programs == 0 {
			return DeviceMem{}
		}
		return DeviceMem{PeakMiB: float64(m.peak) / (1 << 20), Programs: m.programs}
	}
}
