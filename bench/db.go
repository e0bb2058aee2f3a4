package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/orchable/orchable/migrations"
)

// env is the benchmark's connection to the server: it builds a migrated
// template database once per process (orchable's and River's) and clones a
// fresh database from it for every run.
type env struct {
	o         *options
	log       *slog.Logger
	admin     *pgx.Conn
	pgVersion string
	faultCost string // what a minor page fault costs here (pageFaultCost)
	orchTmpl  string
	riverTmpl string
}

func newEnv(ctx context.Context, o *options, log *slog.Logger) (*env, error) {
	admin, err := pgx.Connect(ctx, o.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("error connecting to %s: %w", o.AdminURL, err)
	}
	e := &env{o: o, log: log, admin: admin}
	if err := admin.QueryRow(ctx, "show server_version").Scan(&e.pgVersion); err != nil {
		return nil, fmt.Errorf("error reading the server version: %w", err)
	}
	if d, err := pageFaultCost(); err != nil {
		e.faultCost = "n/a (" + err.Error() + ")"
	} else {
		e.faultCost = fmt.Sprintf("%.2f µs", float64(d.Nanoseconds())/1e3)
	}
	suffix := randSuffix()
	e.orchTmpl, e.riverTmpl = "bench_tmpl_orchable_"+suffix, "bench_tmpl_river_"+suffix
	if err := e.buildTemplate(ctx, e.orchTmpl, func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := migrations.Migrate(ctx, p, &migrations.Config{Local: true})
		return err
	}); err != nil {
		return nil, err
	}
	if err := e.buildTemplate(ctx, e.riverTmpl, func(ctx context.Context, p *pgxpool.Pool) error {
		m, err := rivermigrate.New(riverpgxv5.New(p), nil)
		if err != nil {
			return err
		}
		_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
		return err
	}); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, db := range []string{e.orchTmpl, e.riverTmpl} {
		if db != "" {
			_, _ = e.admin.Exec(ctx, "drop database if exists "+pgx.Identifier{db}.Sanitize()+" with (force)")
		}
	}
	_ = e.admin.Close(ctx)
}

func (e *env) buildTemplate(ctx context.Context, name string, migrate func(context.Context, *pgxpool.Pool) error) error {
	if _, err := e.admin.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("error creating %s: %w", name, err)
	}
	p, err := pgxpool.New(ctx, e.dbURL(name))
	if err != nil {
		return fmt.Errorf("error connecting to %s: %w", name, err)
	}
	defer p.Close()
	if err := migrate(ctx, p); err != nil {
		return fmt.Errorf("error migrating %s: %w", name, err)
	}
	return nil
}

func (e *env) syncCommit() string {
	if e.o.SyncCommit != "" {
		return e.o.SyncCommit
	}
	return "server default (on)"
}

// dbURL is the admin URL with another database.
func (e *env) dbURL(db string) string {
	u := e.o.AdminURL
	i := strings.LastIndex(u, "/")
	q := ""
	if j := strings.Index(u[i:], "?"); j >= 0 {
		q = u[i+j:]
	}
	return u[:i+1] + db + q
}

// database is one fresh database of a run.
type database struct {
	e     *env
	Name  string
	Pool  *pgxpool.Pool
	River bool // River's database, without orchable's schema
}

// freshDB clones the orchable (river=false) or River template into a new
// database and returns a pool of o.Conns connections (as the table owner).
func (e *env) freshDB(ctx context.Context, river bool, conns int32) (*database, error) {
	tmpl := e.orchTmpl
	if river {
		tmpl = e.riverTmpl
	}
	name := "bench_" + randSuffix()
	if _, err := e.admin.Exec(ctx, fmt.Sprintf("create database %s template %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{tmpl}.Sanitize())); err != nil {
		return nil, fmt.Errorf("error creating database %s: %w", name, err)
	}
	if e.o.SyncCommit != "" {
		if _, err := e.admin.Exec(ctx, "alter database "+pgx.Identifier{name}.Sanitize()+" set synchronous_commit = "+pgx.Identifier{e.o.SyncCommit}.Sanitize()); err != nil {
			return nil, fmt.Errorf("error setting synchronous_commit: %w", err)
		}
	}
	if e.o.FuncStats > 0 && !river {
		if _, err := e.admin.Exec(ctx, "alter database "+pgx.Identifier{name}.Sanitize()+" set track_functions = 'all'"); err != nil {
			return nil, fmt.Errorf("error setting track_functions: %w", err)
		}
	}
	if e.o.Proposed && !river {
		if err := applyProposed(ctx, e.dbURL(name)); err != nil {
			return nil, err
		}
	}
	cfg, err := pgxpool.ParseConfig(e.dbURL(name))
	if err != nil {
		return nil, fmt.Errorf("error parsing the database URL: %w", err)
	}
	cfg.MaxConns = conns
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("error connecting to %s: %w", name, err)
	}
	return &database{e: e, Name: name, Pool: p, River: river}, nil
}

func (d *database) close() {
	d.Pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d.e.o.FuncStats > 0 {
		d.printFunctionStats(ctx)
	}
	if callTracer != nil && !d.River {
		callTracer.print(os.Stderr, d.Name)
	}
	_, _ = d.e.admin.Exec(ctx, "drop database if exists "+pgx.Identifier{d.Name}.Sanitize()+" with (force)")
}

func randSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// createUser inserts an auth.users row (the local Supabase shim's).
func createUser(ctx context.Context, p *pgxpool.Pool) (uuid.UUID, error) {
	id := uuid.New()
	if _, err := p.Exec(ctx, "insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)",
		id, id.String()+"@bench.test"); err != nil {
		return uuid.Nil, fmt.Errorf("error creating a user: %w", err)
	}
	return id, nil
}

// stageDef is one prompt template of a bench pipeline.
type stageDef struct {
	ID, Key, Prompt string
	Config          map[string]any
	Next            []string
	OutputSchema    string
}

func createTemplates(ctx context.Context, p *pgxpool.Pool, owner uuid.UUID, stages ...stageDef) error {
	for _, s := range stages {
		cfg, _ := json.Marshal(s.Config)
		next, _ := json.Marshal(append([]string{}, s.Next...))
		var schema any
		if s.OutputSchema != "" {
			schema = s.OutputSchema
		}
		if _, err := p.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, user_id, output_schema)
			values ($1, $2, $3, $4, $5, $6, $7::jsonb)`, s.ID, s.Prompt, s.Key, cfg, next, owner, schema); err != nil {
			return fmt.Errorf("error creating template %s: %w", s.ID, err)
		}
	}
	return nil
}

// copyTasks bulk-inserts n one-stage tasks of the template for the users
// (round-robin) with COPY, as the table owner, in the given status.
func copyTasks(ctx context.Context, p *pgxpool.Pool, users []uuid.UUID, tmpl, stageKey, status string, n int) ([]uuid.UUID, error) {
	return copyTasksIn(ctx, p, users, tmpl, stageKey, status, n, uuid.Nil)
}

// copyTasksIn is copyTasks with the tasks in a batch (uuid.Nil: none). In a
// batch each task is a launched root, as launch_batch and the front end make
// them: the batch's id and launch id, and root_task_id its own id.
func copyTasksIn(ctx context.Context, p *pgxpool.Pool, users []uuid.UUID, tmpl, stageKey, status string, n int, batch uuid.UUID) ([]uuid.UUID, error) {
	var launch any
	if batch != uuid.Nil {
		var l uuid.UUID
		if err := p.QueryRow(ctx, "select launch_id from public.task_batches where id = $1", batch).Scan(&l); err != nil {
			return nil, fmt.Errorf("error reading the launch of batch %s: %w", batch, err)
		}
		launch = l
	}
	ids := make([]uuid.UUID, n)
	now := time.Now().Add(-time.Second)
	rows := make([][]any, n)
	for i := range n {
		ids[i] = uuid.New()
		var completed, batchID, root any
		if status != "plan" {
			completed = now
		}
		if batch != uuid.Nil {
			batchID, root = batch, ids[i]
		}
		rows[i] = []any{ids[i], "generic", status, fmt.Sprintf(`{"n": %d}`, i), users[i%len(users)], 1, stageKey, tmpl, now, completed, batchID, launch, root}
	}
	_, err := p.CopyFrom(ctx, pgx.Identifier{"public", "ai_tasks"},
		[]string{"id", "task_type", "status", "input_data", "user_id", "step_number", "stage_key", "prompt_template_id", "run_after", "completed_at", "batch_id", "launch_id", "root_task_id"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return nil, fmt.Errorf("error copying %d tasks: %w", n, err)
	}
	return ids, nil
}

// vacuumAnalyze vacuums and analyzes tables, as autovacuum would have (it is
// off on the bench server).
func vacuumAnalyze(ctx context.Context, p *pgxpool.Pool, tables ...string) error {
	for _, t := range tables {
		if _, err := p.Exec(ctx, "vacuum (analyze) "+t); err != nil {
			return fmt.Errorf("error vacuuming %s: %w", t, err)
		}
	}
	return nil
}

func analyze(ctx context.Context, p *pgxpool.Pool, tables ...string) error {
	for _, t := range tables {
		if _, err := p.Exec(ctx, "analyze "+t); err != nil {
			return fmt.Errorf("error analysing %s: %w", t, err)
		}
	}
	return nil
}

// proposed holds SQL changes recommended for the migrations, applied to the
// bench databases with -proposed to measure them (never to the service).
//
//go:embed proposed/*.sql
var proposed embed.FS //nolint:gochecknoglobals // embedded files

func applyProposed(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("error connecting: %w", err)
	}
	defer conn.Close(ctx)
	entries, err := proposed.ReadDir("proposed")
	if err != nil {
		return fmt.Errorf("error reading the proposed SQL: %w", err)
	}
	for _, en := range entries {
		b, err := proposed.ReadFile("proposed/" + en.Name())
		if err != nil {
			return fmt.Errorf("error reading %s: %w", en.Name(), err)
		}
		if _, err := conn.Exec(ctx, string(b)); err != nil {
			return fmt.Errorf("error applying proposed/%s: %w", en.Name(), err)
		}
	}
	return nil
}

// printFunctionStats prints the run's top SQL functions by self time
// (pg_stat_user_functions; -function-stats). The pool is closed first, so
// every backend has exited and flushed its counters.
func (d *database) printFunctionStats(ctx context.Context) {
	conn, err := pgx.Connect(ctx, d.e.dbURL(d.Name))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: function stats:", err)
		return
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `select schemaname || '.' || funcname, calls, total_time, self_time
		from pg_stat_user_functions order by self_time desc limit $1`, d.e.o.FuncStats)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: function stats:", err)
		return
	}
	defer rows.Close()
	fmt.Fprintf(os.Stderr, "functions of %s by self time:\n%-40s %10s %12s %12s\n", d.Name, "function", "calls", "total ms", "self ms")
	for rows.Next() {
		var name string
		var calls int64
		var total, self float64
		if err := rows.Scan(&name, &calls, &total, &self); err != nil {
			fmt.Fprintln(os.Stderr, "bench: function stats:", err)
			return
		}
		fmt.Fprintf(os.Stderr, "%-40s %10d %12.1f %12.1f\n", name, calls, total, self)
	}
}
