package pipeline

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"
)

// completionCall is complete_tasks' arguments for a group of completions,
// {"p_items": [{task_id, output, usage}, …], "p_worker": …}. It encodes
// itself (supabase.EncodedArgs) when the transport sends it: json.Marshal of
// the items, with the usage as a struct to reflect over and each output
// compacted again, cost about 3 µs per item (BenchmarkCompletionArgs),
// about a tenth of the engine's CPU per noop task. The JSON it writes is
// what json.Marshal writes, up to whitespace and the escaping of <, > and &
// (FuzzCompletionArgsMatchEncodingJSON); a value it does not know the type
// of is encoded by json.Marshal.
type completionCall struct {
	worker string
	batch  []*completion
}

// EncodeArgs implements supabase.EncodedArgs.
func (c completionCall) EncodeArgs() ([]byte, []string, error) {
	// About what it takes, so that the body is allocated once: an item of
	// the engine's usage is about 530 bytes besides its output.
	size := 32 + len(c.worker)
	for _, r := range c.batch {
		size += 640
		if out, ok := r.args["p_output"].(json.RawMessage); ok {
			size += len(out)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, `{"p_items":[`...)
	for i, r := range c.batch {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendCompletionItem(b, r.args); err != nil {
			return nil, nil, err
		}
	}
	b = append(b, `],"p_worker":`...)
	b = appendJSONString(b, c.worker)
	b = append(b, '}')
	return b, []string{"p_items", "p_worker"}, nil
}

// appendCompletionItem appends one item of p_items, made of a completion's
// complete_task arguments.
func appendCompletionItem(b []byte, args map[string]any) ([]byte, error) {
	var err error
	b = append(b, `{"task_id":`...)
	if id, ok := args["p_task_id"].(uuid.UUID); ok {
		b = appendUUID(b, id)
	} else if b, err = appendMarshal(b, args["p_task_id"]); err != nil {
		return nil, err
	}
	b = append(b, `,"output":`...)
	if out, ok := args["p_output"].(json.RawMessage); ok {
		if b, err = appendRawJSON(b, out); err != nil {
			return nil, err
		}
	} else if b, err = appendMarshal(b, args["p_output"]); err != nil {
		return nil, err
	}
	b = append(b, `,"usage":`...)
	if u, ok := args["p_usage"].(completionUsage); ok {
		if b, err = u.appendJSON(b); err != nil {
			return nil, err
		}
	} else if b, err = appendMarshal(b, args["p_usage"]); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendJSON appends u as json.Marshal encodes it.
func (u *completionUsage) appendJSON(b []byte) ([]byte, error) {
	b = appendIntField(b, `{"prompt_token_count":`, u.PromptTokens)
	b = appendIntField(b, `,"candidates_token_count":`, u.CandidatesTokens)
	b = appendIntField(b, `,"thoughts_token_count":`, u.ThoughtsTokens)
	b = appendIntField(b, `,"total_token_count":`, u.TotalTokens)
	b = appendStringField(b, `,"model_id":`, u.ModelID)
	b = appendStringField(b, `,"model_version":`, u.ModelVersion)
	b = appendStringField(b, `,"response_id":`, u.ResponseID)
	b = appendIntField(b, `,"regenerations":`, u.Regenerations)
	b = appendStringField(b, `,"api_key_id":`, u.APIKeyID)
	b = appendStringsField(b, `,"fallback_from":`, u.FallbackFrom)
	b = appendStringsField(b, `,"hooks_ignored":`, u.HooksIgnored)
	d := &u.Usage
	b = appendIntField(b, `,"usage":{"prompt_token_count":`, d.PromptTokens)
	b = appendIntField(b, `,"cached_content_token_count":`, d.CachedTokens)
	b = appendIntField(b, `,"candidates_token_count":`, d.CandidatesTokens)
	b = appendIntField(b, `,"thoughts_token_count":`, d.ThoughtsTokens)
	b = appendIntField(b, `,"tool_use_prompt_token_count":`, d.ToolUsePromptTokens)
	b = appendIntField(b, `,"total_token_count":`, d.TotalTokens)
	b = appendIntField(b, `,"calls":`, d.Calls)
	if d.EstimatedCostUSD != nil {
		var err error
		b = append(b, `,"estimated_cost_usd":`...)
		if b, err = appendFloat(b, *d.EstimatedCostUSD); err != nil {
			return nil, err
		}
	}
	return append(b, "}}"...), nil
}

func appendIntField(b []byte, key string, v int) []byte {
	return strconv.AppendInt(append(b, key...), int64(v), 10)
}

// appendStringField appends a string field tagged omitempty.
func appendStringField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

// appendStringsField appends a []string field tagged omitempty.
func appendStringsField(b []byte, key string, v []string) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(append(b, key...), '[')
	for i, s := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string. Printable ASCII other than
// the characters encoding/json escapes is written as it is; anything else
// (control characters, quotes, backslashes, <, >, &, non-ASCII text with
// its invalid UTF-8 and line separators) is left to json.Marshal, which
// decides how each is written.
func appendJSONString(b []byte, s string) []byte {
	for i := range len(s) {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) //nolint:errchkjson // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// errUnsupportedFloat is json.Marshal's refusal of NaN and the infinities.
var errUnsupportedFloat = errors.New("json: unsupported value: a cost that is NaN or infinite")

// appendFloat appends f as json.Marshal writes a float64: the shortest
// decimal that reads back as f, with an exponent only below 1e-6 or from
// 1e21 on.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errUnsupportedFloat
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7, as json.Marshal writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendRawJSON appends raw compacted, as json.Marshal writes a
// json.RawMessage (null when it is nil), and refuses it when it is not
// valid JSON (empty included), as json.Marshal does.
func appendRawJSON(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// appendUUID appends id as a JSON string, as json.Marshal writes a
// uuid.UUID (its String form).
func appendUUID(b []byte, id uuid.UUID) []byte {
	var s [38]byte
	s[0], s[9], s[14], s[19], s[24], s[37] = '"', '-', '-', '-', '-', '"'
	hex.Encode(s[1:9], id[0:4])
	hex.Encode(s[10:14], id[4:6])
	hex.Encode(s[15:19], id[6:8])
	hex.Encode(s[20:24], id[8:10])
	hex.Encode(s[25:37], id[10:16])
	return append(b, s[:]...)
}

// appendMarshal appends json.Marshal(v).
func appendMarshal(b []byte, v any) ([]byte, error) {
	m, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, m...), nil
}
