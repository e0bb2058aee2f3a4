package main

import (
	"context"
	"fmt"
	"time"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
)

// slow-tasks: what a task costs the database when its model call takes
// about a second, as real model calls do, against River with jobs that take
// as long (thirty-second round).
//
// The throughput scenarios work tasks that take no time, and the engine
// claims and completes them about a hundred at a time, so a call's fixed
// cost is spread thin. A model call takes seconds: a thousand workers then
// finish about a thousand tasks a second, a few at a time, and what a claim
// or a completion costs before its rows is most of what a task costs the
// user's database. Here slowTasksSize no-op tasks inserted alone are worked
// by slowTasksWorkers workers, each task's model call waiting
// slowTasksMean ± slowTasksJitter (uniform, fixed per task) before the
// offline model answers; River works as many jobs that wait as long, with
// the same workers, pool and fast fetch settings as elsewhere in the bench.
// The figures are the database-cost figures of throughput-noop, per task
// against River's per job, and the rates (both about workers / mean).

const (
	slowTasksWorkers = 1000
	slowTasksMean    = time.Second
	slowTasksJitter  = 200 * time.Millisecond
)

// slowTasksSize is the tasks of a run: four waves of the workers.
func (e *env) slowTasksSize() int {
	if e.o.Quick {
		return 200
	}
	return 4 * slowTasksWorkers
}

// slowTook is how long River's job n takes: slowTasksMean ± slowTasksJitter,
// spread evenly over n by a multiplicative hash (16 bits of it).
func slowTook(n int) time.Duration {
	return slowSpread(uint32(n) * 2654435761 >> 16) //nolint:gosec // a hash: the wrap is the point
}

// slowSpread maps h (0 to 65535) onto slowTasksMean ± slowTasksJitter.
func slowSpread(h uint32) time.Duration {
	return slowTasksMean + time.Duration(h)*(2*slowTasksJitter)/(1<<16) - slowTasksJitter
}

// slowModel waits slowTasksMean ± slowTasksJitter (by the task id's first
// two bytes, random) before the offline model answers.
type slowModel struct {
	inner pipeline.Generator
}

func (m slowModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	t := time.NewTimer(slowSpread(uint32(req.TaskID[0])<<8 | uint32(req.TaskID[1])))
	select {
	case <-ctx.Done():
		t.Stop()
		return model.Response{}, ctx.Err()
	case <-t.C:
	}
	return m.inner.Generate(ctx, req)
}

func slowTasks(ctx context.Context, e *env) ([]Figure, error) {
	n, w := e.slowTasksSize(), slowTasksWorkers
	if e.o.Quick {
		w = 100
	}
	offline, err := offlineModel()
	if err != nil {
		return nil, err
	}
	orch, err := orchWork(ctx, e, n, w, "direct", true, false, slowModel{inner: offline})
	if err != nil {
		return nil, err
	}
	var base riverRun
	if !e.o.SkipBaseline {
		if base, err = riverWork(ctx, e, n, w, true, slowTook); err != nil {
			return nil, err
		}
	}
	label := fmt.Sprintf("%d workers, model calls of %s ± %s", w, slowTasksMean, slowTasksJitter)
	figs := []Figure{
		{
			Name: fmt.Sprintf("tasks/s, %s, %d tasks", label, n), Unit: "tasks/s", Value: orch.rate, Baseline: base.rate,
			BaselineName: "River jobs/s", HigherIsBetter: true,
		},
		{
			Name: "round trips/task, " + label, Unit: "trips", Value: orch.trips, Baseline: 2,
			BaselineName: "target", Target: "≤ 2", Met: boolPtr(orch.trips <= 2),
		},
	}
	return append(figs, costFigures(label, *orch.cost, n, base.cost, n)...), nil
}
