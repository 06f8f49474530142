package dpo

import (
	"errors"
	"fmt"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads like maths
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/gpu/model"
)

// This file exports the pieces of the LP-DPO graph that a trainer needs
// (package train), so training and gradient extraction share one sequence
// format, one log-probability and one loss instead of keeping copies.

// SeqLogProbs returns, per row of tokens [N, T], the sum of the log-probabilities
// of the next tokens selected by mask [N, T] (position p scores token p+1;
// gidx [N·T, 2] holds (flat position, next token) pairs, see Pack). lora nil
// gives the base model.
func SeqLogProbs(cfg *model.Config, w model.WeightNodes, lora *model.LoRANodes, tokens, gidx, mask *Node) *Node {
	n2, t := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1]
	logits := model.Logits(cfg, w, model.Hidden(cfg, w, lora, tokens))
	flat := Reshape(logits, n2*t, cfg.VocabSize)
	mx := StopGradient(ReduceAndKeep(flat, ReduceMax, -1))
	lse := Add(Squeeze(mx, -1), Log(ReduceSum(Exp(Sub(flat, BroadcastToDims(mx, n2*t, cfg.VocabSize))), -1)))
	tok := Gather(flat, gidx) // [N*T]
	return ReduceSum(Mul(Reshape(Sub(tok, lse), n2, t), mask), -1)
}

// Objective is the per-pair LP-DPO loss (METHOD.md §2) from policy and
// reference sequence log-probs of the chosen (W) and rejected (L) responses:
// z = β[(polW − refW) − (polL − refL)] − α·lenDiff, ℓ = −log σ(z).
func Objective(polW, polL, refW, refL, lenDiff *Node, beta, alpha float64) (loss, z *Node) {
	z = Sub(MulScalar(Sub(Sub(polW, refW), Sub(polL, refL)), beta), MulScalar(lenDiff, alpha))
	return softplus(Neg(z)), z
}

// Encoded is one tokenized pair in the sequence format of the extractor:
// [BOS] prompt response [EOS], response tokens and EOS scored.
type Encoded struct{ e encoded }

// ErrPair is wrapped when Encode cannot use a pair (empty response, too long
// under the rule, token outside the vocabulary).
var ErrPair = errors.New("dpo: unusable pair")

// Encode tokenizes one pair with m's tokenizer under the truncation rule.
func Encode(m *model.Model, in Input, maxLen int, rule Truncate) (Encoded, error) {
	e := encode(m.Tok, m.Config.VocabSize, in, maxLen, rule)
	if e.err != "" {
		return Encoded{}, fmt.Errorf("%w: %s", ErrPair, e.err)
	}
	return Encoded{e}, nil
}

// ResponseTokens are |y_w| and |y_l| in tokens (EOS excluded).
func (x Encoded) ResponseTokens() (chosen, rejected int) { return x.e.nChosen, x.e.nRejected }

// Len is the longer of the two sequences (prompt + response + EOS).
func (x Encoded) Len() int { return len(x.e.prompt) + max(len(x.e.chosen), len(x.e.rejected)) }

// PadLen is the padded sequence length the extractor uses for a batch whose
// longest sequence has longest tokens: a power of two, at least 16, at most maxLen.
func PadLen(longest, maxLen int) int {
	t := 16
	for t < longest {
		t *= 2
	}
	return min(t, maxLen)
}

// Batch is a packed block of b pairs: rows 0..b-1 of Tokens are the chosen
// sequences, rows b..2b-1 the rejected ones (row n belongs to pair n % b).
// Rows beyond the given pairs are padding with a zero mask.
type Batch struct {
	Tokens  *tensors.Tensor // [2b, T] int32
	Gidx    *tensors.Tensor // [2b·T, 2] int32
	Mask    *tensors.Tensor // [2b, T] dt
	LenDiff *tensors.Tensor // [b] dt, |y_w| − |y_l|
}

// Pack packs pairs (at most b) into a Batch of padded length t in dtype dt.
func Pack(pad int, pairs []Encoded, b, t int, dt dtypes.DType) Batch {
	encs := make([]encoded, len(pairs))
	idx := make([]int, len(pairs))
	for i, p := range pairs {
		encs[i], idx[i] = p.e, i
	}
	tokens, gidx, mask, lenDiff := pack(int32(pad), encs, idx, b, t)
	return Batch{
		Tokens:  tensors.FromFlatDataAndDimensions(tokens, 2*b, t),
		Gidx:    tensors.FromFlatDataAndDimensions(gidx, 2*b*t, 2),
		Mask:    floatTensor(dt, mask, 2*b, t),
		LenDiff: floatTensor(dt, lenDiff, b),
	}
}

// pack lays out pairs idx of encs as described at Batch.
func pack(pad int32, encs []encoded, idx []int, b, t int) (tokens, gidx []int32, mask, lenDiff []float64) {
	tokens = make([]int32, 2*b*t)
	for k := range tokens {
		tokens[k] = pad
	}
	gidx = make([]int32, 2*b*t*2)
	mask = make([]float64, 2*b*t)
	lenDiff = make([]float64, b)
	for k, i := range idx {
		e := encs[i]
		for side, resp := range [][]int{e.chosen, e.rejected} {
			row := side*b + k
			seq := append(append([]int{}, e.prompt...), resp...)
			for p, id := range seq {
				tokens[row*t+p] = int32(id)
			}
			// Position p predicts token p+1; score the response tokens.
			for p := len(e.prompt) - 1; p < len(seq)-1; p++ {
				mask[row*t+p] = 1
			}
		}
		lenDiff[k] = float64(e.nChosen - e.nRejected)
	}
	for row := 0; row < 2*b; row++ {
		for p := 0; p < t; p++ {
			flat := row*t + p
			next := pad
			if p+1 < t {
				next = tokens[flat+1]
			}
			gidx[2*flat], gidx[2*flat+1] = int32(flat), next
		}
	}
	return tokens, gidx, mask, lenDiff
}
