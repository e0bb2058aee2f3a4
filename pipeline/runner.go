package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/supabase"
)

// Generator is the model call the runner needs. *model.Client (Gemini
// through the key pool) and *model.Offline satisfy it.
type Generator interface {
	Generate(ctx context.Context, req model.Request) (model.Response, error)
}

// Claimed is one task as claim_tasks returns it: the task row, its stage
// template and its batch, in one round trip.
type Claimed struct {
	Task     Task      `json:"task"`
	Template *Template `json:"template"`
	Batch    *Batch    `json:"batch"`
}

// Task holds the ai_tasks columns the runner reads.
type Task struct {
	ID               uuid.UUID       `json:"id"`
	UserID           uuid.UUID       `json:"user_id"`
	BatchID          *uuid.UUID      `json:"batch_id"`
	LaunchID         *uuid.UUID      `json:"launch_id"`
	StageKey         *string         `json:"stage_key"`
	TaskType         string          `json:"task_type"`
	Status           string          `json:"status"`
	InputData        json.RawMessage `json:"input_data"`
	Extra            json.RawMessage `json:"extra"`
	Attempts         int             `json:"attempts"`
	RetryCount       int             `json:"retry_count"`
	StepNumber       int             `json:"step_number"`
	LoCode           *string         `json:"lo_code"`
	Sequence         *int            `json:"sequence"`
	PromptTemplateID *string         `json:"prompt_template_id"`
	RequiresApproval bool            `json:"requires_approval"`
	TierSource       *string         `json:"tier_source"`
}

// Template holds the prompt_templates columns the runner reads.
type Template struct {
	ID                string          `json:"id"`
	Name              *string         `json:"name"`
	Template          string          `json:"template"`
	StageKey          *string         `json:"stage_key"`
	OutputSchema      json.RawMessage `json:"output_schema"`
	DefaultAISettings json.RawMessage `json:"default_ai_settings"`
	StageConfig       json.RawMessage `json:"stage_config"`
	SystemInstruction *string         `json:"system_instruction"`
	RequiresApproval  *bool           `json:"requires_approval"`
	// UserID is the template's author. A task may run another user's
	// public template, but never that author's hooks (SPEC §14).
	UserID *uuid.UUID `json:"user_id"`

	// settings are DefaultAISettings resolved once for the tasks of one
	// claim that have no settings of their own (nil: resolved per task).
	settings *templateSettings
}

// templateSettings is a template's model settings, resolved on first use,
// and its stage_config's hooks, decoded on first use.
type templateSettings struct {
	once sync.Once
	s    model.Settings
	err  error

	stageOnce sync.Once
	stage     stageSettings
}

// Batch holds the task_batches columns the runner reads.
type Batch struct {
	ID            uuid.UUID       `json:"id"`
	Name          string          `json:"name"`
	Status        string          `json:"status"`
	GlobalContext json.RawMessage `json:"global_context"`

	// docs are GlobalContext's documents, decoded once for the tasks of one
	// claim (nil: decoded per task).
	docs *batchDocs
}

// batchDocs is a batch's documents, decoded on first use, and their text
// as the prompt places them. Shared by the tasks of a claim: read only.
type batchDocs struct {
	once sync.Once
	docs map[string]string
	text string
}

// taskExtra is the part of ai_tasks.extra the runner reads.
type taskExtra struct {
	AISettings        json.RawMessage `json:"ai_settings"`
	SystemInstruction string          `json:"system_instruction"`
	ReviewerNotes     string          `json:"reviewer_notes"`
	RejectedOutput    json.RawMessage `json:"rejected_output"`
	// Launcher snapshots, read as a fallback only.
	CurrentStageConfig json.RawMessage `json:"current_stage_config"`
	PreProcess         json.RawMessage `json:"pre_process"`
	PostProcess        json.RawMessage `json:"post_process"`
}

// Outcome is how one run ended.
type Outcome string

// Outcomes of Runner.Run; stable strings used as metric labels.
const (
	OutcomeCompleted   Outcome = "completed"   // output stored, successors created
	OutcomeGenerated   Outcome = "generated"   // output stored, waiting for approval
	OutcomeFailed      Outcome = "failed"      // permanent failure written
	OutcomeRescheduled Outcome = "rescheduled" // transient failure, back to plan with run_after
	OutcomeReleased    Outcome = "released"    // stopped (shutdown) and given back to plan
	OutcomeLost        Outcome = "lost"        // the result could not be written; the lease will expire
)

// Result reports one run.
type Result struct {
	Outcome Outcome
	// Err is the failure written to the task (or the write error when Lost).
	Err error
	// Usage are the model's token counts (zero when no call succeeded).
	Usage model.Usage
	// ModelLatency is the time spent in the model, all regenerations included.
	ModelLatency time.Duration
	// Regenerations is how many times the model was asked again after an
	// invalid output.
	Regenerations int
	// Model is the model that answered (empty when none did); FallbackFrom
	// the models of the stage's chain that failed before it.
	Model        string
	FallbackFrom []string
	// Billed is the usage of every model call of the run (regenerations
	// included); CostUSD its estimated cost (Priced false when a model that
	// answered has no price).
	Billed  model.Usage
	CostUSD float64
	Priced  bool
}

// RunnerConfig configures a Runner. Zero values take the defaults.
type RunnerConfig struct {
	// WorkerID identifies this instance in leases (ai_tasks.locked_by).
	// Default: "orchable-" + a random suffix.
	WorkerID string
	// LeaseDuration is the lease a claim takes. Default 5m.
	LeaseDuration time.Duration
	// DefaultModel is used when a stage names no model. Default
	// model.DefaultModel (the one default; config passes GEMINI_MODEL).
	DefaultModel string
	// MaxRegenerations is how many more times the model is asked after an
	// output that is not valid JSON or does not match the schema. Default 2;
	// set -1 for none.
	MaxRegenerations int
	// MaxAttempts is how many claims a task may use on transient failures
	// before it fails for good. Default 8.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the exponential backoff (with full
	// jitter) of transient failures. Defaults 2s and 10m.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// ModelTimeout bounds one model call. Default 5m.
	ModelTimeout time.Duration
	// WriteTimeout bounds one database write (complete/fail). Default 15s.
	WriteTimeout time.Duration
	// CompleteBatch is the most completions of one user written in one
	// complete_tasks call (group commit: completions that finish while a
	// batch is being written go together in the next). Default 1000, what
	// one call takes (as a claim takes up to 1,000 tasks): capped at 100,
	// the completions of a large backlog waited for one call after another
	// (docs/performance.md, twenty-first round). A group also stops before
	// its outputs pass 1 MiB (maxGroupOutput: large outputs are mostly
	// splits, whose children the same call inserts). 1 writes each
	// completion with its own complete_task call.
	CompleteBatch int
	// CompletionLinger is how long the completion of a leaf (a task of a
	// template whose owner's last completion of it made nothing: no
	// successor, no barrier) waits for others of its owner to be written
	// with it, when none is being written and its task gave back its slot
	// (see completer). Where model calls take seconds, completions
	// come a few at a time and each call's fixed cost was most of a task's
	// database cost; a leaf's completion gates no successor, so stage
	// overhead is unchanged (docs/performance.md, thirty-second round). The
	// task shows completed that much later. Default 50ms (River's completer
	// writes every 50 ms, or 250 ms when few are waiting); negative: none.
	CompletionLinger time.Duration
	// DBCalls is the most claims and completion writes (claim_tasks,
	// complete_tasks, complete_task) in flight at once; the others wait in
	// the engine, each for at most DBCallWait, then go ahead (so one
	// tenant's slow calls delay another's by at most that). On a database
	// with few cores, fewer calls at once cost it less CPU per task
	// (docs/performance.md, fourteenth round). Default 4; negative: no
	// bound.
	DBCalls int
	// DBCallWait is the longest a call waits for one of the DBCalls places.
	// Default 100ms.
	DBCallWait time.Duration
	// Prices turn token usage into an estimated cost (recorded with each
	// completed task in extra.usage.estimated_cost_usd). Default
	// model.DefaultPrices (MODEL_PRICES overrides).
	Prices model.PriceTable
	// Hooks configures pre/post-process webhooks.
	Hooks HookConfig
	// Archetype is the logger and the clock (main's one archetype). Nil:
	// discard logs, wall clock.
	Archetype *baseservice.Archetype
}

func (c *RunnerConfig) withDefaults() *RunnerConfig {
	out := *c
	out.WorkerID = cmp.Or(out.WorkerID, "orchable-"+uuid.NewString()[:8])
	out.LeaseDuration = cmp.Or(out.LeaseDuration, 5*time.Minute)
	out.DefaultModel = cmp.Or(out.DefaultModel, model.DefaultModel)
	if out.MaxRegenerations == 0 {
		out.MaxRegenerations = 2
	} else if out.MaxRegenerations < 0 {
		out.MaxRegenerations = 0
	}
	out.MaxAttempts = cmp.Or(out.MaxAttempts, 8)
	out.BackoffBase = cmp.Or(out.BackoffBase, 2*time.Second)
	out.BackoffMax = cmp.Or(out.BackoffMax, 10*time.Minute)
	out.ModelTimeout = cmp.Or(out.ModelTimeout, 5*time.Minute)
	out.WriteTimeout = cmp.Or(out.WriteTimeout, 15*time.Second)
	out.CompleteBatch = cmp.Or(out.CompleteBatch, 1000)
	out.CompletionLinger = cmp.Or(out.CompletionLinger, 50*time.Millisecond)
	out.DBCalls = cmp.Or(out.DBCalls, 4)
	out.DBCallWait = cmp.Or(out.DBCallWait, 100*time.Millisecond)
	if out.Prices == nil {
		out.Prices = model.DefaultPrices()
	}
	return &out
}

// Runner runs claimed tasks: resolve settings → render → pre-process →
// model (with regenerations) → post-process → complete, or fail/reschedule.
// Every write goes through db as the task's owner.
type Runner struct {
	baseservice.BaseService

	cfg       *RunnerConfig
	db        supabase.DB
	gen       Generator
	hooks     *hookClient
	completer *completer
	gate      *callGate
}

// NewRunner builds a Runner.
func NewRunner(cfg *RunnerConfig, db supabase.DB, gen Generator) *Runner {
	if db == nil || gen == nil {
		panic("pipeline: NewRunner needs a db and a generator")
	}
	cfg = cfg.withDefaults()
	gate := newCallGate(cfg.DBCalls, cfg.DBCallWait)
	r := baseservice.Init(cfg.Archetype, &Runner{cfg: cfg, db: db, gen: gen, gate: gate, completer: newCompleter(db, gate, cfg.WorkerID, cfg.CompleteBatch, cfg.WriteTimeout, cfg.CompletionLinger)})
	r.hooks = newHookClient(&cfg.Hooks, r.Logger)
	return r
}

// WorkerID is the lease owner name of this runner.
func (r *Runner) WorkerID() string { return r.cfg.WorkerID }

// LeaseDuration is the lease length of a claim.
func (r *Runner) LeaseDuration() time.Duration { return r.cfg.LeaseDuration }

// Claim claims up to limit due tasks of the identity's user (optionally only
// the given ids) in one round trip. It asks for claim_tasks' compact result
// (each template and batch once, the task columns Task reads) and gives
// every task its own copy of its template and batch.
func (r *Runner) Claim(ctx context.Context, id supabase.Identity, limit int, taskIDs []uuid.UUID) ([]Claimed, error) {
	claimed, _, err := r.claim(ctx, id, limit, taskIDs, nil)
	return claimed, err
}

// claimCursor is where a claim of an owner's queue may start: the key
// (run_after, id) of the last task the owner's previous claim took, which
// claim_tasks returns as "after" and reads back as p_after_*.
type claimCursor struct {
	RunAfter time.Time `json:"run_after"`
	ID       uuid.UUID `json:"id"`
}

// claimResult is claim_tasks' compact result with p_columns
// (docs/sql-api.md).
type claimResult struct {
	Tasks     claimColumns        `json:"tasks"`
	Templates map[string]Template `json:"templates"`
	Batches   map[uuid.UUID]Batch `json:"batches"`
	After     *claimCursor        `json:"after"`
}

// claimColumns are the claimed tasks as claim_tasks returns them with
// p_columns: one array per column, the i-th task's value at index i of each.
// The database builds an array per column for about half the CPU of an
// object per task (docs/performance.md, twentieth round).
type claimColumns struct {
	ID               []uuid.UUID       `json:"id"`
	UserID           []uuid.UUID       `json:"user_id"`
	BatchID          []*uuid.UUID      `json:"batch_id"`
	LaunchID         []*uuid.UUID      `json:"launch_id"`
	StageKey         []*string         `json:"stage_key"`
	TaskType         []string          `json:"task_type"`
	InputData        []json.RawMessage `json:"input_data"`
	Extra            []json.RawMessage `json:"extra"`
	Attempts         []int             `json:"attempts"`
	RetryCount       []int             `json:"retry_count"`
	StepNumber       []int             `json:"step_number"`
	LoCode           []*string         `json:"lo_code"`
	Sequence         []*int            `json:"sequence"`
	PromptTemplateID []*string         `json:"prompt_template_id"`
	RequiresApproval []bool            `json:"requires_approval"`
	TierSource       []*string         `json:"tier_source"`
}

// tasks are the claimed tasks, leased: status processing, as the claim set
// it (the columnar result leaves out the columns the claim sets alike for
// every task). Columns of different lengths are an error.
func (c *claimColumns) tasks() ([]Task, error) {
	n := len(c.ID)
	for _, l := range []int{
		len(c.UserID), len(c.BatchID), len(c.LaunchID), len(c.StageKey), len(c.TaskType), len(c.InputData),
		len(c.Extra), len(c.Attempts), len(c.RetryCount), len(c.StepNumber), len(c.LoCode), len(c.Sequence),
		len(c.PromptTemplateID), len(c.RequiresApproval), len(c.TierSource),
	} {
		if l != n {
			return nil, fmt.Errorf("the claim's columns have %d and %d values", n, l)
		}
	}
	tasks := make([]Task, n)
	for i := range tasks {
		tasks[i] = Task{
			ID: c.ID[i], UserID: c.UserID[i], BatchID: c.BatchID[i], LaunchID: c.LaunchID[i], StageKey: c.StageKey[i],
			TaskType: c.TaskType[i], Status: "processing", InputData: c.InputData[i], Extra: c.Extra[i],
			Attempts: c.Attempts[i], RetryCount: c.RetryCount[i], StepNumber: c.StepNumber[i], LoCode: c.LoCode[i],
			Sequence: c.Sequence[i], PromptTemplateID: c.PromptTemplateID[i], RequiresApproval: c.RequiresApproval[i],
			TierSource: c.TierSource[i],
		}
	}
	return tasks, nil
}

// decodeClaim decodes claim_tasks' compact result (nothing for an empty or
// null one). It runs for every claim, and decoding is about a tenth of the
// engine's CPU per task, so it uses jsonv1: the v1 API of the module that
// mirrors encoding/json/v2, which is what encoding/json becomes in Go 1.27.
// It has encoding/json's semantics for claimResult's fields
// (FuzzDecodeClaimMatchesEncodingJSON) at about half the CPU
// (BenchmarkDecodeClaim, tasks as objects: 6.0–6.8 → 3.2–3.8 µs per claimed
// task; in columns 1.7). One difference rules out using it everywhere on Go
// 1.26: encoding/json.Number is not a number to it (the module has its own
// Number until it aliases the standard library), so it is kept to fixed
// types: this result's and complete_tasks' (decodeOutcomes).
func decodeClaim(raw []byte, out *claimResult) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := jsonv1.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding the claim: %w", err)
	}
	return nil
}

// claim is Claim from a cursor (nil: from the head of the queue). It also
// returns the cursor for the owner's next claim (nil when the walk of the
// queue claimed nothing).
func (r *Runner) claim(ctx context.Context, id supabase.Identity, limit int, taskIDs []uuid.UUID, after *claimCursor) ([]Claimed, *claimCursor, error) {
	// The cursor's keys are always sent, null without one: the statement
	// the transport prepares depends on the keys, and Direct.Warm prepares
	// this one.
	args := map[string]any{
		"p_worker":          r.cfg.WorkerID,
		"p_lease_seconds":   int(r.cfg.LeaseDuration / time.Second),
		"p_limit":           limit,
		"p_task_ids":        taskIDs,
		"p_compact":         true,
		"p_after_run_after": nil,
		"p_after_id":        nil,
		"p_columns":         true,
	}
	if after != nil {
		args["p_after_run_after"] = after.RunAfter
		args["p_after_id"] = after.ID
	}
	var raw json.RawMessage
	if err := r.gate.rpc(ctx, r.db, id, "claim_tasks", args, &raw); err != nil {
		return nil, nil, fmt.Errorf("error claiming tasks: %w", err)
	}
	var out claimResult
	if err := decodeClaim(raw, &out); err != nil {
		return nil, nil, fmt.Errorf("error claiming tasks: %w", err)
	}
	tasks, err := out.Tasks.tasks()
	if err != nil {
		return nil, nil, fmt.Errorf("error claiming tasks: %w", err)
	}
	for id, tpl := range out.Templates {
		tpl.settings = &templateSettings{}
		out.Templates[id] = tpl
	}
	for id, b := range out.Batches {
		b.docs = &batchDocs{}
		out.Batches[id] = b
	}
	claimed := make([]Claimed, len(tasks))
	for i, t := range tasks {
		claimed[i].Task = t
		if t.PromptTemplateID != nil {
			if tpl, ok := out.Templates[*t.PromptTemplateID]; ok {
				claimed[i].Template = &tpl
			}
		}
		if t.BatchID != nil {
			if b, ok := out.Batches[*t.BatchID]; ok {
				claimed[i].Batch = &b
			}
		}
	}
	return claimed, out.After, nil
}

// Run runs one claimed task to a written outcome. ctx ending (shutdown
// after the grace period) releases the task back to plan.
func (r *Runner) Run(ctx context.Context, id supabase.Identity, c *Claimed) Result {
	return r.run(ctx, id, c, nil)
}

// run is Run, calling executed (if not nil) when the stage's work (hooks,
// model calls, validation) is done and only the write of its outcome is
// left, with the bytes the task holds until then (heldBytes). The
// dispatcher gives back the task's slot there, and executed says whether
// it did: only then may a leaf's completion wait for others
// (RunnerConfig.CompletionLinger), as nothing waits for its write.
func (r *Runner) run(ctx context.Context, id supabase.Identity, c *Claimed, executed func(size int) bool) Result {
	done := make(chan Result, 1)
	r.runThen(ctx, id, c, executed, func(res Result) { done <- res })
	return <-done
}

// runThen is run, calling then with the result instead of returning it:
// on this goroutine, or, for a completion, on the goroutine that writes it
// (completer.completeThen), where then must not block.
func (r *Runner) runThen(ctx context.Context, id supabase.Identity, c *Claimed, executed func(size int) bool, then func(Result)) {
	log := r.taskLogger(c)
	res := r.execute(ctx, c, log)
	if ctx.Err() != nil && res.Outcome == "" {
		then(r.release(id, c, log))
		return
	}
	mayWait := false
	if executed != nil {
		mayWait = executed(heldBytes(c, &res))
	}
	r.writeThen(ctx, id, c, res, mayWait, log, then)
}

// heldBytes is about what a task holds in memory until its outcome is
// written: its input and extra, its output and the model's text (the
// template is shared by the tasks of its stage).
func heldBytes(c *Claimed, res *execution) int {
	return len(c.Task.InputData) + len(c.Task.Extra) + len(res.output) + len(res.resp.Text)
}

// taskLogger returns the logger of one task's run (its task_id and
// batch_id), made on first use: most runs log nothing, and slog formats a
// logger's attributes when the logger is made (about 3 µs of CPU per task
// in throughput-noop's profile).
func (r *Runner) taskLogger(c *Claimed) func() *slog.Logger {
	return sync.OnceValue(func() *slog.Logger {
		log := r.Logger.With(slog.String("task_id", c.Task.ID.String()))
		if c.Task.BatchID != nil {
			log = log.With(slog.String("batch_id", c.Task.BatchID.String()))
		}
		return log
	})
}

// execution is what executing the stage produced before anything is written.
type execution struct {
	Result

	output    json.RawMessage
	resp      model.Response
	permanent bool
	retryAt   time.Time
	// hooksIgnored names the hooks of a foreign template that were not
	// called (recorded in the task's extra.hooks_ignored).
	hooksIgnored []string
}

func (r *Runner) execute(ctx context.Context, c *Claimed, log func() *slog.Logger) execution {
	if c.Template == nil {
		return r.permanentFailure(fmt.Errorf("task has no readable prompt template (prompt_template_id %s)", deref(c.Task.PromptTemplateID)))
	}
	var extra taskExtra
	if len(c.Task.Extra) > 0 {
		_ = json.Unmarshal(c.Task.Extra, &extra) // extra is free-form; unknown shapes are ignored
	}
	settings, err := r.resolveSettings(c.Template, extra.AISettings)
	if err != nil {
		return r.permanentFailure(fmt.Errorf("invalid model settings: %w", err))
	}
	if settings.SystemInstruction == "" {
		settings.SystemInstruction = cmp.Or(deref(c.Template.SystemInstruction), extra.SystemInstruction)
	}
	// Another user's template runs without its author's hooks: they would
	// receive this task's input and output. The owner's own hooks (in the
	// task's extra) still apply.
	var hooks stageSettings
	var hooksIgnored []string
	if c.Template.UserID == nil || *c.Template.UserID != c.Task.UserID {
		hooksIgnored = foreignHooks(c.Template.StageConfig)
		if len(hooksIgnored) > 0 {
			log().InfoContext(ctx, "pipeline: hooks of another user's template ignored", slog.Any("hooks", hooksIgnored))
		}
	} else {
		hooks = templateStage(c.Template)
	}
	cfg := withTaskHooks(hooks, extra)

	input := c.Task.InputData
	if cfg.PreProcess.enabled() {
		input, err = r.hooks.preProcess(ctx, cfg.PreProcess, input)
		if err != nil {
			if ctx.Err() != nil {
				return execution{}
			}
			return r.permanentFailure(err)
		}
	}

	docs, docsText := batchDocuments(c.Batch)
	vars := Vars{Input: input, GlobalContext: docs, documents: docsText, task: &lazyFields{task: &c.Task}}
	prompt, shared, err := RenderShared(c.Template.Template, vars)
	if err != nil {
		return r.permanentFailure(fmt.Errorf("error rendering the prompt: %w", err))
	}
	if extra.ReviewerNotes != "" {
		prompt += "\n\nA reviewer rejected a previous answer with these notes; take them into account:\n" + extra.ReviewerNotes
	}

	req := model.Request{
		UserID:       c.Task.UserID,
		TaskID:       c.Task.ID,
		Settings:     settings,
		Prompt:       prompt,
		Shared:       shared,
		OutputSchema: nullIfEmpty(c.Template.OutputSchema),
		// Free-tier tasks run on the operator's pool keys only.
		FreePool: c.Task.TierSource != nil && *c.Task.TierSource == "free_pool",
	}
	if c.Task.BatchID != nil {
		req.BatchID = *c.Task.BatchID
	}
	var ex execution
	for attempt := 0; ; attempt++ {
		mctx, cancel := context.WithTimeoutCause(ctx, r.cfg.ModelTimeout, errors.New("model call timed out"))
		start := r.Time.Now()
		resp, err := r.gen.Generate(mctx, req)
		ex.ModelLatency += r.Time.Now().Sub(start)
		cancel()
		r.bill(&ex.Result, cmp.Or(resp.Model, settings.Model), resp.Usage, attempt == 0)
		if err == nil {
			ex.resp = resp
			ex.output = resp.Output
			ex.Usage = resp.Usage
			ex.Model, ex.FallbackFrom = resp.Model, resp.FallbackFrom
			break
		}
		if ctx.Err() != nil {
			return execution{} // shutdown: release
		}
		var merr *model.Error
		if errors.As(err, &merr) && merr.Retry == model.RetryRegenerate && attempt < r.cfg.MaxRegenerations {
			ex.Regenerations++
			log().DebugContext(ctx, "pipeline: regenerating after invalid output", slog.Int("attempt", attempt+1), slog.String("error", merr.Message))
			req.Prompt = prompt + "\n\nYour previous answer was rejected: " + truncate(merr.Message, 2000) +
				"\nAnswer again with only JSON that satisfies the required schema."
			continue
		}
		return r.classify(c, err, ex)
	}

	if cfg.PostProcess.enabled() {
		out, err := r.hooks.postProcess(ctx, cfg.PostProcess, input, ex.output)
		if err != nil {
			if ctx.Err() != nil {
				return execution{}
			}
			ex2 := r.permanentFailure(err)
			ex2.Usage, ex2.ModelLatency, ex2.Regenerations = ex.Usage, ex.ModelLatency, ex.Regenerations
			return ex2
		}
		ex.output = out
	}
	ex.Outcome = OutcomeCompleted
	ex.hooksIgnored = hooksIgnored
	return ex
}

// resolveSettings is the stage's model settings: the template's, overlaid
// by the task's own (extra.ai_settings). For a task without its own, the
// template's are resolved once per claim (decoding them for every task was
// about 5 µs of CPU per task in throughput-noop) and each task gets its own
// copy.
func (r *Runner) resolveSettings(t *Template, own json.RawMessage) (model.Settings, error) {
	if t.settings == nil || nonNull(own) != nil {
		return model.ResolveSettings(t.DefaultAISettings, own, r.cfg.DefaultModel)
	}
	ts := t.settings
	ts.once.Do(func() { ts.s, ts.err = model.ResolveSettings(t.DefaultAISettings, nil, r.cfg.DefaultModel) })
	return ts.s.Clone(), ts.err
}

// templateStage is the hooks of t's stage_config, decoded once for the tasks
// of one claim (decoded for every task, it was about 1.4 µs of a noop
// task's engine CPU: docs/performance.md, twentieth round). The caller must
// not write into the result's hooks; withTaskHooks copies what it changes.
func templateStage(t *Template) stageSettings {
	if t.settings == nil {
		return decodeStageSettings(t.StageConfig)
	}
	ts := t.settings
	ts.stageOnce.Do(func() { ts.stage = decodeStageSettings(t.StageConfig) })
	return ts.stage
}

// foreignHooks lists the hooks a template's stage_config enables.
func foreignHooks(raw json.RawMessage) []string {
	s := stageConfig(raw, taskExtra{})
	var out []string
	if s.PreProcess.enabled() {
		out = append(out, "pre_process")
	}
	if s.PostProcess.enabled() {
		out = append(out, "post_process")
	}
	return out
}

// classify turns a model error into a permanent failure or a reschedule.
func (r *Runner) classify(c *Claimed, err error, ex execution) execution {
	now := r.Time.Now()
	ex.Err = err
	var nk *model.NoKeyError
	var merr *model.Error
	switch {
	case errors.As(err, &nk):
		if nk.Until.IsZero() {
			ex.permanent = true
		} else {
			ex.retryAt = nk.Until.Add(jitter(time.Second))
		}
	case errors.As(err, &merr):
		switch merr.Retry {
		case model.RetryLater:
			delay := r.backoff(c.Task.Attempts)
			if merr.RetryAfter > delay {
				delay = merr.RetryAfter + jitter(time.Second)
			}
			ex.retryAt = now.Add(delay)
			if !merr.Until.IsZero() && merr.Until.After(ex.retryAt) {
				ex.retryAt = merr.Until
			}
		default:
			ex.permanent = true
		}
	case errors.Is(err, context.DeadlineExceeded):
		ex.retryAt = now.Add(r.backoff(c.Task.Attempts))
	default:
		ex.permanent = true
	}
	if !ex.permanent && c.Task.Attempts >= r.cfg.MaxAttempts {
		ex.permanent = true
		ex.Err = fmt.Errorf("gave up after %d attempts: %w", c.Task.Attempts, err)
	}
	if ex.permanent {
		ex.Outcome = OutcomeFailed
	} else {
		ex.Outcome = OutcomeRescheduled
	}
	return ex
}

func (r *Runner) permanentFailure(err error) execution {
	return execution{Result: Result{Outcome: OutcomeFailed, Err: err}, permanent: true}
}

// backoff is exponential with full jitter: uniform in [base·2^(n-1)/2, base·2^(n-1)], capped.
func (r *Runner) backoff(attempts int) time.Duration {
	d := r.cfg.BackoffBase
	for i := 1; i < attempts && d < r.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.cfg.BackoffMax)
	return d/2 + jitter(d/2)
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d))) // jitter needs no cryptographic randomness
}

// writeThen stores the outcome through the SQL API and calls then with the
// result. The write gets its own timeout and survives shutdown
// cancellation, so finished work is kept. A completion is handed to the
// completer, and then runs on the goroutine that writes it (see
// completer.completeThen); when that write failed, the completion is
// written again (or the task failed) on a goroutine of its own, as that can
// take as long as a lease. Other outcomes are written on this goroutine.
// mayWait says that nothing waits for the write (the task's slot was given
// back), so a leaf's completion may wait for others.
func (r *Runner) writeThen(ctx context.Context, id supabase.Identity, c *Claimed, ex execution, mayWait bool, log func() *slog.Logger, then func(Result)) {
	if ex.Outcome != OutcomeCompleted {
		then(r.write(ctx, id, c, ex, log))
		return
	}
	args := map[string]any{
		"p_task_id": c.Task.ID,
		"p_worker":  r.cfg.WorkerID,
		"p_output":  ex.output,
		"p_usage":   usageArgs(ex.resp, ex.Result, ex.hooksIgnored),
	}
	// The completer bounds each call it makes by WriteTimeout.
	r.completer.completeThen(context.WithoutCancel(ctx), id, c.Task.UserID, templateKey(c), mayWait, args, func(out completionResult) {
		if out.err == nil {
			then(r.completed(ctx, id, c, ex.Result, args, out, log))
			return
		}
		go func() { then(r.completed(ctx, id, c, ex.Result, args, out, log)) }()
	})
}

// templateKey is what the completer learns leaves by: the task's template
// id, or "" for a task without one.
func templateKey(c *Claimed) string {
	if c.Task.PromptTemplateID == nil {
		return ""
	}
	return *c.Task.PromptTemplateID
}

// completed is the result of a completion whose first write returned out:
// when that failed, the completion is written again (retryCompletion) and,
// failing that, the task is failed.
func (r *Runner) completed(ctx context.Context, id supabase.Identity, c *Claimed, res Result, args map[string]any,
	out completionResult, log func() *slog.Logger,
) Result {
	attempts := 1
	if out.err != nil {
		out, attempts = r.retryCompletion(ctx, id, args, out, log)
	}
	if err := out.err; errors.Is(err, supabase.ErrUnavailable) {
		// The database stayed unavailable for a whole lease (or the
		// service is stopping): the task is not failed for that. Its
		// lease expires and it runs again.
		log().ErrorContext(ctx, "pipeline: the database stayed unavailable; the task's lease will expire and it will run again",
			slog.String("error", err.Error()), slog.Int("attempts", attempts))
		return Result{Outcome: OutcomeLost, Err: err, Usage: res.Usage, ModelLatency: res.ModelLatency}
	}
	if err := out.err; err != nil {
		// The output was valid but cannot be written: fail the task with
		// that reason rather than let its lease expire, which would run
		// the model again for an answer we already had.
		log().ErrorContext(ctx, "pipeline: error completing task; failing it", slog.String("error", err.Error()))
		msg := fmt.Sprintf("the model's output was valid but could not be written after %d attempts (%v); "+
			"the task was failed instead of calling the model again: retry it to run it again", attempts, err)
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
		defer fcancel()
		fargs := map[string]any{
			"p_task_id": c.Task.ID, "p_worker": r.cfg.WorkerID, "p_error": truncate(msg, 4000),
			"p_permanent": true, "p_retry_at": nil,
		}
		if ferr := r.db.RPC(supabase.Idempotent(fctx), id, "fail_task", fargs, nil); ferr != nil {
			log().ErrorContext(ctx, "pipeline: error recording the failed completion", slog.String("error", ferr.Error()))
			return Result{Outcome: OutcomeLost, Err: err, Usage: res.Usage, ModelLatency: res.ModelLatency}
		}
		return Result{Outcome: OutcomeFailed, Err: errors.New(msg), Usage: res.Usage, ModelLatency: res.ModelLatency}
	}
	switch out.Status {
	case "generated":
		res.Outcome = OutcomeGenerated
	case "failed":
		res.Outcome = OutcomeFailed
		res.Err = errors.New(out.Error)
	}
	return res
}

// write stores an outcome other than a completion through the SQL API. The
// write gets its own timeout and survives shutdown cancellation.
func (r *Runner) write(ctx context.Context, id supabase.Identity, c *Claimed, ex execution, log func() *slog.Logger) Result {
	res := ex.Result
	switch ex.Outcome {
	case OutcomeFailed, OutcomeRescheduled:
		args := map[string]any{
			"p_task_id":   c.Task.ID,
			"p_worker":    r.cfg.WorkerID,
			"p_error":     truncate(ex.Err.Error(), 4000),
			"p_permanent": ex.permanent,
			"p_retry_at":  nil,
		}
		if !ex.permanent {
			args["p_retry_at"] = ex.retryAt.UTC()
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
		defer cancel()
		if err := r.db.RPC(supabase.Idempotent(wctx), id, "fail_task", args, nil); err != nil {
			log().ErrorContext(ctx, "pipeline: error recording task failure", slog.String("error", err.Error()))
			return Result{Outcome: OutcomeLost, Err: err}
		}
		if ex.permanent {
			log().InfoContext(ctx, "pipeline: task failed", slog.String("error", ex.Err.Error()))
		} else {
			log().InfoContext(ctx, "pipeline: task rescheduled", slog.Time("run_after", ex.retryAt), slog.String("error", ex.Err.Error()))
		}
		return res
	default:
		return r.release(id, c, log)
	}
}

// completeWriteAttempts is how many times a completion is written before the
// task is failed instead (complete_task is idempotent: a repeat of a write
// that did commit answers duplicate=true), unless the database was
// unavailable (see retryCompletion).
const completeWriteAttempts = 4

// maxWritePause caps the pause between two writes of one completion.
const maxWritePause = 5 * time.Second

// retryCompletion writes a completion whose first write failed again, alone
// (complete_task), each attempt with its own WriteTimeout and a growing pause
// (200ms, 400ms, … up to 5s), and returns the last result and the attempts
// made. Shutdown does not cut the first completeWriteAttempts short: the
// output is paid for. While the database is unavailable (a restart or a
// failover: supabase.ErrUnavailable), it goes on for as long as a lease
// lasts from the first failure, so the answer is written when the database
// is back; shutdown (ctx done) ends that part, and the caller then leaves
// the task to its lease rather than failing it.
func (r *Runner) retryCompletion(ctx context.Context, id supabase.Identity, args map[string]any,
	out completionResult, log func() *slog.Logger,
) (completionResult, int) {
	pause := 200 * time.Millisecond
	deadline := r.Time.Now().Add(r.cfg.LeaseDuration)
	attempt := 1
	for out.err != nil {
		if attempt >= completeWriteAttempts &&
			(!errors.Is(out.err, supabase.ErrUnavailable) || ctx.Err() != nil || !r.Time.Now().Add(pause).Before(deadline)) {
			break
		}
		attempt++
		log().WarnContext(ctx, "pipeline: error completing task; writing it again",
			slog.String("error", out.err.Error()), slog.Int("attempt", attempt))
		sleepCtx := context.WithoutCancel(ctx)
		if attempt > completeWriteAttempts {
			sleepCtx = ctx
		}
		if err := r.Time.Sleep(sleepCtx, pause); err != nil {
			break // shutdown during a pause past the first attempts
		}
		pause = min(pause*2, maxWritePause)
		out = r.completer.single(context.WithoutCancel(ctx), id, args) // bounded by WriteTimeout there
	}
	return out, attempt
}

func (r *Runner) release(id supabase.Identity, c *Claimed, log func() *slog.Logger) Result {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.WriteTimeout)
	defer cancel()
	args := map[string]any{"p_task_id": c.Task.ID, "p_worker": r.cfg.WorkerID}
	if err := r.db.RPC(supabase.Idempotent(ctx), id, "release_task", args, nil); err != nil {
		log().ErrorContext(ctx, "pipeline: error releasing task; its lease will expire", slog.String("error", err.Error()))
		return Result{Outcome: OutcomeLost, Err: err}
	}
	return Result{Outcome: OutcomeReleased}
}

// bill adds one model call's usage and its estimated cost to res.
func (r *Runner) bill(res *Result, modelID string, u model.Usage, first bool) {
	if first {
		res.Priced = true
	}
	if u == (model.Usage{}) {
		return
	}
	res.Billed = res.Billed.Add(u)
	cost, ok := r.cfg.Prices.Cost(modelID, u)
	res.CostUSD += cost
	res.Priced = res.Priced && ok
}

// completionUsage is a completion's p_usage (complete_task, and each
// item's usage in complete_tasks), as complete_one reads it. Typed rather
// than a map, so that encoding it does not sort keys (the completions' JSON
// was about a tenth of the engine's CPU per task in throughput-noop). An
// empty optional field is left out, which the SQL reads as it read null.
type completionUsage struct {
	PromptTokens     int      `json:"prompt_token_count"`
	CandidatesTokens int      `json:"candidates_token_count"`
	ThoughtsTokens   int      `json:"thoughts_token_count"`
	TotalTokens      int      `json:"total_token_count"`
	ModelID          string   `json:"model_id,omitempty"`
	ModelVersion     string   `json:"model_version,omitempty"`
	ResponseID       string   `json:"response_id,omitempty"`
	Regenerations    int      `json:"regenerations"`
	APIKeyID         string   `json:"api_key_id,omitempty"`
	FallbackFrom     []string `json:"fallback_from,omitempty"`
	HooksIgnored     []string `json:"hooks_ignored,omitempty"`
	Usage            usage    `json:"usage"`
}

// usage is what a completed task records in extra.usage: every usage field
// of every call of the run (model.Usage's, inline) and the estimated cost.
type usage struct {
	model.Usage

	Calls            int      `json:"calls"`
	EstimatedCostUSD *float64 `json:"estimated_cost_usd,omitempty"`
}

func usageDetail(res Result) usage {
	d := usage{Usage: res.Billed, Calls: res.Regenerations + 1}
	if res.Priced {
		cost := math.Round(res.CostUSD*1e9) / 1e9
		d.EstimatedCostUSD = &cost
	}
	return d
}

func usageArgs(resp model.Response, res Result, hooksIgnored []string) completionUsage {
	u := completionUsage{
		PromptTokens:     resp.Usage.PromptTokens,
		CandidatesTokens: resp.Usage.CandidatesTokens,
		ThoughtsTokens:   resp.Usage.ThoughtsTokens,
		TotalTokens:      resp.Usage.TotalTokens,
		ModelID:          resp.Model,
		ModelVersion:     resp.ModelVersion,
		ResponseID:       resp.ResponseID,
		Regenerations:    res.Regenerations,
		FallbackFrom:     resp.FallbackFrom,
		HooksIgnored:     hooksIgnored,
		Usage:            usageDetail(res),
	}
	if _, err := uuid.Parse(resp.KeyID); err == nil {
		u.APIKeyID = resp.KeyID
	}
	return u
}

// batchDocuments returns the batch's documents (globalContext) and their
// text as the prompt places them (FormatGlobalContext), made once for the
// tasks of a claim. Decoded for every task, 60 KB of documents cost about
// 0.35 ms of every task's CPU (BenchmarkBatchDocuments). The map is shared:
// the caller must not write into it.
func batchDocuments(b *Batch) (map[string]string, string) {
	if b == nil || b.docs == nil {
		docs := globalContext(b)
		return docs, FormatGlobalContext(docs)
	}
	d := b.docs
	d.once.Do(func() {
		d.docs = globalContext(b)
		d.text = FormatGlobalContext(d.docs)
	})
	return d.docs, d.text
}

// globalContext decodes the batch's global_context {name: text}.
func globalContext(b *Batch) map[string]string {
	if b == nil || len(b.GlobalContext) == 0 {
		return nil
	}
	var raw map[string]any
	if err := json.Unmarshal(b.GlobalContext, &raw); err != nil {
		return nil
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		default:
			b, _ := json.Marshal(v) //nolint:errchkjson // values decoded from JSON encode again
			out[k] = string(b)
		}
	}
	return out
}

// taskFields exposes task columns to the prompt with the lowest precedence.
// Ids and numbers are written directly (json.Marshal per field was about 2
// µs of every task's CPU); strings go through json.Marshal for its escaping.
func taskFields(t *Task) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, 8)
	id := func(k string, v uuid.UUID) {
		b := make([]byte, 0, 38)
		b = append(b, '"')
		b = append(b, v.String()...)
		m[k] = append(b, '"')
	}
	str := func(k, v string) {
		if b, err := json.Marshal(v); err == nil {
			m[k] = b
		}
	}
	id("id", t.ID)
	str("task_type", t.TaskType)
	m["step_number"] = strconv.AppendInt(nil, int64(t.StepNumber), 10)
	if t.StageKey != nil {
		str("stage_key", *t.StageKey)
	}
	if t.BatchID != nil {
		id("batch_id", *t.BatchID)
	}
	if t.LaunchID != nil {
		id("launch_id", *t.LaunchID)
	}
	if t.LoCode != nil {
		str("lo_code", *t.LoCode)
	}
	if t.Sequence != nil {
		m["sequence"] = strconv.AppendInt(nil, int64(*t.Sequence), 10)
	}
	return m
}

func nullIfEmpty(raw json.RawMessage) json.RawMessage {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == "{}" {
		return nil
	}
	return raw
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
