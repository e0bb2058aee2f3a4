package model

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decodeAnswerBefore is how Finish decoded an answer before decodeAnswer:
// json.Decoder with UseNumber, refusing a second value (More), and then
// refusing what json.Compact of the whole body refused (a closing bracket
// after the value, which More lets through).
func decodeAnswerBefore(body string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() || !json.Valid([]byte(body)) {
		return nil, errTextAfter
	}
	return v, nil
}

// answerSeeds are answers at the edges of what encoding/json accepts.
func answerSeeds() []string {
	return []string{
		`{"ok": true}`, quizAnswer, StripFence(quizAnswer), ` [1, 2.50, -0, 1e400, 1E-7, null, "x"] `, `"s"`, `12`, `null`, `true`, `false`,
		`{"a": 1, "a": 2}`, `{"a": {"b": [{}, []]}, "": null}`, `{"é 😀 \u2028": "\"q\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00"}`,
		"{\"a\": \"\xff\xfe\"}", `{"a": "\ud800"}`, `{"a": "\udc00\ud800x"}`, "\"\xed\xa0\x80\"", `{"a":1} ]`, `{"a":1} }`, `{} {}`, `{}x`,
		`{"a":1,}`, `[1,]`, `{"a" 1}`, `{'a': 1}`, `01`, `1.`, `.5`, `+1`, `NaN`, `tru`, `"\x"`, "\"a\tb\"", `{"a":`, `[`, `]`, ` `,
		strings.Repeat("[", 500) + strings.Repeat("]", 500), strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 200),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001), // past both decoders' depth limit
	}
}

// TestDecodeAnswerMatchesEncodingJSON: every seed decodes to what
// json.Decoder made of it, or is refused where it was refused.
func TestDecodeAnswerMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, body := range answerSeeds() {
		want, wantErr := decodeAnswerBefore(body)
		got, err := decodeAnswer(body)
		require.Equal(t, wantErr == nil, err == nil, "%q: encoding/json says %v, decodeAnswer %v", body, wantErr, err)
		require.Equal(t, want, got, "%q", body)
	}
	_, err := decodeAnswer(`{"a":1} {"b":2}`)
	require.ErrorIs(t, err, errTextAfter)
}

// FuzzDecodeAnswerMatchesEncodingJSON: whatever a model answers,
// decodeAnswer gives the value json.Decoder gave, or refuses it as Finish
// did.
func FuzzDecodeAnswerMatchesEncodingJSON(f *testing.F) {
	for _, s := range answerSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		want, wantErr := decodeAnswerBefore(body)
		got, err := decodeAnswer(body)
		if (wantErr == nil) != (err == nil) {
			t.Fatalf("%q: encoding/json says %v, decodeAnswer %v", body, wantErr, err)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("%q: encoding/json gives %#v, decodeAnswer %#v", body, want, got)
		}
	})
}
