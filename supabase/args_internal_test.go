package supabase

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// completionArgs are complete_tasks' arguments as the engine's completer
// passes them, n items.
func completionArgs(n int) map[string]any {
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{
			"task_id": uuid.New(),
			"output":  json.RawMessage(`{"title": "An answer", "items": [1, 2, 3], "ok": true}`),
			"usage":   map[string]any{"prompt_tokens": 120, "candidates_tokens": 48, "total_tokens": 168, "model": "gemini-3.5-flash"},
		}
	}
	return map[string]any{"p_worker": "w-1", "p_items": items}
}

// A map of arguments (what the engine passes) is encoded without reading the
// body back, and gives what reading it back gives: the same body and keys.
func TestArgsObjectOfAMap(t *testing.T) {
	t.Parallel()
	for name, args := range map[string]map[string]any{
		"completion": completionArgs(3),
		"empty":      {},
		"nil":        nil,
		"null value": {"p_task_ids": nil, "p_worker": "w"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body, keys, err := argsObject(args)
			require.NoError(t, err)
			encoded, err := json.Marshal(args)
			require.NoError(t, err)
			wantBody, wantKeys, err := argsObjectOf(encoded)
			if args == nil {
				// null is not an object; read back, it gave no keys and no
				// error either.
				require.NoError(t, err)
			}
			require.JSONEq(t, string(wantBody), string(body))
			require.ElementsMatch(t, wantKeys, keys)
		})
	}
	_, _, err := argsObject(json.RawMessage(`[1]`))
	require.ErrorContains(t, err, "rpc args must be a JSON object", "any other form is still read back")
}

// BenchmarkArgsObject encodes the arguments of one complete_tasks call of
// 100 items, as the completer sends them.
func BenchmarkArgsObject(b *testing.B) {
	args := completionArgs(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := argsObject(args); err != nil {
			b.Fatal(err)
		}
	}
}

// encodedArgs writes its own body and keys (an EncodedArgs).
type encodedArgs struct {
	body string
	keys []string
	err  error
}

func (a encodedArgs) EncodeArgs() ([]byte, []string, error) { return []byte(a.body), a.keys, a.err }

// Arguments that encode themselves are sent as they wrote them, with the
// keys they named, and their refusal is the call's error.
func TestArgsObjectOfEncodedArgs(t *testing.T) {
	t.Parallel()
	body, keys, err := argsObject(encodedArgs{body: `{"p_items":[1],"p_worker":"w"}`, keys: []string{"p_items", "p_worker"}})
	require.NoError(t, err)
	require.True(t, bytes.Equal([]byte(`{"p_items":[1],"p_worker":"w"}`), body), "sent as written: %s", body)
	require.Equal(t, []string{"p_items", "p_worker"}, keys)
	_, _, err = argsObject(encodedArgs{err: errors.New("a cost that is NaN")})
	require.ErrorContains(t, err, "encoding rpc args: a cost that is NaN")
}
