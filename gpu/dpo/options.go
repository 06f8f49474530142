// Package dpo computes exact per-pair LP-DPO gradients of LoRA adapters
// (METHOD.md §2) for a batch of preference pairs in one backward pass and
// compresses them on the device into sketches (§3): only [B, K] sketches and
// per-pair scalars come back to the host.
package dpo

import (
	"errors"
	"fmt"

	"github.com/gomlx/compute/dtypes"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/model"
)

// Truncate is the rule for pairs longer than Options.MaxLen tokens.
type Truncate int

const (
	// TruncatePrompt (default) drops the oldest prompt tokens (BOS and at
	// least one prompt token stay); a pair whose responses still do not fit is
	// rejected with a reason.
	TruncatePrompt Truncate = iota
	// TruncateReject rejects every pair that does not fit.
	TruncateReject
	// TruncateResponses truncates the prompt as TruncatePrompt does and then
	// cuts each response at its end (its EOS is then not scored).
	TruncateResponses
)

// Options configure an Extractor. Zero values take the defaults noted.
type Options struct {
	Beta   float64 // default 0.1
	Alpha  float64 // length-margin weight; 0 is plain DPO
	LoRA   model.LoRAOptions
	MaxLen int // tokens per sequence (prompt+response); default min(512, max_position_embeddings)
	Batch  int // pairs per device call; default 8
	// Sketch is the host sketch contract; its buckets/signs (or Gaussian
	// columns) are evaluated once per Extractor on the host and kept on the
	// device. The zero value means sketch.DefaultSpec().
	Sketch   sketch.Spec
	Truncate Truncate
	// DType is the compute dtype: Float32 (default), Float64 (for
	// finite-difference checks; the Go backend supports it, XLA/GPU may not)
	// or BFloat16 (GPU throughput measurements only: every op, softmax and
	// log-sum-exp included, then runs in bf16; the Go backend has no bf16
	// softmax and fails the batch with a clear error).
	DType dtypes.DType
	// Adapters, when set, are the LoRA values at which gradients are taken
	// (model.LoRAParams order, each flattened row-major) instead of the
	// seeded initial values LoRA describes: a trainer's current adapters.
	Adapters [][]float32 `json:"-"`

	forceRefForward bool // tests: compute π_ref with a forward pass even when LoRA B = 0
}

// Input is one preference pair.
type Input struct {
	PairID, Prompt, Chosen, Rejected string
}

// Output is one pair's result. Err non-empty means the pair failed (the
// caller sends it to the dead letter) and the numeric fields are zero.
type Output struct {
	PairID          string
	Sketch          []float32
	Loss, Z         float64
	RefChosenLogp   float64
	RefRejectedLogp float64
	ChosenTokens    int // |y_w| in tokens (EOS excluded), after truncation
	RejectedTokens  int
	Truncated       int // tokens dropped by the truncation rule
	Err             string
}

// ErrOptions is wrapped by option validation errors.
var ErrOptions = errors.New("dpo: invalid options")

func (o Options) withDefaults(cfg *model.Config) (Options, error) {
	if o.Beta == 0 {
		o.Beta = 0.1
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.MaxLen == 0 {
		o.MaxLen = min(512, cfg.MaxPositionEmbeddings)
	}
	if o.DType == dtypes.InvalidDType {
		o.DType = dtypes.Float32
	}
	o.LoRA = o.LoRA.WithDefaults()
	if o.Sketch == (sketch.Spec{}) {
		o.Sketch = sketch.DefaultSpec()
	}
	if err := o.Sketch.Validate(); err != nil {
		return o, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	switch {
	case o.Beta < 0:
		return o, fmt.Errorf("%w: beta %v < 0", ErrOptions, o.Beta)
	case o.Batch < 1:
		return o, fmt.Errorf("%w: batch %d < 1", ErrOptions, o.Batch)
	case o.MaxLen < 4 || o.MaxLen > cfg.MaxPositionEmbeddings:
		return o, fmt.Errorf("%w: max_len %d outside [4, %d]", ErrOptions, o.MaxLen, cfg.MaxPositionEmbeddings)
	case o.DType != dtypes.Float32 && o.DType != dtypes.Float64 && o.DType != dtypes.BFloat16:
		return o, fmt.Errorf("%w: dtype %s (want Float32, Float64 or BFloat16)", ErrOptions, o.DType)
	case o.Truncate < TruncatePrompt || o.Truncate > TruncateResponses:
		return o, fmt.Errorf("%w: truncate rule %d", ErrOptions, o.Truncate)
	}
	return o, nil
}

// encoded is one pair after tokenization and truncation.
type encoded struct {
	prompt, chosen, rejected []int // chosen/rejected include the final EOS unless cut
	nChosen, nRejected       int   // response lengths without EOS
	truncated                int
	err                      string
}

// encode tokenizes a pair: sequence = [BOS] prompt response [EOS]; only the
// response tokens and EOS are scored.
func encode(tok model.Tokenizer, vocab int, in Input, maxLen int, rule Truncate) encoded {
	var e encoded
	if in.Chosen == "" {
		e.err = "empty chosen response"
		return e
	}
	if in.Rejected == "" {
		e.err = "empty rejected response"
		return e
	}
	prompt := tok.Encode(in.Prompt)
	if tok.BOS() >= 0 {
		prompt = append([]int{tok.BOS()}, prompt...)
	}
	if len(prompt) == 0 {
		// Something must precede the first response token to predict it.
		e.err = "empty prompt and the tokenizer has no BOS"
		return e
	}
	c, r := tok.Encode(in.Chosen), tok.Encode(in.Rejected)
	e.nChosen, e.nRejected = len(c), len(r)
	c, r = append(c, tok.EOS()), append(r, tok.EOS())
	for _, ids := range [][]int{prompt, c, r} {
		for _, id := range ids {
			if id < 0 || id >= vocab {
				e.err = fmt.Sprintf("token id %d outside vocabulary [0,%d)", id, vocab)
				return e
			}
		}
	}
	longest := max(len(c), len(r))
	if over := len(prompt) + longest - maxLen; over > 0 {
		if rule == TruncateReject {
			e.err = fmt.Sprintf("too long: %d tokens > max_len %d", len(prompt)+longest, maxLen)
			return e
		}
		keep := 1 // the BOS (or first token) anchors the sequence
		drop := min(over, len(prompt)-keep-1)
		if drop > 0 {
			prompt = append(prompt[:keep:keep], prompt[keep+drop:]...)
			e.truncated += drop
		}
		if room := maxLen - len(prompt); longest > room {
			if rule != TruncateResponses {
				e.err = fmt.Sprintf("too long: responses of %d tokens do not fit max_len %d after truncating the prompt", longest, maxLen)
				return e
			}
			if len(c) > room {
				e.truncated += len(c) - room
				c = c[:room]
				e.nChosen = min(e.nChosen, room)
			}
			if len(r) > room {
				e.truncated += len(r) - room
				r = r[:room]
				e.nRejected = min(e.nRejected, room)
			}
		}
	}
	e.prompt, e.chosen, e.rejected = prompt, c, r
	return e
}
