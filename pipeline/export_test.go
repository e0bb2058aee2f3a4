package pipeline

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/orchable/orchable/supabase"
)

// SweeperTestSignals receive one value each time the sweeper's loop has
// handled an event, so a test knows a tick was handled without waiting on
// real time.
type SweeperTestSignals struct {
	Kicked  <-chan struct{} // a kick (due work listed)
	Swept   <-chan struct{} // a sweep tick (engine limits if unset, expired leases, due work)
	Folded  <-chan struct{} // a fold tick
	Renewed <-chan struct{} // a renewal tick (RenewLeases returned)
}

// InitTestSignals turns s's test signals on. Call it before Start, and
// receive every signal the test causes (each channel buffers 100).
func (s *Sweeper) InitTestSignals() SweeperTestSignals {
	mk := func() chan struct{} { return make(chan struct{}, 100) }
	s.testSignals = sweeperTestSignals{kicked: mk(), swept: mk(), folded: mk(), renewed: mk()}
	return SweeperTestSignals{Kicked: s.testSignals.kicked, Swept: s.testSignals.swept, Folded: s.testSignals.folded, Renewed: s.testSignals.renewed}
}

// InitTestSignals turns d's test signal on: the returned channel receives,
// for each task whose work is done, whether it gave back its slot while its
// result is written. Call it before Start, and receive every value (the
// channel buffers 100).
func (d *Dispatcher) InitTestSignals() <-chan bool {
	d.startedWrite = make(chan bool, 100)
	return d.startedWrite
}

// InitTestSignals turns r's test signal on: the returned channel receives
// a value each time a leaf's completion starts waiting for others of its
// owner (RunnerConfig.CompletionLinger). Call it before the runner runs a
// task, and receive every value (the channel buffers 100).
func (r *Runner) InitTestSignals() <-chan struct{} {
	r.completer.lingerStarted = make(chan struct{}, 100)
	return r.completer.lingerStarted
}

// WritesHeld is what the write queue holds: the results being written after
// their tasks gave back their slots, and their bytes.
func (d *Dispatcher) WritesHeld() (n, size int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writing, d.written
}

// ClaimForTest makes one of the dispatcher's claims for user, as its loop
// does (with the user's cursor), without running what it claims.
func (d *Dispatcher) ClaimForTest(ctx context.Context, user uuid.UUID, n int) ([]Claimed, error) {
	return d.claim(ctx, user, n)
}

// TaskFields is taskFields, for its test.
func TaskFields(t *Task) map[string]json.RawMessage { return taskFields(t) }

// ClaimResult is claim_tasks' compact result as the runner decodes it.
type ClaimResult = claimResult

// DecodeClaim is the runner's decoding of a claim's result.
func DecodeClaim(raw []byte, out *ClaimResult) error { return decodeClaim(raw, out) }

// TasksForTest are the claimed tasks of a decoded claim, as the runner makes
// them from the result's columns.
func (c *ClaimResult) TasksForTest() ([]Task, error) { return c.Tasks.tasks() }

// ItemOutcome is one item's outcome in complete_tasks' result.
type ItemOutcome = itemOutcome

// DecodeOutcomes is the completer's decoding of complete_tasks' result.
func DecodeOutcomes(raw []byte, out *[]ItemOutcome) error { return decodeOutcomes(raw, out) }

// CompletionGroupForTest writes the completions (complete_task arguments)
// as one group, as the completer writes a user's waiting completions, and
// returns each one's status and error.
func CompletionGroupForTest(db supabase.DB, worker string, id supabase.Identity, args []map[string]any) ([]string, []error) {
	c := newCompleter(db, nil, worker, len(args), 0, 0)
	batch := make([]*completion, len(args))
	statuses, errs := make([]string, len(args)), make([]error, len(args))
	for i, a := range args {
		batch[i] = &completion{ctx: context.Background(), id: id, args: a, then: func(res completionResult) {
			statuses[i], errs[i] = res.Status, res.err
		}}
	}
	c.write(batch) // each result is delivered before write returns
	return statuses, errs
}
