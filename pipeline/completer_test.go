package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// outcomeDB answers complete_tasks with a fixed result and each
// complete_task with {"status": "completed"}, and records the calls.
type outcomeDB struct {
	result string

	mu      sync.Mutex
	groups  int
	singles []any
}

func (d *outcomeDB) RPC(_ context.Context, _ supabase.Identity, fn string, args, out any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch fn {
	case "complete_tasks":
		d.groups++
		return json.Unmarshal([]byte(d.result), out)
	case "complete_task":
		d.singles = append(d.singles, args.(map[string]any)["p_task_id"])
		return json.Unmarshal([]byte(`{"status": "completed"}`), out)
	}
	return fmt.Errorf("unexpected call %s", fn)
}

func (d *outcomeDB) Select(context.Context, supabase.Identity, string, supabase.Query, any) error {
	return errors.New("unexpected select")
}

// TestCompletionGroupReadsEachOutcome: the completer reads complete_tasks'
// result item by item: a status, a failure the call reports, a conflict
// with another group (written again alone), any other error; and a result
// it cannot read, or one with too few outcomes, makes every completion of
// the group be written alone (complete_task is idempotent), losing none.
func TestCompletionGroupReadsEachOutcome(t *testing.T) {
	t.Parallel()
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New()}
	args := make([]map[string]any, len(ids))
	for i, id := range ids {
		args[i] = map[string]any{"p_task_id": id, "p_worker": "w", "p_output": json.RawMessage(`{"ok": true}`), "p_usage": map[string]any{}}
	}
	identity := supabase.Identity{Claims: []byte(`{"sub":"` + uuid.NewString() + `","role":"authenticated"}`)}

	db := &outcomeDB{result: `[{"status": "completed", "created": 2, "waiting": 0}, {"error": "deadlock detected", "code": "40P01"},
		{"error": "p_output does not match", "code": "PT409"}, {"status": "failed", "error": "the split has no array"}]`}
	statuses, errs := pipeline.CompletionGroupForTest(db, "w", identity, args)
	require.Equal(t, 1, db.groups)
	require.Equal(t, []any{ids[1]}, db.singles, "only the deadlocked item is written again, alone")
	require.Equal(t, []string{"completed", "completed", "", "failed"}, statuses)
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	var serr *supabase.Error
	require.ErrorAs(t, errs[2], &serr)
	require.Equal(t, "PT409", serr.Code)
	require.NoError(t, errs[3])

	for _, result := range []string{
		`[{"status": "completed"}, {"status": 1}, {"status": "completed"}, {"status": "completed"}]`, // a value of the wrong type
		`[{"status": "completed"}, {"status": "completed"}, {"status": "completed"}]`,                // too few
		`{"status": "completed"}`, `null`, // not an array
	} {
		db := &outcomeDB{result: result}
		statuses, errs := pipeline.CompletionGroupForTest(db, "w", identity, args)
		require.Equal(t, 1, db.groups)
		require.ElementsMatch(t, []any{ids[0], ids[1], ids[2], ids[3]}, db.singles, "every completion written alone after %s", result)
		require.Equal(t, []string{"completed", "completed", "completed", "completed"}, statuses)
		for _, err := range errs {
			require.NoError(t, err)
		}
	}
}
