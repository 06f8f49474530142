package accum

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/congrad-beam/congrad/congrad/internal/exact"
)

func randVec(r *rand.Rand, k int) []float32 {
	v := make([]float32, k)
	for i := range v {
		v[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(10)-5)))
	}
	return v
}

// mergeTree adds vs into fresh accumulators, one per random group, then
// merges them in a random order and tree shape.
func meanRandomTree(t *testing.T, r *rand.Rand, k int, vs [][]float32) *Mean {
	t.Helper()
	groups := 1 + r.IntN(len(vs))
	accs := make([]*Mean, groups)
	for i := range accs {
		accs[i] = NewMean(k)
	}
	for _, i := range r.Perm(len(vs)) {
		if err := accs[r.IntN(groups)].Add(vs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for len(accs) > 1 {
		i, j := r.IntN(len(accs)), r.IntN(len(accs)-1)
		if j >= i {
			j++
		}
		if err := accs[i].Merge(accs[j]); err != nil {
			t.Fatal(err)
		}
		accs = append(accs[:j], accs[j+1:]...)
	}
	return accs[0]
}

func TestMeanBitIdenticalAnyOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	k := 64
	vs := make([][]float32, 300)
	for i := range vs {
		vs[i] = randVec(r, k)
	}
	ref := meanRandomTree(t, r, k, vs)
	want, err := ref.Result()
	if err != nil {
		t.Fatal(err)
	}
	for trial := 0; trial < 30; trial++ {
		got, err := meanRandomTree(t, r, k, vs).Result()
		if err != nil {
			t.Fatal(err)
		}
		for c := range want {
			if math.Float32bits(got[c]) != math.Float32bits(want[c]) {
				t.Fatalf("trial %d coord %d: %v vs %v", trial, c, got[c], want[c])
			}
		}
	}
	// And the result is the correctly rounded exact mean.
	for c := 0; c < k; c++ {
		sum := new(big.Rat)
		for _, v := range vs {
			sum.Add(sum, new(big.Rat).SetFloat64(float64(v[c])))
		}
		sum.Quo(sum, new(big.Rat).SetInt64(int64(len(vs))))
		w, _ := sum.Float32()
		if math.Float32bits(w) != math.Float32bits(want[c]) {
			t.Fatalf("coord %d: mean %v, exact mean rounds to %v", c, want[c], w)
		}
	}
	// A float32 running sum would not have been exact here (sanity check
	// that the test data can tell the difference).
	differs := false
	for c := 0; c < k && !differs; c++ {
		var fwd, bwd float32
		for i := range vs {
			fwd += vs[i][c]
			bwd += vs[len(vs)-1-i][c]
		}
		differs = fwd != bwd
	}
	if !differs {
		t.Fatal("test data too easy: naive float32 sums are order-independent")
	}
}

func TestMeanErrors(t *testing.T) {
	m := NewMean(3)
	if _, err := m.Result(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty Result: %v", err)
	}
	if err := m.Add([]float32{1, 2}); !errors.Is(err, ErrDim) {
		t.Fatalf("short vector: %v", err)
	}
	if err := m.Add([]float32{1, float32(math.NaN()), 3}); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("NaN: %v", err)
	}
	if err := m.Add([]float32{1, float32(math.Inf(-1)), 3}); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("Inf: %v", err)
	}
	if m.N != 0 {
		t.Fatalf("failed Adds counted: N=%d", m.N)
	}
	if err := m.Add([]float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Result(); got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("failed Adds changed the state: %v", got)
	}
	if err := m.Merge(NewMean(4)); !errors.Is(err, ErrDim) {
		t.Fatalf("merge k mismatch: %v", err)
	}
	if err := NewMean(0).Add(nil); !errors.Is(err, ErrBadParam) {
		t.Fatalf("k=0: %v", err)
	}
	bad := &Mean{K: 2, Limbs: make([]int64, 3)} // corrupted/decoded state
	if err := bad.Add([]float32{1, 2}); !errors.Is(err, ErrDim) {
		t.Fatalf("corrupt state: %v", err)
	}
	// Merging an empty accumulator changes nothing.
	if err := m.Merge(NewMean(3)); err != nil || m.N != 1 {
		t.Fatalf("merge empty: %v N=%d", err, m.N)
	}
}

func TestMeanOfMaxFloatsDoesNotOverflow(t *testing.T) {
	m := NewMean(1)
	for i := 0; i < 10; i++ {
		_ = m.Add([]float32{math.MaxFloat32})
	}
	got, err := m.Result()
	if err != nil || got[0] != math.MaxFloat32 {
		t.Fatalf("mean of MaxFloat32s = %v, %v", got, err)
	}
}

// TestStateIsBeamEncodable: accumulator state must be exported fields of
// plain types (ints, floats, strings, slices of those): no maps, arrays,
// pointers or unexported fields that Beam's coder would drop.
func TestStateIsBeamEncodable(t *testing.T) {
	for _, v := range []any{Mean{}, EMA{}} {
		typ := reflect.TypeOf(v)
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if !f.IsExported() {
				t.Errorf("%s.%s is unexported: Beam would not encode it", typ.Name(), f.Name)
			}
			k := f.Type.Kind()
			if k == reflect.Slice {
				k = f.Type.Elem().Kind()
			}
			switch k {
			case reflect.Int, reflect.Int64, reflect.Float64, reflect.Float32, reflect.String:
			default:
				t.Errorf("%s.%s has type %s", typ.Name(), f.Name, f.Type)
			}
		}
	}
}

// direct computes Σ (1-γ) γ^(T-τ) g_τ in float64 straight from the definition.
func direct(gamma float64, steps []int64, gs [][]float32) []float64 {
	T := steps[0]
	for _, s := range steps {
		T = max(T, s)
	}
	out := make([]float64, len(gs[0]))
	for i, g := range gs {
		w := (1 - gamma) * math.Pow(gamma, float64(T-steps[i]))
		for c, x := range g {
			out[c] += w * float64(x)
		}
	}
	return out
}

func closeRel(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*(1+math.Max(math.Abs(a), math.Abs(b)))
}

func TestEMAEqualsDirectSumAnyOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	k, gamma := 16, 0.9
	n := 60
	steps := make([]int64, n)
	gs := make([][]float32, n)
	for i := range gs {
		steps[i] = int64(r.IntN(40)) // repeated and out-of-order steps
		gs[i] = randVec(r, k)
	}
	want := direct(gamma, steps, gs)
	for trial := 0; trial < 30; trial++ {
		groups := 1 + r.IntN(8)
		accs := make([]*EMA, groups)
		for i := range accs {
			accs[i] = NewEMA(k, gamma)
		}
		for _, i := range r.Perm(n) {
			if err := accs[r.IntN(groups)].AddBatch(steps[i], gs[i]); err != nil {
				t.Fatal(err)
			}
		}
		for len(accs) > 1 {
			i := r.IntN(len(accs) - 1)
			if err := accs[i].Merge(accs[i+1]); err != nil {
				t.Fatal(err)
			}
			accs = append(accs[:i+1], accs[i+2:]...)
		}
		for c := range want {
			if !closeRel(accs[0].S[c], want[c], 1e-12) {
				t.Fatalf("trial %d coord %d: %v vs direct %v", trial, c, accs[0].S[c], want[c])
			}
		}
		if res, err := accs[0].Result(); err != nil || !closeRel(float64(res[0]), want[0], 1e-6) {
			t.Fatalf("Result: %v %v", res, err)
		}
	}
}

func TestEMAMatchesRecurrence(t *testing.T) {
	// Consecutive steps 0..T from G=0: G ← γG + (1−γ)ḡ_τ.
	r := rand.New(rand.NewPCG(3, 3))
	k, gamma := 4, 0.8
	e := NewEMA(k, gamma)
	g := make([]float64, k)
	for step := int64(0); step < 25; step++ {
		b := randVec(r, k)
		_ = e.AddBatch(step, b)
		for c := range g {
			g[c] = gamma*g[c] + (1-gamma)*float64(b[c])
		}
	}
	for c := range g {
		if !closeRel(e.S[c], g[c], 1e-12) {
			t.Fatalf("coord %d: %v vs recurrence %v", c, e.S[c], g[c])
		}
	}
}

func TestEMAErrors(t *testing.T) {
	e := NewEMA(2, 0.9)
	if _, err := e.Result(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty: %v", err)
	}
	if err := e.AddBatch(0, []float32{1}); !errors.Is(err, ErrDim) {
		t.Fatalf("dim: %v", err)
	}
	if err := e.AddBatch(0, []float32{1, float32(math.NaN())}); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("nan: %v", err)
	}
	if err := e.AddBatch(-1, []float32{1, 2}); !errors.Is(err, ErrBadParam) {
		t.Fatalf("negative step: %v", err)
	}
	if e.N != 0 {
		t.Fatal("failed AddBatch counted")
	}
	for _, g := range []float64{0, 1, -0.5, 1.5, math.NaN()} {
		if err := NewEMA(2, g).AddBatch(0, []float32{1, 2}); !errors.Is(err, ErrBadParam) {
			t.Fatalf("gamma %v: %v", g, err)
		}
	}
	if err := e.Merge(NewEMA(2, 0.5)); !errors.Is(err, ErrBadParam) {
		t.Fatalf("gamma mismatch: %v", err)
	}
	if err := e.Merge(NewEMA(3, 0.9)); !errors.Is(err, ErrDim) {
		t.Fatalf("k mismatch: %v", err)
	}
	// Empty into non-empty and non-empty into empty.
	_ = e.AddBatch(5, []float32{1, 2})
	empty := NewEMA(2, 0.9)
	if err := empty.Merge(e); err != nil || empty.TMax != 5 || empty.S[1] != e.S[1] {
		t.Fatalf("merge into empty: %v %+v", err, empty)
	}
	if err := e.Merge(NewEMA(2, 0.9)); err != nil || e.N != 1 {
		t.Fatalf("merge empty: %v", err)
	}
}

func FuzzMeanNoPanic(f *testing.F) {
	f.Add(uint8(3), []byte{0, 0, 128, 127, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, k uint8, raw []byte) {
		m := NewMean(int(k))
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		}
		err := m.Add(v)
		if err == nil {
			if _, err := m.Result(); err != nil {
				t.Fatal(err)
			}
		}
		e := NewEMA(int(k), 0.9)
		_ = e.AddBatch(int64(len(raw)), v)
		_, _ = e.Result()
	})
}

// TestAddFiniteMatchesAdd: the unchecked add leaves the state Add leaves,
// and still refuses a wrong length or a broken state.
func TestAddFiniteMatchesAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	a, b := NewMean(16), NewMean(16)
	for i := 0; i < 50; i++ {
		v := randVec(r, 16)
		if err := a.Add(v); err != nil {
			t.Fatal(err)
		}
		if err := b.AddFinite(v); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("AddFinite and Add left different states")
	}
	if err := b.AddFinite([]float32{1}); !errors.Is(err, ErrDim) {
		t.Fatalf("short vector: %v", err)
	}
	if err := (&Mean{K: 2, Limbs: make([]int64, 3)}).AddFinite([]float32{1, 2}); !errors.Is(err, ErrDim) {
		t.Fatalf("corrupt state: %v", err)
	}
}

// normalized returns a copy of m's limbs with carries propagated: the
// canonical form, equal for equal sums however they were added.
func normalized(m *Mean) []int64 {
	l := append([]int64(nil), m.Limbs...)
	for c := 0; c < m.K; c++ {
		exact.Normalize(l[c*LimbsPerCoord : (c+1)*LimbsPerCoord])
	}
	return l
}

// TestStagedMatchesMean: filling a Mean through Staged's float64 staging
// (across several settles, with inputs spanning ten decades and zeros) gives
// the sums, counts and Result bits of Mean.Add; reading it mid-way and adding
// on still does; errors leave the state unchanged.
func TestStagedMatchesMean(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const k = 13
	st, m := NewStaged(k), NewMean(k)
	for i := 0; i < 3*settleRows+77; i++ {
		v := randVec(r, k)
		if i%97 == 0 {
			v[i%k] = 0
		}
		if err := st.Add(v); err != nil {
			t.Fatal(err)
		}
		if err := m.Add(v); err != nil {
			t.Fatal(err)
		}
		if i == settleRows/2 {
			if got := st.Mean(); got.N != m.N || !reflect.DeepEqual(normalized(got), normalized(m)) {
				t.Fatalf("after %d rows: staged sums differ", i+1)
			}
		}
	}
	if err := st.Add([]float32{1}); !errors.Is(err, ErrDim) {
		t.Fatalf("short vector: %v", err)
	}
	bad := make([]float32, k)
	bad[3] = float32(math.Inf(-1))
	if err := st.Add(bad); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("-Inf: %v", err)
	}
	got := st.Mean()
	if got.N != m.N || !reflect.DeepEqual(normalized(got), normalized(m)) {
		t.Fatal("Staged and Mean hold different sums")
	}
	a, _ := got.Result()
	b, _ := m.Result()
	for c := range a {
		if math.Float32bits(a[c]) != math.Float32bits(b[c]) {
			t.Fatalf("coordinate %d: staged mean %g, Mean %g", c, a[c], b[c])
		}
	}
	if err := NewStaged(0).Add(nil); !errors.Is(err, ErrBadParam) {
		t.Fatalf("k=0: %v", err)
	}
}
