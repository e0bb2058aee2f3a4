package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genai"
)

// maxSnippet bounds how much model text is quoted in an error message.
const maxSnippet = 200

// fromGenai turns a genai response into a Response or a classified *Error:
// blocked prompts and bad finish reasons are permanent; invalid or
// non-conforming JSON asks for regeneration.
func (v *Validator) fromGenai(resp *genai.GenerateContentResponse, schema []byte, model string) (Response, error) {
	out := Response{ModelVersion: resp.ModelVersion, ResponseID: resp.ResponseID, Model: model}
	if u := resp.UsageMetadata; u != nil {
		out.Usage = Usage{
			PromptTokens:        int(u.PromptTokenCount),
			CachedTokens:        int(u.CachedContentTokenCount),
			CandidatesTokens:    int(u.CandidatesTokenCount),
			ThoughtsTokens:      int(u.ThoughtsTokenCount),
			ToolUsePromptTokens: int(u.ToolUsePromptTokenCount),
			TotalTokens:         int(u.TotalTokenCount),
		}
	}
	if pf := resp.PromptFeedback; pf != nil && pf.BlockReason != "" {
		msg := fmt.Sprintf("model %s blocked the prompt: %s", model, pf.BlockReason)
		if pf.BlockReasonMessage != "" {
			msg += " (" + pf.BlockReasonMessage + ")"
		}
		return out, newError(KindBlocked, RetryNever, ScopeNone, 0, msg, nil)
	}
	if len(resp.Candidates) == 0 || resp.Candidates[0] == nil {
		return out, newError(KindEmpty, RetryLater, ScopeNone, 0, fmt.Sprintf("model %s returned no candidates", model), nil)
	}
	cand := resp.Candidates[0]
	var sb strings.Builder
	if cand.Content != nil {
		for _, p := range cand.Content.Parts {
			if p != nil && !p.Thought {
				sb.WriteString(p.Text)
			}
		}
	}
	out.Text = sb.String()
	switch cand.FinishReason {
	case "", genai.FinishReasonStop, genai.FinishReasonUnspecified:
	case genai.FinishReasonMaxTokens:
		return out, newError(KindMaxTokens, RetryNever, ScopeNone, 0,
			fmt.Sprintf("model %s stopped at the output token limit (finishReason MAX_TOKENS) after %d tokens; raise maxOutputTokens or shorten the task", model, out.Usage.CandidatesTokens), nil)
	default:
		msg := fmt.Sprintf("model %s stopped generating: finishReason %s", model, cand.FinishReason)
		if cand.FinishMessage != "" {
			msg += " (" + cand.FinishMessage + ")"
		}
		return out, newError(KindBlocked, RetryNever, ScopeNone, 0, msg, nil)
	}
	output, err := v.Finish(out.Text, schema)
	if err != nil {
		return out, err
	}
	out.Output = output
	return out, nil
}

// Finish turns model text into the stored output: without a schema it is
// {"result": text}; with one, a surrounding code fence is stripped, the JSON
// is parsed and validated. Failures are *Error with RetryRegenerate.
func (v *Validator) Finish(text string, schema []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(schema)) == 0 || bytes.Equal(bytes.TrimSpace(schema), []byte("null")) {
		b, err := json.Marshal(map[string]string{"result": text})
		if err != nil {
			return nil, fmt.Errorf("error encoding text result: %w", err)
		}
		return b, nil
	}
	body := StripFence(text)
	if body == "" {
		return nil, newError(KindEmpty, RetryRegenerate, ScopeNone, 0, "model returned no text", nil)
	}
	value, err := decodeAnswer(body)
	if errors.Is(err, errTextAfter) {
		return nil, newError(KindInvalidOutput, RetryRegenerate, ScopeNone, 0,
			fmt.Sprintf("output has text after the JSON value; output starts with %q", snippet(body)), nil)
	}
	if err != nil {
		return nil, newError(KindInvalidOutput, RetryRegenerate, ScopeNone, 0,
			fmt.Sprintf("output is not valid JSON: %v; output starts with %q", err, snippet(body)), err)
	}
	if err := v.validateNumbers(schema, value); err != nil { // decoded with UseNumber
		return nil, newError(KindInvalidOutput, RetryRegenerate, ScopeNone, 0, describeValidation(err), err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(body)); err != nil {
		return nil, fmt.Errorf("error compacting output: %w", err)
	}
	return compact.Bytes(), nil
}

// StripFence removes a surrounding Markdown code fence (```json … ```) and
// surrounding whitespace.
func StripFence(text string) string {
	t := strings.TrimSpace(text)
	if !strings.HasPrefix(t, "```") {
		return t
	}
	nl := strings.IndexByte(t, '\n')
	if nl < 0 {
		return strings.TrimSpace(strings.Trim(t, "`"))
	}
	t = t[nl+1:]
	if end := strings.LastIndex(t, "```"); end >= 0 {
		t = t[:end]
	}
	return strings.TrimSpace(t)
}

func snippet(s string) string {
	r := []rune(s)
	if len(r) > maxSnippet {
		return string(r[:maxSnippet]) + "…"
	}
	return s
}
