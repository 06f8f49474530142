package model

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	in := map[string]*Tensor{
		"a":      {Dims: []int{2, 3}, Data: []float32{1, -2, 3.5, 0, float32(math.Inf(1)), 1e-30}},
		"b.c":    {Dims: []int{1}, Data: []float32{7}},
		"scalar": {Dims: []int{}, Data: []float32{42}},
	}
	if err := WriteSafetensors(p, in, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	out, meta, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" || len(out) != len(in) {
		t.Fatalf("meta %v, %d tensors", meta, len(out))
	}
	for n, want := range in {
		got := out[n]
		if !equalDims(got.Dims, want.Dims) {
			t.Fatalf("%s dims %v want %v", n, got.Dims, want.Dims)
		}
		for i := range want.Data {
			if math.Float32bits(got.Data[i]) != math.Float32bits(want.Data[i]) {
				t.Fatalf("%s[%d] = %v want %v", n, i, got.Data[i], want.Data[i])
			}
		}
	}
	// Bytes are deterministic: a second write is identical.
	p2 := filepath.Join(dir, "y.safetensors")
	_ = WriteSafetensors(p2, in, map[string]string{"k": "v"})
	b1, _ := os.ReadFile(p)
	b2, _ := os.ReadFile(p2)
	if string(b1) != string(b2) {
		t.Fatal("two writes of the same tensors differ")
	}
}

func TestSafetensorsHalfFormatsAndCorruption(t *testing.T) {
	// BF16 1.0 = 0x3F80, F16 1.0 = 0x3C00, F16 -2.0 = 0xC000, F16 smallest subnormal 0x0001.
	hdr := `{"bf":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"h":{"dtype":"F16","shape":[3],"data_offsets":[2,8]}}`
	buf := make([]byte, 8)
	buf[0] = byte(len(hdr))
	buf = append(buf, hdr...)
	buf = append(buf, 0x80, 0x3F, 0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00)
	p := filepath.Join(t.TempDir(), "h.safetensors")
	os.WriteFile(p, buf, 0o644)
	out, _, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	if out["bf"].Data[0] != 1 || out["h"].Data[0] != 1 || out["h"].Data[1] != -2 || out["h"].Data[2] != float32(math.Ldexp(1, -24)) {
		t.Fatalf("decoded %v %v", out["bf"].Data, out["h"].Data)
	}
	// Truncated data must be a typed error, not a panic.
	os.WriteFile(p, buf[:len(buf)-3], 0o644)
	if _, _, err := ReadSafetensors(p); !errors.Is(err, ErrSafetensors) {
		t.Fatalf("truncated file: err = %v", err)
	}
	os.WriteFile(p, []byte{1, 2, 3}, 0o644)
	if _, _, err := ReadSafetensors(p); !errors.Is(err, ErrSafetensors) {
		t.Fatalf("short file: err = %v", err)
	}
}

func TestCheckpointLoadsAndMismatchNamesTensor(t *testing.T) {
	dir := t.TempDir()
	m := NewTiny(3)
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for n, w := range m.Weights {
		if g := got.Weights[n]; g == nil || g.Data[len(g.Data)-1] != w.Data[len(w.Data)-1] {
			t.Fatalf("tensor %s did not round trip", n)
		}
	}
	// Break one tensor's shape: the error names it.
	bad := "model.layers.1.self_attn.k_proj.weight"
	m.Weights[bad] = &Tensor{Dims: []int{16, 64}, Data: make([]float32, 16*64)}
	os.Remove(filepath.Join(dir, "model.safetensors"))
	m.Save(dir)
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), bad) || !errors.Is(err, ErrConfig) {
		t.Fatalf("mismatched shape: err = %v", err)
	}
	delete(m.Weights, bad)
	m.Save(dir)
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("missing tensor: err = %v", err)
	}
}

func TestParseConfigHF(t *testing.T) {
	c, err := ParseConfig([]byte(`{"model_type":"gemma2","vocab_size":256000,"hidden_size":2304,"intermediate_size":9216,
	 "num_hidden_layers":26,"num_attention_heads":8,"num_key_value_heads":4,"head_dim":256,"max_position_embeddings":8192,
	 "hidden_activation":"gelu_pytorch_tanh","eos_token_id":[1,107],"bos_token_id":2,"pad_token_id":0,
	 "query_pre_attn_scalar":256,"attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,"sliding_window":4096}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Family() != Gemma2 || !c.Tied() || c.EOSTokenID[1] != 107 || c.ParamCount() < 2_000_000_000 {
		t.Fatalf("config %+v params %d", c, c.ParamCount())
	}
	for _, bad := range []string{`{"model_type":"gpt2"}`, `{"model_type":"qwen2"}`,
		`{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,"rope_scaling":{"rope_type":"llama3","factor":8.0}}`, `{`,
		`{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,"max_position_embeddings":8}`} {
		if _, err := ParseConfig([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

// Multilingual fixtures, written for this test.
var multilingual = map[string]string{
	"en":    "The cat sleeps on the warm windowsill.",
	"de":    "Größere Äpfel schmecken süßer, oder?",
	"ru":    "Кошка спит на тёплом подоконнике.",
	"el":    "Η γάτα κοιμάται στο ζεστό περβάζι.",
	"ar":    "القطة تنام على حافة النافذة الدافئة.",
	"he":    "החתול ישן על אדן החלון החם.",
	"th":    "แมวนอนอยู่บนขอบหน้าต่างที่อบอุ่น",
	"zh":    "猫在温暖的窗台上睡觉。",
	"ja":    "猫は暖かい窓辺で眠っている。",
	"ko":    "고양이가 따뜻한 창턱에서 잔다.",
	"hi":    "बिल्ली गर्म खिड़की पर सो रही है।",
	"bn":    "বিড়ালটি উষ্ণ জানালায় ঘুমাচ্ছে।",
	"ta":    "பூனை சூடான ஜன்னலில் தூங்குகிறது.",
	"ka":    "კატას თბილ ფანჯარაზე სძინავს.",
	"am":    "ድመቷ በሞቃት መስኮት ላይ ትተኛለች።",
	"emoji": "🐈 sleeps 😴 — ok?",
}

func TestByteTokenizerRoundTripsLanguages(t *testing.T) {
	tok := ByteTokenizer{}
	if len(multilingual) < 14 {
		t.Fatal("need at least 14 languages")
	}
	for lang, s := range multilingual {
		ids := tok.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= 256 {
				t.Fatalf("%s: id %d outside byte range", lang, id)
			}
		}
		withSpecial := append(append([]int{tok.BOS()}, ids...), tok.EOS(), tok.PAD())
		if got := tok.Decode(withSpecial); got != s {
			t.Errorf("%s: round trip %q != %q", lang, got, s)
		}
	}
	// A cut in the middle of a character decodes to valid UTF-8.
	if got := tok.Decode(tok.Encode("ж")[:1]); got != "\uFFFD" {
		t.Errorf("partial rune decoded to %q", got)
	}
}

func TestTinyForwardIsCausalAndDeterministic(t *testing.T) {
	m := NewTiny(1)
	b, err := NewBackend(DefaultBackendSpec)
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := m.DeviceWeights(dtypes.Float32)
	exec, err := NewExec(b, func(in []*Node) *Node {
		w := BindWeights(m.Config, in[1:])
		return Logits(m.Config, w, Hidden(m.Config, w, nil, in[0]))
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(toks []int32) []float32 {
		args := []any{tensors.FromFlatDataAndDimensions(toks, 1, len(toks))}
		for _, w := range ws {
			args = append(args, w)
		}
		out, err := exec.Exec(args...)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.MustCopyFlatData[float32](out[0])
	}
	a := run([]int32{256, 72, 105, 33, 258, 258})
	b2 := run([]int32{256, 72, 105, 40, 50, 60})
	v := m.Config.VocabSize
	for i := 0; i < 3*v; i++ { // positions 0..2 cannot see positions 3..5
		if a[i] != b2[i] {
			t.Fatalf("logit %d changed with a later token: %v vs %v", i, a[i], b2[i])
		}
	}
	if a[3*v] == b2[3*v] {
		t.Fatal("logits at position 3 ignore the token there")
	}
	for _, x := range a {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatal("non-finite logit")
		}
	}
	if c := run([]int32{256, 72, 105, 33, 258, 258}); c[7] != a[7] {
		t.Fatal("not deterministic")
	}
}

func TestNewConfigFillsDefaultsAndValidates(t *testing.T) {
	c, err := NewConfig(Config{ModelType: "llama", VocabSize: 259, HiddenSize: 32, IntermediateSize: 64,
		NumHiddenLayers: 2, NumAttentionHeads: 2, MaxPositionEmbeddings: 32})
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim != 16 || c.NumKeyValueHeads != 2 || !c.Tied() || c.RopeTheta != 10000 || c.Activation() != "silu" {
		t.Errorf("defaults not filled: %+v", c)
	}
	if _, err := NewConfig(Config{ModelType: "llama", VocabSize: 259, HiddenSize: 30, NumAttentionHeads: 4}); !errors.Is(err, ErrConfig) {
		t.Errorf("invalid config: want ErrConfig, got %v", err)
	}
}

func TestGenerationConfigStopIDs(t *testing.T) {
	dir := t.TempDir()
	m := NewTiny(3)
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ids := got.StopIDs(); len(ids) != 1 || ids[0] != ByteEOS {
		t.Fatalf("no generation_config.json: stop ids %v, want [%d]", ids, ByteEOS)
	}
	// Llama-3 Instruct style: several ids, only in generation_config.json.
	gc := filepath.Join(dir, "generation_config.json")
	if err := os.WriteFile(gc, []byte(`{"bos_token_id":256,"eos_token_id":[257,10,33],"do_sample":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = Load(dir); err != nil {
		t.Fatal(err)
	}
	if ids := got.StopIDs(); fmt.Sprint(ids) != "[10 33 257]" {
		t.Fatalf("stop ids %v, want [10 33 257]", ids)
	}
	os.WriteFile(gc, []byte(`{"eos_token_id":"x"}`), 0o644)
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), "generation_config.json") {
		t.Fatalf("malformed generation_config.json: err = %v", err)
	}
	if err = CheckDir(dir); err == nil || !strings.Contains(err.Error(), "generation_config.json") {
		t.Fatalf("CheckDir, malformed generation_config.json: err = %v", err)
	}
}
