// Package schemas holds the record types that flow between ConGrad stages and
// their Arrow schemas. The Go structs here are also the Beam element types, so
// every field is exported and of a type Beam can encode (no arrays, no maps).
package schemas

// SchemaVersion is written into the metadata of every file the project writes
// under the key "congrad.schema_version". Bump it when a column changes meaning.
const SchemaVersion = 1

// Prompt is one instruction in one language.
type Prompt struct {
	ID     string // stable id; the same id in several languages is the same instruction translated
	Lang   string // BCP-47-ish language code, lower case ("en", "de", "zh", ...)
	Prompt string // the instruction text
	Source string // optional: where it came from (file, dataset)
}

// Candidate is one sampled response to a prompt and the judge's scores for it.
type Candidate struct {
	PromptID      string
	Lang          string
	Index         int       // 0..N-1 within the prompt
	Text          string    // the response
	Tokens        int       // response length in tokens
	Scores        []float64 // every parsed judge score, in judging order (audit trail)
	MeanScore     float64   // mean of Scores; NaN when no judgment parsed
	ParseFailures int       // judgments that could not be parsed (counted, never guessed)
}

// Pair is one preference pair (best vs worst candidate of a prompt). The
// Prompt/Chosen/Rejected columns are what TRL's DPOTrainer reads.
type Pair struct {
	PairID          string
	PromptID        string
	Lang            string
	Prompt          string
	Chosen          string
	Rejected        string
	ChosenScore     float64   // mean judge score of the chosen response
	RejectedScore   float64   // mean judge score of the rejected response
	Margin          float64   // ChosenScore - RejectedScore
	ChosenScores    []float64 // every judge score of the chosen response (audit)
	RejectedScores  []float64 // every judge score of the rejected response (audit)
	ChosenTokens    int
	RejectedTokens  int
	Iteration       int     // self-rewarding round t
	ModelID         string  // the model M_t that generated and judged
	RefChosenLogp   float64 // log pi_ref(chosen|prompt); NaN until the gradient stage fills it
	RefRejectedLogp float64 // log pi_ref(rejected|prompt); NaN until the gradient stage fills it
}

// Sketch is the compressed LP-DPO gradient of one pair, s_i = S g_i.
// The sketch Spec (method, k, seed, version) travels in file metadata and in
// the pipeline options; every sketch of one run shares it.
type Sketch struct {
	PairID          string
	Lang            string
	Step            int64     // mini-batch step tau (used by the ema accumulator)
	Values          []float32 // length k
	Norm            float64   // ||s_i||
	Loss            float64   // LP-DPO loss of the pair at M_t
	Z               float64   // the margin z_i inside the sigmoid
	RefChosenLogp   float64
	RefRejectedLogp float64
	ChosenTokens    int
	RejectedTokens  int
}

// Decision is the conflict filter's verdict on one pair.
type Decision struct {
	PairID string
	Lang   string
	Score  float64 // cos(s_i, g*)
	Rank   int     // 1-based rank by score within the pair's language (1 = best)
	Kept   bool
	Reason string // why kept or dropped, e.g. "score>tau", "below top-rho threshold"
	// The audit of the method options (METHOD.md §8.5), written as columns
	// only when a non-default option is used (DecisionCodec.Audit): what
	// the score was (ScoreType: "pair" or "group:N"), what it was measured
	// against (Target: "g*", "g*_{-l}", "anchor consensus", ...), the
	// threshold rule (Rule, e.g. "noise-aware tau_l=-0.031") and the
	// language gate's verdict (Gate: "none", "open", "gated", ...).
	ScoreType, Target, Rule, Gate string
}

// DeadLetter is a row that could not be processed, with the reason. Every
// input row ends up in exactly one of the stage's outputs or here.
type DeadLetter struct {
	Stage   string // "read", "selfreward", "gradients", "filter", ...
	Source  string // file path, endpoint, or pair id
	Row     int64  // line or row number in Source when known, else -1
	Reason  string
	Payload string // the offending row, truncated
}
