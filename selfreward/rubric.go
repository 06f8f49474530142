package selfreward

import (
	"errors"
	"strings"
)

// Placeholders in a rubric template.
const (
	PromptPlaceholder   = "{{prompt}}"
	ResponsePlaceholder = "{{response}}"
)

// DefaultRubric is the judge prompt: an additive 0–5 checklist (METHOD.md §1),
// written for this project. It is in English because instruction-tuned models
// follow English instructions most reliably, but it tells the judge to grade
// the answer in the request's own language, so it works for any language; give
// RubricByLang for a native-language judge prompt. The last line it asks for is
// what ParseScore reads.
const DefaultRubric = `You are grading one answer to a user's request. Read both, then add up points with this checklist. Each item is worth one point; the total is between 0 and 5.

1. Relevance: the answer is about the request, even if it is incomplete or contains some unrelated material.
2. Coverage: it deals with most of what the request asks for, even if some parts are missing or shallow.
3. Usefulness: it actually helps with the core of the request; a user could act on it.
4. Clarity and language: it is clear, well organised and written in the same language as the request. Judge it in that language; never take points away because it is not in English.
5. Expertise: it reads like the work of a knowledgeable expert: correct, complete, focused, nothing wrong and nothing superfluous.

The request:
<<<
{{prompt}}
>>>

The answer:
<<<
{{response}}
>>>

Give your reasons in at most three short sentences. Then write the total on a line of its own, exactly in the form "Score: N", where N is one whole number from 0 to 5 written with the digits 0-5.`

func checkRubric(t string) error {
	if !strings.Contains(t, PromptPlaceholder) {
		return errors.New("missing " + PromptPlaceholder)
	}
	if !strings.Contains(t, ResponsePlaceholder) {
		return errors.New("missing " + ResponsePlaceholder)
	}
	return nil
}

// JudgePrompt fills a rubric template. It substitutes in one pass so that a
// response that itself contains "{{prompt}}" is not expanded again.
func JudgePrompt(template, prompt, response string) string {
	return strings.NewReplacer(PromptPlaceholder, prompt, ResponsePlaceholder, response).Replace(template)
}
