package sketch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The test vectors of docs/SKETCH.md are generated from the inputs below and
// must appear in the document verbatim, between the markers. If the code or
// the document drifts, TestDocVectors fails. To regenerate after an
// intentional contract change (which also bumps Version):
//
//	CONGRAD_PRINT_VECTORS=1 go test -run TestDocVectors ./congrad/sketch
const (
	docPath     = "../../docs/SKETCH.md"
	beginMarker = "<!-- vectors:begin -->"
	endMarker   = "<!-- vectors:end -->"
)

func f32s(v []float32) string {
	hex := make([]string, len(v))
	dec := make([]string, len(v))
	for i, x := range v {
		hex[i] = fmt.Sprintf("0x%08x", math.Float32bits(x))
		dec[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return "[" + strings.Join(hex, " ") + "] = [" + strings.Join(dec, " ") + "]"
}

func vectorLines(t testing.TB) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	for _, p := range []string{"", "w", "layers.0.attn.q_proj.lora_B"} {
		add("fnv1a64(%q) = 0x%016x", p, fnv1a64(p))
	}
	for _, c := range []struct {
		seed uint64
		p    string
	}{{0, "w"}, {42, "w"}, {0, "layers.0.attn.q_proj.lora_B"}} {
		add("ParamKey(seed=%d, %q) = 0x%016x", c.seed, c.p, ParamKey(c.seed, c.p))
	}
	for _, n := range []uint64{0, 1, 2} {
		add("sm(key=0x0000000000000000, n=%d) = 0x%016x", n, sm(0, n))
	}
	cs := Spec{Method: CountSketch, K: 8192, Seed: 0, Version: Version}
	cs7 := Spec{Method: CountSketch, K: 10, Seed: 7, Version: Version}
	for _, c := range []struct {
		s Spec
		p string
		j int
	}{{cs, "w", 0}, {cs, "w", 1}, {cs, "w", 1000000}, {cs, "layers.0.attn.q_proj.lora_B", 5}, {cs7, "w", 0}, {cs7, "w", 3}} {
		b, sg := c.s.Bucket(c.p, c.j)
		x := sm(ParamKey(c.s.Seed, c.p), uint64(c.j))
		add("Bucket(%s, %q, j=%d) = x=0x%016x bucket=%d sign=%+g", c.s, c.p, c.j, x, b, sg)
	}
	g := Spec{Method: Gaussian, K: 5, Seed: 7, Version: Version}
	for _, j := range []int{0, 1, 123456} {
		col := make([]float32, g.K)
		g.GaussianColumn("w", j, col)
		add("GaussianColumn(%s, %q, j=%d) = %s", g, "w", j, f32s(col))
	}
	type blk struct {
		p   string
		off int
		v   []float32
	}
	for _, c := range []struct {
		s      Spec
		blocks []blk
	}{
		{Spec{CountSketch, 4, 1, Version}, []blk{{"a", 0, []float32{1, 2, 3, 4, 5, 6}}, {"b", 0, []float32{0.5, -1, 0.25}}}},
		{Spec{CountSketch, 3, 0, Version}, []blk{{"w", 10, []float32{1e-3, -2.5e7, 3.25, 1e-40}}}},
		{Spec{Gaussian, 3, 2, Version}, []blk{{"a", 0, []float32{1, -2}}, {"b", 4, []float32{0.5}}}},
	} {
		sk, err := New(c.s)
		if err != nil {
			t.Fatal(err)
		}
		var desc []string
		for _, b := range c.blocks {
			if err := sk.Add(b.p, b.off, b.v); err != nil {
				t.Fatal(err)
			}
			vs := make([]string, len(b.v))
			for i, x := range b.v {
				vs[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
			}
			desc = append(desc, fmt.Sprintf("%q@%d=[%s]", b.p, b.off, strings.Join(vs, " ")))
		}
		add("Sketch(%s, %s) = %s", c.s, strings.Join(desc, ", "), f32s(sk.Sketch()))
	}
	return out
}

func TestDocVectors(t *testing.T) {
	want := vectorLines(t)
	if os.Getenv("CONGRAD_PRINT_VECTORS") != "" {
		fmt.Println(beginMarker + "\n```\n" + strings.Join(want, "\n") + "\n```\n" + endMarker)
	}
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("the sketch contract document must exist: %v", err)
	}
	text := string(doc)
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if i < 0 || j < i {
		t.Fatalf("%s: no %s ... %s section", docPath, beginMarker, endMarker)
	}
	var got []string
	for _, line := range strings.Split(text[i+len(beginMarker):j], "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "```" {
			got = append(got, line)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s has %d vector lines, code gives %d", docPath, len(got), len(want))
	}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("vector %d drifted:\n doc:  %s\n code: %s", k, got[k], want[k])
		}
	}
}

// childEnv names the file a re-executed test binary writes its sketches to.
const childEnv = "CONGRAD_SKETCH_CHILD_OUT"

func TestMain(m *testing.M) {
	if out := os.Getenv(childEnv); out != "" {
		b, err := childSketches()
		if err == nil {
			err = os.WriteFile(out, b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childSketches sketches a fixed pseudo-random gradient with both methods and
// returns the sketches' little-endian float32 bytes.
func childSketches() ([]byte, error) {
	var buf bytes.Buffer
	for _, s := range []Spec{{CountSketch, 8192, 12345, Version}, {Gaussian, 128, 12345, Version}} {
		sk, err := New(s)
		if err != nil {
			return nil, err
		}
		n := 200000
		if s.Method == Gaussian {
			n = 3000
		}
		g := make([]float32, n)
		z := uint64(99)
		for i := range g {
			z = mix(z + golden)
			g[i] = float32(int64(z>>40)-(1<<23)) * 0x1p-30
		}
		if err := sk.Add("model.layers.0.mlp", 0, g); err != nil {
			return nil, err
		}
		if err := binary.Write(&buf, binary.LittleEndian, sk.Sketch()); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// TestCrossProcessBitIdentical re-executes this test binary twice (with
// different GOMAXPROCS) and checks that both processes write the same sketch
// bytes as this one.
func TestCrossProcessBitIdentical(t *testing.T) {
	want, err := childSketches()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i, procs := range []string{"1", "2"} {
		out := filepath.Join(dir, fmt.Sprintf("child%d.bin", i))
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+out, "GOMAXPROCS="+procs)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, b)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("child %d wrote different sketch bytes (%d vs %d bytes)", i, len(got), len(want))
		}
	}
}
