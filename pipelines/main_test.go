package pipelines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/gradients"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

const gcsBucket = "congrad-pipelines"

var gcs *fakestorage.Server

// TestMain runs fake-gcs-server in-process (STORAGE_EMULATOR_HOST points
// every GCS client, Beam's gs filesystem included, at it) and the pipelines
// on Prism with loopback workers in this process.
func TestMain(m *testing.M) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	gcs, err = fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1",
		Port: uint16(port), PublicHost: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-gcs-server:", err)
		os.Exit(1)
	}
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: gcsBucket})
	os.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(gcs.URL(), "http://"))
	code := ptest.MainRetWithDefault(m, "prism")
	gcs.Stop()
	os.Exit(code)
}

const testK = 64

func testSpec() sketch.Spec {
	s := sketch.DefaultSpec()
	s.K = testK
	return s
}

// synthLake builds n pairs per language and their sketches (congrad/sketch
// over random gradients with per-language drift, two languages opposed),
// plus bad rows: a pair without sketch, a NaN sketch, an orphan sketch.
func synthLake(t testing.TB, perLang int) ([]schemas.Pair, []schemas.Sketch, int) {
	t.Helper()
	sk, err := sketch.New(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	langs := []string{"ar", "de", "en", "hi", "ja", "th"}
	base := map[string][]float32{}
	for i, l := range langs {
		b := make([]float32, 256)
		for j := range b {
			b[j] = float32(rng.NormFloat64())
			if i == 1 {
				b[j] = -base["ar"][j] + 0.4*b[j]
			}
		}
		base[l] = b
	}
	var pairs []schemas.Pair
	var sks []schemas.Sketch
	g := make([]float32, 256)
	for _, l := range langs {
		for i := 0; i < perLang; i++ {
			for j := range g {
				g[j] = 0.3*base[l][j] + float32(rng.NormFloat64())
			}
			sk.Reset()
			if err := sk.Add("lora", 0, g); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%s-%05d", l, i)
			pairs = append(pairs, schemas.Pair{PairID: id, PromptID: fmt.Sprint(i), Lang: l, Prompt: "prompt " + id,
				Chosen: "good " + id, Rejected: "bad " + id, ChosenScore: 4, RejectedScore: 1, Margin: 3,
				ChosenScores: []float64{4}, RejectedScores: []float64{1}, RefChosenLogp: math.NaN(), RefRejectedLogp: math.NaN()})
			v := sk.Sketch()
			sks = append(sks, schemas.Sketch{PairID: id, Lang: l, Values: v, RefChosenLogp: -1, RefRejectedLogp: -2})
		}
	}
	bad := 0
	pairs = append(pairs, schemas.Pair{PairID: "zz-nosketch", Lang: "en", Prompt: "p", Chosen: "c", Rejected: "r"})
	bad++
	nan := make([]float32, testK)
	nan[1] = float32(math.NaN())
	pairs = append(pairs, schemas.Pair{PairID: "zz-nan", Lang: "de", Prompt: "p", Chosen: "c", Rejected: "r"})
	sks = append(sks, schemas.Sketch{PairID: "zz-nan", Lang: "de", Values: nan})
	bad++
	orphan := make([]float32, testK)
	orphan[0] = 1
	sks = append(sks, schemas.Sketch{PairID: "zz-orphan", Lang: "en", Values: orphan})
	return pairs, sks, bad
}

// writeLake writes pairs and sketches under dir as the sketch stage would.
func writeLake(t testing.TB, dir string, pairs []schemas.Pair, sks []schemas.Sketch) {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	lakeio.Write(s, dir+"/"+OutPairs, beam.CreateList(s, pairs), lakeio.WriteOptions{Shards: 2})
	lakeio.Write(s, dir+"/"+OutSketches, beam.CreateList(s, sks), lakeio.WriteOptions{Shards: 2,
		SketchK: testK, SketchSpec: testSpec().String()})
	if err := ptest.Run(p); err != nil {
		t.Fatalf("write lake %s: %v", dir, err)
	}
}

// selectConfig: variant is a keep rule, or "ema" (positive rule over the
// EMA aggregate).
func selectConfig(dir string, variant string) Config {
	rule, agg := keep.Rule(variant), "mean"
	if variant == "ema" {
		rule, agg = keep.Positive, "ema"
	}
	return Config{Out: dir, Shards: 3, Gradients: gradients.Options{Spec: testSpec()},
		Select:  SelectOptions{Spec: testSpec(), Seed: 7, Aggregate: agg, Keep: keep.Options{Rule: rule, Rho: 0.5}},
		Options: map[string]string{"variant": variant}}
}

// runSelect runs the select pipeline and returns its Beam counters summed
// by namespace/name.
func runSelect(t testing.TB, c Config) map[string]int64 {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	if err := BuildSelect(s, c); err != nil {
		t.Fatalf("build select: %v", err)
	}
	res, err := ptest.RunWithMetrics(p)
	if err != nil {
		t.Fatalf("select on %s: %v", c.Out, err)
	}
	m := map[string]int64{}
	for _, cr := range res.Metrics().AllMetrics().Counters() {
		m[cr.Key.Namespace+"/"+cr.Key.Name] += cr.Result()
	}
	return m
}

// outputs returns name -> bytes of every file under a local dir.
func outputs(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rows(t testing.TB, glob string) int64 {
	t.Helper()
	files, _ := filepath.Glob(glob)
	if len(files) == 0 {
		t.Fatalf("no files match %s", glob)
	}
	var n int64
	for _, f := range files {
		r, err := file.OpenParquetFile(f, false)
		if err != nil {
			t.Fatalf("open %s: %v", f, err)
		}
		n += r.NumRows()
		r.Close()
	}
	return n
}

type reportTotals struct {
	Totals map[string]map[string]int64 `json:"totals"`
	Langs  []string                    `json:"langs"`
}

func readReport(t testing.TB, dir string) reportTotals {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, OutReportDir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	var r reportTotals
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSelectAccountingDeterminismAndGCS(t *testing.T) {
	pairs, sks, bad := synthLake(t, 40)
	for _, rule := range []string{"positive", "top", "global-top", "ema"} {
		t.Run(rule, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			writeLake(t, a, pairs, sks)
			writeLake(t, b, pairs, sks)
			metrics := runSelect(t, selectConfig(a, rule))
			runSelect(t, selectConfig(b, rule))

			// Accounting: files, report and input agree.
			c := selectConfig(a, rule)
			kept, dropped := rows(t, c.Glob(OutKept)), rows(t, c.Glob(OutDropped))
			dead := rows(t, c.Glob(OutDeadSelect))
			if kept == 0 || dropped == 0 {
				t.Fatalf("degenerate: kept=%d dropped=%d", kept, dropped)
			}
			// Dead rows: one per dead pair and one per rejected sketch row
			// (the NaN sketch and the orphan).
			deadSketches := int64(2)
			if kept+dropped+dead-deadSketches != int64(len(pairs)) {
				t.Fatalf("accounting: kept %d + dropped %d + dead %d - dead sketches %d != %d pairs", kept, dropped, dead, deadSketches, len(pairs))
			}
			if dead-deadSketches != int64(bad) {
				t.Fatalf("dead pairs = %d, want %d", dead-deadSketches, bad)
			}
			if d := rows(t, c.Glob(OutDecisions)); d != kept+dropped {
				t.Fatalf("decisions %d != kept+dropped %d", d, kept+dropped)
			}
			r := readReport(t, a)
			sel := r.Totals["select"]
			if sel["kept"] != kept || sel["dropped"] != dropped || sel["dead"] != dead-deadSketches || sel["pairs_in"] != int64(len(pairs)) ||
				sel["sketches_in"] != int64(len(sks)) || sel["sketches_dead"] != deadSketches ||
				sel["sketches_scored"]+sel["sketches_unscorable"]+sel["sketches_dead"] != sel["sketches_in"] {
				t.Fatalf("report totals %v vs files kept=%d dropped=%d dead=%d", sel, kept, dropped, dead)
			}
			// The same accounting in Beam metrics.
			if metrics["congrad.filter/kept"] != kept || metrics["congrad.filter/dropped"] != dropped ||
				metrics["congrad.filter/dead"] != dead-deadSketches ||
				metrics["congrad.progress/select/pairs_in"] != int64(len(pairs)) {
				t.Fatalf("Beam metrics %v vs files kept=%d dropped=%d dead=%d", metrics, kept, dropped, dead)
			}
			if len(r.Langs) != 6 {
				t.Fatalf("report langs %v", r.Langs)
			}

			// Determinism: a second run gives byte-identical files.
			oa, ob := outputs(t, a), outputs(t, b)
			if len(oa) != len(ob) || len(oa) < 10 {
				t.Fatalf("runs wrote %d and %d files", len(oa), len(ob))
			}
			for name, data := range oa {
				if !bytes.Equal(data, ob[name]) {
					t.Errorf("%s differs between two runs", name)
				}
			}

			// gs:// (fake-gcs-server) gives the same bytes as local paths.
			prefix := fmt.Sprintf("gs://%s/%s", gcsBucket, rule)
			writeLake(t, prefix, pairs, sks)
			runSelect(t, selectConfig(prefix, rule))
			objs, _, err := gcs.ListObjectsWithOptions(gcsBucket, fakestorage.ListOptions{Prefix: rule + "/"})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]byte{}
			for _, o := range objs {
				obj, err := gcs.GetObject(gcsBucket, o.Name)
				if err != nil {
					t.Fatal(err)
				}
				got[strings.TrimPrefix(o.Name, rule+"/")] = obj.Content
			}
			var names []string
			for name := range oa {
				names = append(names, name)
				if !bytes.Equal(oa[name], got[name]) {
					t.Errorf("gs:// %s differs from the local file (%d vs %d bytes)", name, len(got[name]), len(oa[name]))
				}
			}
			if len(got) != len(oa) {
				sort.Strings(names)
				t.Errorf("gs:// has %d files, local %d (%v)", len(got), len(oa), names)
			}
		})
	}
}
