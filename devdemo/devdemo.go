// Package devdemo is the demo of `orchable dev`: it prepares a local
// database (the Supabase shim, the migrations, a demo user, the sample
// pipeline and a batch of it) and the configuration the service runs with,
// then, once main has started the service, prints the batch's progress and a
// summary. main starts and stops the service itself; this package never
// serves.
package devdemo

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/config"
	"github.com/orchable/orchable/console"
	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
)

// DefaultDatabaseURL is the embedded default of `orchable dev`.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/orchable_dev?sslmode=disable"

// UserID owns the demo pipeline and batch.
var UserID = uuid.MustParse("d0000000-0000-4000-8000-000000000001") //nolint:gochecknoglobals // constant value

const userEmail = "dev@orchable.local"

// Demo is a prepared demo: its database, configuration and launched batch.
type Demo struct {
	out           io.Writer
	getenv        func(string) string
	pool          *pgxpool.Pool
	db            supabase.DB
	minter        *rls.Minter
	id            supabase.Identity
	token         string
	webhookSecret string
	batchID       uuid.UUID
	taskIDs       []uuid.UUID
}

// Prepare creates the database of DATABASE_URL (default DefaultDatabaseURL)
// if missing, migrates it with the local Supabase shim, imports the sample
// pipeline as the demo user and launches a batch of rows input rows (1 to
// 1000), printing each step to out. Close releases the database pool.
func Prepare(ctx context.Context, getenv func(string) string, out io.Writer, rows int) (_ *Demo, err error) {
	if rows < 1 || rows > 1000 {
		return nil, errors.New("--rows must be between 1 and 1000")
	}
	dbURL := cmp.Or(getenv("DATABASE_URL"), DefaultDatabaseURL)
	if err := ensureDatabase(ctx, dbURL); err != nil {
		return nil, err
	}
	pool, err := supabase.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	d := &Demo{out: out, pool: pool, db: supabase.NewDirect(pool, nil)}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	// The dev database is a scratch copy: a migration added out of order
	// (an older timestamp than the newest applied) is applied anyway.
	res, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true, IncludeAll: true})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "database  %s (%d migrations applied now, %d before)\n", redact(dbURL), len(res.Applied), len(res.Skipped))

	secret := randomHex(32)
	d.webhookSecret = "dev-" + randomHex(16)
	env := map[string]string{
		"DATABASE_URL":             dbURL,
		"ORCHABLE_TRANSPORT":       "direct",
		"ORCHABLE_MODEL_PROVIDER":  "offline",
		"ORCHABLE_OFFLINE_LATENCY": "150ms",
		"ORCHABLE_OFFLINE_JITTER":  "250ms",
		"SUPABASE_URL":             "http://127.0.0.1:54321",
		"SUPABASE_JWT_SECRET":      secret,
		"JWKS_DISABLED":            "true",
		"WEBHOOK_SECRET":           d.webhookSecret,
		"SWEEP_INTERVAL":           "1s",
		"FOLD_INTERVAL":            "200ms",
		"LOG_LEVEL":                "warn",
	}
	d.getenv = func(k string) string {
		if v := getenv(k); v != "" && k != "DATABASE_URL" {
			return v
		}
		return env[k]
	}
	cfg, err := config.Load(d.getenv)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}

	// The demo user, pipeline and batch.
	if _, err := pool.Exec(ctx, `insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)
		on conflict (id) do nothing`, UserID, userEmail); err != nil {
		return nil, fmt.Errorf("error creating the demo user: %w", err)
	}
	d.minter, err = rls.NewMinter(nil, &cfg.Auth)
	if err != nil {
		return nil, err
	}
	tok, err := d.minter.Mint(UserID)
	if err != nil {
		return nil, err
	}
	d.token = tok.JWT
	d.id = supabase.Identity{Token: tok.JWT, Claims: tok.ClaimsJSON}
	bundle, err := pipeline.SampleBundle()
	if err != nil {
		return nil, err
	}
	imp, err := pipeline.Import(ctx, d.db, d.id, bundle)
	if err != nil {
		return nil, fmt.Errorf("error importing the sample pipeline: %w", err)
	}
	fmt.Fprintf(out, "pipeline  %q: %s\n", bundle.Name, strings.Join(stageKeys(bundle), " → "))

	topics := []string{"photosynthesis", "the water cycle", "fractions", "plate tectonics", "the French revolution", "supply and demand"}
	input := make([]map[string]any, rows)
	for i := range input {
		input[i] = map[string]any{"objective": "Understand " + topics[i%len(topics)], "grade": 6 + i%6, "lo_code": fmt.Sprintf("LO-%03d", i+1)}
	}
	var launched struct {
		BatchID uuid.UUID   `json:"batch_id"`
		TaskIDs []uuid.UUID `json:"task_ids"`
	}
	if err := d.db.RPC(ctx, d.id, "launch_batch", map[string]any{
		"p_template_id": imp.RootTemplateID, "p_rows": input, "p_name": "Demo batch " + time.Now().Format("15:04:05"),
		"p_orchestrator_config_id": imp.ConfigID,
	}, &launched); err != nil {
		return nil, fmt.Errorf("error launching the demo batch: %w", err)
	}
	d.batchID, d.taskIDs = launched.BatchID, launched.TaskIDs
	fmt.Fprintf(out, "batch     %s: %d root tasks launched\n", d.batchID, len(d.taskIDs))
	return d, nil
}

// Getenv is the environment the service runs with: the caller's, over the
// demo's defaults (direct transport, offline model, a fresh JWT secret and
// webhook secret), except DATABASE_URL, which is always the demo's.
func (d *Demo) Getenv(k string) string { return d.getenv(k) }

// Session is the console's dev sign-in: a fresh token for the demo user.
func (d *Demo) Session() (console.Session, error) {
	t, err := d.minter.Mint(UserID)
	if err != nil {
		return console.Session{}, err
	}
	return console.Session{AccessToken: t.JWT, ExpiresAt: t.ExpiresAt, UserID: UserID.String(), Email: userEmail}, nil
}

// Show prints where the service at hostPort (as a client on this machine
// dials it) and its console are, follows the batch until every task is
// finished, and prints a summary and commands to try.
func (d *Demo) Show(ctx context.Context, hostPort string) error {
	fmt.Fprintf(d.out, "service   http://%s (offline model, direct transport)\n", hostPort)
	fmt.Fprintf(d.out, "console   http://%s%s/ (sign in as the demo user)\n\n", hostPort, console.Path)

	start := time.Now()
	if err := watchBatch(ctx, d.out, d.db, d.id, d.batchID); err != nil {
		return err
	}
	printSummary(ctx, d.out, d.pool, d.batchID, time.Since(start))
	fmt.Fprintf(d.out, `
try it:
  curl -s -X POST http://%[1]s/webhooks/supabase -H 'X-Supabase-Webhook-Source: %[2]s' -H 'Content-Type: application/json' \
    -d '{"type":"INSERT","table":"ai_tasks","schema":"public","record":{"id":"%[3]s","status":"plan","user_id":"%[4]s"},"old_record":null}'
  curl -s http://%[1]s/api/v1/batches/%[5]s -H 'Authorization: Bearer %[6]s'
  curl -s http://%[1]s/metrics | grep orchable_
`, hostPort, d.webhookSecret, d.taskIDs[0], UserID, d.batchID, d.token)
	return nil
}

// Close releases the demo's database pool.
func (d *Demo) Close() { d.pool.Close() }

func stageKeys(b *pipeline.Bundle) []string {
	ordered := b.Ordered()
	out := make([]string, 0, len(ordered))
	for _, s := range ordered {
		out = append(out, s.StageKey+" ("+s.Cardinality+")")
	}
	return out
}

// ensureDatabase creates the database of rawURL on its server if missing.
func ensureDatabase(ctx context.Context, rawURL string) error {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	name := cfg.Database
	admin := *cfg
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, &admin)
	if err != nil {
		return fmt.Errorf("error connecting to PostgreSQL at %s:%d (is it running? `make run` starts it): %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "select exists (select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("error creating database %s: %w", name, err)
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
