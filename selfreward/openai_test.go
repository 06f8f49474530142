package selfreward

import (
	"math"
	"testing"
)

// A chat response shaped like vLLM's with logprobs for every token: the
// weighted score must come from the alternatives of the token holding the
// score digit, not from the first token.
func TestChatLogprobsAtScoreToken(t *testing.T) {
	body := `{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Clear.\nScore: 4"},
	"logprobs":{"content":[
	 {"token":"Clear","logprob":-0.1,"top_logprobs":[{"token":"Clear","logprob":-0.1},{"token":"3","logprob":-3}]},
	 {"token":".\n","logprob":-0.2,"top_logprobs":[]},
	 {"token":"Score","logprob":-0.01,"top_logprobs":[]},
	 {"token":":","logprob":-0.01,"top_logprobs":[]},
	 {"token":" 4","logprob":-0.5108,"top_logprobs":[{"token":" 4","logprob":-0.5108},{"token":" 3","logprob":-1.2040},{"token":" 5","logprob":-2.3026}]}
	]}}],"usage":{"completion_tokens":5}}`
	comps, err := decodeResponse([]byte(body), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 1 || comps[0].Tokens != 5 || len(comps[0].Logprobs) != 5 {
		t.Fatalf("decoded %+v", comps)
	}
	j := JudgmentFrom(comps[0], 0.5)
	p4, p3, p5 := math.Exp(-0.5108), math.Exp(-1.2040), math.Exp(-2.3026)
	want := (4*p4 + 3*p3 + 5*p5) / (p4 + p3 + p5)
	if !j.OK || j.Parsed != 4 || math.Abs(j.ProbScore-want) > 1e-9 || j.Score != j.ProbScore {
		t.Fatalf("judgment %+v, want weighted %v", j, want)
	}
	// Without log-probs the parsed number is the score.
	comps[0].Logprobs = nil
	if j := JudgmentFrom(comps[0], 0.5); !j.OK || j.Score != 4 || !math.IsNaN(j.ProbScore) {
		t.Fatalf("judgment without logprobs %+v", j)
	}
}

func TestLegacyLogprobsAndMalformed(t *testing.T) {
	body := `{"choices":[{"index":1,"text":"b","finish_reason":"length"},{"index":0,"text":"4","logprobs":{"tokens":["4"],"token_logprobs":[-0.1],"top_logprobs":[{"4":-0.1,"5":-2.4}]}}]}`
	comps, err := decodeResponse([]byte(body), false)
	if err != nil {
		t.Fatal(err)
	}
	if comps[0].Text != "4" || comps[1].FinishReason != "length" || len(comps[0].Logprobs[0].Top) != 2 {
		t.Fatalf("choices not in index order or logprobs lost: %+v", comps)
	}
	for _, bad := range []string{`{"choices":[]}`, `{"choices":[{"index":0}]}`, `not json`, `{"error":{"message":"overloaded"}}`} {
		if _, err := decodeResponse([]byte(bad), true); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
