package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/supabase"
)

// completedDB answers every completion with "completed", as the database
// does for a leaf. It encodes nothing: BenchmarkRunTask measures the
// engine's own work (the transports' encoding of a group's arguments is
// BenchmarkCompletionArgs and supabase's BenchmarkArgsObject).
type completedDB struct {
	outcomes [maxCompletions + 1][]byte
}

func newCompletedDB() *completedDB {
	d := &completedDB{}
	for n := 1; n <= maxCompletions; n++ {
		b := make([]byte, 0, n*24)
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"status":"completed"}`...)
		}
		d.outcomes[n] = append(b, ']')
	}
	return d
}

func (d *completedDB) RPC(_ context.Context, _ supabase.Identity, fn string, args, out any) error {
	switch fn {
	case "complete_tasks":
		n := len(args.(completionCall).batch)
		*out.(*json.RawMessage) = d.outcomes[n]
		return nil
	case "complete_task":
		return json.Unmarshal([]byte(`{"status":"completed"}`), out)
	}
	return fmt.Errorf("unexpected call %s", fn)
}

func (d *completedDB) Select(context.Context, supabase.Identity, string, supabase.Query, any) error {
	return errors.New("unexpected select")
}

// BenchmarkRunTask is the engine's own work for one claimed task, from its
// claim to its written outcome, as throughput-noop runs it: the noop
// template (a short prompt, a one-member output schema) through the
// offline model, its answer validated, the completion written by group
// commit. The database answers at once (completedDB), so what is measured
// is the engine's CPU and allocations per task; "alone" is a task whose
// completion is written by itself (complete_task), "grouped" tasks run by
// 64 goroutines at a time, so completions are written in groups, as under
// load.
func BenchmarkRunTask(b *testing.B) {
	gen, err := model.NewOffline(&model.Config{Provider: model.ProviderOffline})
	if err != nil {
		b.Fatal(err)
	}
	r := NewRunner(&RunnerConfig{WorkerID: "bench"}, newCompletedDB(), gen)
	user := uuid.New()
	identity := supabase.Identity{Claims: []byte(`{"sub":"` + user.String() + `","role":"authenticated"}`)}
	tpl := &Template{
		ID: "noop", Template: "Answer with ok.", UserID: &user,
		OutputSchema: json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`),
	}
	tpl.settings = &templateSettings{}
	claimed := func() *Claimed {
		return &Claimed{Task: Task{ID: uuid.New(), UserID: user, TaskType: "generic", Status: "processing", InputData: json.RawMessage(`{}`)}, Template: tpl}
	}
	run := func(b *testing.B, c *Claimed) {
		b.Helper()
		if res := r.Run(context.Background(), identity, c); res.Outcome != OutcomeCompleted {
			b.Fatalf("outcome %q: %v", res.Outcome, res.Err)
		}
	}
	b.Run("alone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			run(b, claimed())
		}
	})
	b.Run("grouped", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32) // 64 goroutines on two cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b, claimed())
			}
		})
	})
}
