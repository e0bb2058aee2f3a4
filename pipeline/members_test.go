package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// decoderMembers is objectMembers as it was written with json.Decoder's
// tokens: the reference the scanner must agree with on valid JSON.
func decoderMembers(raw json.RawMessage) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		out = append(out, member{key: key, val: val})
	}
	return out, nil
}

// requireSameMembers checks objectMembers against decoderMembers on a valid
// JSON object.
func requireSameMembers(t *testing.T, raw string) {
	t.Helper()
	want, err := decoderMembers(json.RawMessage(raw))
	require.NoError(t, err, raw)
	got, err := objectMembers(json.RawMessage(raw))
	require.NoError(t, err, raw)
	require.Len(t, got, len(want), raw)
	for i := range want {
		require.Equal(t, want[i].key, got[i].key, raw)
		require.Equal(t, string(want[i].val), string(got[i].val), raw)
	}
}

func TestObjectMembers(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{}`,
		` { } `,
		`{"a":1}`,
		"{\n\t\"a\" :\r\n 1 ,\"b\":  true\t}\n",
		`{"a":-1.5e+10,"b":false,"c":null,"d":0}`,
		`{"s":"with \"quotes\", {braces} and [brackets]","t":"\\"}`,
		`{"nested":{"a":[1,{"b":"}"}],"c":{}},"after":[[],[{}]]}`,
		`{"k\"ey":1,"\u00e9t\u00e9":2,"tab\tkey":3,"":4}`,
		`{"dup":1,"dup":2}`,
		`{"emoji":"😀","😀":"\ud83d\ude00"}`,
		"{\"bad utf8 \xff key\":1}",
		`{"a":"x"}   `,
		`{"a" : [ 1 , 2 ] , "b" : { "c" : "d" } }`,
	} {
		requireSameMembers(t, raw)
	}

	// Values are slices of the input, not copies, and appending to one
	// does not write into the input.
	raw := json.RawMessage(`{"a":[1],"b":2}`)
	got, err := objectMembers(raw)
	require.NoError(t, err)
	_ = append(got[0].val, 'x')
	require.JSONEq(t, `{"a":[1],"b":2}`, string(raw))

	// Not an object, or cut short: an error, never a panic.
	for _, bad := range []string{``, `[]`, `"a"`, `1`, `{`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,`, `{"a" 1}`, `{a:1}`, `{"a":"x`, `{"a":[1,2}`, `{"a":1 "b":2}`} {
		_, err := objectMembers(json.RawMessage(bad))
		require.Error(t, err, bad)
	}
}

// FuzzObjectMembers checks the scanner against json.Decoder's tokens on
// every valid JSON object, and that nothing makes it panic.
func FuzzObjectMembers(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":1}`, `{"a":{"b":[1,"]"]},"c":"\"}"}`, `{"\u0041":null}`, `[1]`, `{"a":`, "{\"\xff\":1}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := objectMembers(json.RawMessage(raw))
		if !json.Valid([]byte(raw)) {
			return // the scanner's precondition; it must only not panic
		}
		trimmed := bytes.TrimSpace([]byte(raw))
		if len(trimmed) == 0 || trimmed[0] != '{' {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		want, err := decoderMembers(json.RawMessage(raw))
		require.NoError(t, err)
		require.Len(t, got, len(want))
		for i := range want {
			require.Equal(t, want[i].key, got[i].key)
			require.Equal(t, string(want[i].val), string(got[i].val))
		}
	})
}

// BenchmarkObjectMembers: the scanner against json.Decoder's tokens on a
// pipeline child's input (the parent's input and output, an item, the
// split's bookkeeping).
func BenchmarkObjectMembers(b *testing.B) {
	raw := json.RawMessage(`{"topic":"Photosynthesis","grade":7,"outline":{"sections":["light","chlorophyll","glucose"],"notes":"Keep it \"short\"."},` +
		`"item":{"title":"Light reactions","points":[1,2,3]},"_split_index":3,"_split_total":10,"_parent_stage":"outline"}`)
	b.Run("Scanner", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := objectMembers(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decoder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decoderMembers(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
