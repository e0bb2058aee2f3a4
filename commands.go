package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/config"
	"github.com/orchable/orchable/console"
	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
)

// defaultDevDatabaseURL is the embedded default of `orchable dev`.
const defaultDevDatabaseURL = "postgres://postgres@127.0.0.1:5432/orchable_dev?sslmode=disable"

// devUserID owns the demo pipeline and batch of `orchable dev`.
var devUserID = uuid.MustParse("d0000000-0000-4000-8000-000000000001") //nolint:gochecknoglobals // constant value

func connect(ctx context.Context, rawURL string) (*pgxpool.Pool, error) {
	if rawURL == "" {
		return nil, errors.New("DATABASE_URL is required")
	}
	// Behind a transaction pooler: unnamed statements, no statement cache.
	cfg, err := supabase.ParsePoolConfig(rawURL, supabase.DetectPooler(rawURL))
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("error connecting to DATABASE_URL: %w", err)
	}
	return pool, nil
}

func migrate(ctx context.Context, getenv func(string) string, stdout io.Writer, local, includeAll bool) error {
	dbURL := getenv("DATABASE_URL")
	if supabase.DetectPooler(dbURL) == supabase.PoolerTransaction {
		// The runner holds a session advisory lock across several
		// transactions: behind a transaction pooler it can be taken on one
		// server connection and released on another (a later migrate hangs).
		return &supabase.TransactionPoolerError{Op: "orchable migrate", Host: supabase.PoolerHost(dbURL)}
	}
	pool, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: local, IncludeAll: includeAll, Logger: newLogger(stdout, slog.LevelInfo)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrations: %d applied, %d already applied", len(res.Applied), len(res.Skipped))
	if res.ShimApplied {
		fmt.Fprint(stdout, " (local Supabase shim applied)")
	}
	fmt.Fprintln(stdout)
	return nil
}

// importBundle loads an original bundle as the owner's templates, through
// the data path as the owner (RLS applies).
func importBundle(ctx context.Context, getenv func(string) string, stdout io.Writer, owner, dir string) error {
	ownerID, err := uuid.Parse(owner)
	if err != nil {
		return fmt.Errorf("--owner must be the owner's user UUID: %w", err)
	}
	bundle, err := pipeline.LoadBundle(dir)
	if err != nil {
		return err
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	db, ids, closeFunc, err := dataPath(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFunc()
	id, err := ids.Identity(ctx, ownerID)
	if err != nil {
		return err
	}
	res, err := pipeline.Import(ctx, db, id, bundle)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %q: config %s, %d templates, root template %s\n", bundle.Name, res.ConfigID, len(res.TemplateIDs), res.RootTemplateID)
	return nil
}

// dataPath builds the configured transport and identity source for the
// one-shot commands.
func dataPath(ctx context.Context, cfg *config.Config) (supabase.DB, pipeline.IdentitySource, func(), error) {
	var ids pipeline.IdentitySource = claimsIdentity{issuer: cfg.Auth.Issuer()}
	if cfg.Auth.SigningKey.IsSet() || cfg.Auth.JWTSecret.IsSet() {
		m, err := rls.NewMinter(&rls.Base{}, &cfg.Auth)
		if err != nil {
			return nil, nil, nil, err
		}
		ids = mintedIdentity{m}
	}
	if cfg.Supabase.Transport == config.TransportDirect {
		pool, err := connect(ctx, cfg.DB.URL)
		if err != nil {
			return nil, nil, nil, err
		}
		return supabase.NewDirect(pool, nil), ids, pool.Close, nil
	}
	client, err := supabase.New(&supabase.Config{URL: cfg.Supabase.URL, APIKey: cfg.Supabase.AnonKey})
	if err != nil {
		return nil, nil, nil, err
	}
	return client, ids, func() {}, nil
}

// breakFrontendFlag is the acknowledgement `orchable keys encrypt` needs.
const (
	breakFrontendFlag      = "break-original-frontend"
	breakFrontendFlagUsage = "--" + breakFrontendFlag
)

// breakFrontendRefusal explains why `orchable keys encrypt` needs the flag.
const breakFrontendRefusal = `keys encrypt: refusing to run without ` + breakFrontendFlagUsage + `.

Encrypting replaces every API key in user_api_keys.api_key_encrypted with a
ciphertext (enc:v2:...) that only this service, holding ORCHABLE_KEKS, can read.
The original orchable front end reads that column back as the plaintext key (the
API key settings page, and runs started in the browser): after encryption it
would send the ciphertext to the model vendor and those calls would fail, and
keys it saves afterwards stay plaintext until the next run.

Runs through this service are not affected. If only this service calls the
model with users' keys, run again with ` + breakFrontendFlagUsage + `.
See the README, "Key encryption".`

// encryptKeys encrypts plaintext api_key_encrypted values in place with the
// active KEK, bound to their row and owner, and rewrites legacy v1 values and
// values under older KEKs. It runs with a direct connection as the table
// owner; running it twice changes nothing. Rows it cannot decrypt are listed
// (ids only) and left as they are.
func encryptKeys(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if len(cfg.Model.KEKs) == 0 {
		return errors.New("ORCHABLE_KEKS: required to encrypt keys (kid:base64 of 32 random bytes)")
	}
	cipher, err := model.NewCipher(cfg.Model.KEKs)
	if err != nil {
		return fmt.Errorf("ORCHABLE_KEKS: %w", err)
	}
	pool, err := connect(ctx, cfg.DB.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := model.EncryptStoredKeys(ctx, pool, cipher)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user_api_keys: %d scanned, %d encrypted, %d re-encrypted with the active KEK %s, %d unreadable\n",
		res.Scanned, res.Encrypted, res.Reencrypted, cipher.ActiveKID(), len(res.Unreadable))
	for _, u := range res.Unreadable {
		fmt.Fprintf(stdout, "  unreadable: key %s of user %s left as it is: %v\n", u.ID, u.UserID, u.Err)
	}
	return nil
}

// dev runs the service on the embedded default — local PostgreSQL with the
// Supabase shim and the migrations, the sample pipeline, the offline model,
// the direct transport — launches a demo batch and prints its progress and a
// summary. With once it exits after the summary; otherwise it keeps serving.
func dev(ctx context.Context, getenv func(string) string, stdout io.Writer, rows int, once bool) error {
	if rows < 1 || rows > 1000 {
		return errors.New("--rows must be between 1 and 1000")
	}
	dbURL := firstNonEmpty(getenv("DATABASE_URL"), defaultDevDatabaseURL)
	if err := ensureDatabase(ctx, dbURL); err != nil {
		return err
	}
	pool, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The dev database is a scratch copy: a migration added out of order
	// (an older timestamp than the newest applied) is applied anyway.
	res, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true, IncludeAll: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database  %s (%d migrations applied now, %d before)\n", redact(dbURL), len(res.Applied), len(res.Skipped))

	secret := randomHex(32)
	webhookSecret := "dev-" + randomHex(16)
	env := map[string]string{
		"DATABASE_URL":             dbURL,
		"ORCHABLE_TRANSPORT":       "direct",
		"ORCHABLE_MODEL_PROVIDER":  "offline",
		"ORCHABLE_OFFLINE_LATENCY": "150ms",
		"ORCHABLE_OFFLINE_JITTER":  "250ms",
		"SUPABASE_URL":             "http://127.0.0.1:54321",
		"SUPABASE_JWT_SECRET":      secret,
		"JWKS_DISABLED":            "true",
		"WEBHOOK_SECRET":           webhookSecret,
		"SWEEP_INTERVAL":           "1s",
		"FOLD_INTERVAL":            "200ms",
		"LOG_LEVEL":                "warn",
	}
	devEnv := func(k string) string {
		if v := getenv(k); v != "" && k != "DATABASE_URL" {
			return v
		}
		return env[k]
	}
	cfg, err := config.Load(devEnv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}

	// The demo user, pipeline and batch.
	if _, err := pool.Exec(ctx, `insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', 'dev@orchable.local')
		on conflict (id) do nothing`, devUserID); err != nil {
		return fmt.Errorf("error creating the demo user: %w", err)
	}
	minter, err := rls.NewMinter(&rls.Base{}, &cfg.Auth)
	if err != nil {
		return err
	}
	tok, err := minter.Mint(devUserID)
	if err != nil {
		return err
	}
	id := supabase.Identity{Token: tok.JWT, Claims: tok.ClaimsJSON}
	db := supabase.NewDirect(pool, nil)
	bundle, err := pipeline.SampleBundle()
	if err != nil {
		return err
	}
	imp, err := pipeline.Import(ctx, db, id, bundle)
	if err != nil {
		return fmt.Errorf("error importing the sample pipeline: %w", err)
	}
	fmt.Fprintf(stdout, "pipeline  %q: %s\n", bundle.Name, strings.Join(stageKeys(bundle), " → "))

	topics := []string{"photosynthesis", "the water cycle", "fractions", "plate tectonics", "the French revolution", "supply and demand"}
	input := make([]map[string]any, rows)
	for i := range input {
		input[i] = map[string]any{"objective": "Understand " + topics[i%len(topics)], "grade": 6 + i%6, "lo_code": fmt.Sprintf("LO-%03d", i+1)}
	}
	var launched struct {
		BatchID uuid.UUID   `json:"batch_id"`
		TaskIDs []uuid.UUID `json:"task_ids"`
	}
	if err := db.RPC(ctx, id, "launch_batch", map[string]any{
		"p_template_id": imp.RootTemplateID, "p_rows": input, "p_name": "Demo batch " + time.Now().Format("15:04:05"),
		"p_orchestrator_config_id": imp.ConfigID,
	}, &launched); err != nil {
		return fmt.Errorf("error launching the demo batch: %w", err)
	}
	fmt.Fprintf(stdout, "batch     %s: %d root tasks launched\n", launched.BatchID, len(launched.TaskIDs))

	// The service itself.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readyc := make(chan *app, 1)
	errc := make(chan error, 1)
	devSession := func() (console.Session, error) {
		t, err := minter.Mint(devUserID)
		if err != nil {
			return console.Session{}, err
		}
		return console.Session{AccessToken: t.JWT, ExpiresAt: t.ExpiresAt, UserID: devUserID.String(), Email: "dev@orchable.local"}, nil
	}
	go func() {
		errc <- serve(ctx, devEnv, stdout, func(a *app) {
			a.console.EnableDevSignIn(devSession) // `orchable dev` only
			readyc <- a
		})
	}()
	var a *app
	select {
	case a = <-readyc:
	case err := <-errc:
		return err
	}
	fmt.Fprintf(stdout, "service   http://%s (offline model, direct transport)\n", hostPort(a))
	fmt.Fprintf(stdout, "console   http://%s%s/ (sign in as the demo user)\n\n", hostPort(a), console.Path)

	start := time.Now()
	if err := watchBatch(ctx, stdout, db, id, launched.BatchID); err != nil {
		cancel()
		<-errc //nolint:errcheck // after cancel the server returns the cancellation; err is what failed
		return err
	}
	printSummary(ctx, stdout, pool, launched.BatchID, time.Since(start))
	fmt.Fprintf(stdout, `
try it:
  curl -s -X POST http://%[1]s/webhooks/supabase -H 'X-Supabase-Webhook-Source: %[2]s' -H 'Content-Type: application/json' \
    -d '{"type":"INSERT","table":"ai_tasks","schema":"public","record":{"id":"%[3]s","status":"plan","user_id":"%[4]s"},"old_record":null}'
  curl -s http://%[1]s/api/v1/batches/%[5]s -H 'Authorization: Bearer %[6]s'
  curl -s http://%[1]s/metrics | grep orchable_
`, hostPort(a), webhookSecret, launched.TaskIDs[0], devUserID, launched.BatchID, tok.JWT)
	if once {
		cancel()
		return <-errc
	}
	fmt.Fprintln(stdout, "\nserving; Ctrl-C to stop")
	return <-errc
}

func stageKeys(b *pipeline.Bundle) []string {
	ordered := b.Ordered()
	out := make([]string, 0, len(ordered))
	for _, s := range ordered {
		out = append(out, s.StageKey+" ("+s.Cardinality+")")
	}
	return out
}

type progress struct {
	Status     string                    `json:"status"`
	Total      int                       `json:"total"`
	Pending    int                       `json:"pending"`
	Processing int                       `json:"processing"`
	Completed  int                       `json:"completed"`
	Failed     int                       `json:"failed"`
	Tokens     int                       `json:"total_tokens"`
	ByStage    map[string]map[string]int `json:"by_stage"`
}

// watchBatch prints a progress line whenever the batch's exact progress
// changes, until every task is finished.
func watchBatch(ctx context.Context, w io.Writer, db supabase.DB, id supabase.Identity, batch uuid.UUID) error {
	var last string
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Minute)
	for {
		var p progress
		if err := db.RPC(ctx, id, "get_batch_progress", map[string]any{"p_batch_id": batch}, &p); err != nil {
			return err
		}
		line := fmt.Sprintf("progress  %3d/%-3d done  (%d running, %d waiting, %d failed)  %s",
			p.Completed+p.Failed, p.Total, p.Processing, p.Pending, p.Failed, stageLine(p.ByStage))
		if line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		if p.Total > 0 && p.Pending == 0 && p.Processing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errors.New("the demo batch did not finish within 5 minutes")
		case <-tick.C:
		}
	}
}

func stageLine(by map[string]map[string]int) string {
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		done := by[k]["completed"] + by[k]["failed"]
		total := 0
		for _, n := range by[k] {
			total += n
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, done, total))
	}
	return strings.Join(parts, " · ")
}

func printSummary(ctx context.Context, w io.Writer, pool *pgxpool.Pool, batch uuid.UUID, elapsed time.Duration) {
	rows, err := pool.Query(ctx, `select coalesce(stage_key, ''), status::text, count(*), coalesce(sum(total_token_count), 0),
		min(step_number) from public.ai_tasks where batch_id = $1 group by 1, 2 order by 5, 1, 2`, batch)
	if err != nil {
		fmt.Fprintf(w, "summary unavailable: %v\n", err)
		return
	}
	type line struct {
		stage, status string
		n, tokens     int
		step          int
	}
	lines, _ := pgx.CollectRows(rows, func(r pgx.CollectableRow) (line, error) {
		var l line
		return l, r.Scan(&l.stage, &l.status, &l.n, &l.tokens, &l.step)
	})
	fmt.Fprintf(w, "\nsummary   batch %s finished in %s\n", batch, elapsed.Round(time.Millisecond))
	total, tokens := 0, 0
	for _, l := range lines {
		fmt.Fprintf(w, "          step %d  %-10s %-10s %3d tasks  %6d tokens\n", l.step, l.stage, l.status, l.n, l.tokens)
		total += l.n
		tokens += l.tokens
	}
	var status string
	var counters [5]int
	// Fold and read in one transaction that waits for the fold lock: the
	// sweeper may be folding at this moment, and fold_batch_counters returns
	// 0 at once then, before its folder has committed.
	if tx, err := pool.Begin(ctx); err == nil {
		_, _ = tx.Exec(ctx, "select pg_advisory_xact_lock(hashtext('orchable.fold_batch_counters'))")
		_, _ = tx.Exec(ctx, "select public.fold_batch_counters()")
		_ = tx.QueryRow(ctx, `select status, total_tasks, completed_tasks, failed_tasks, pending_tasks, processing_tasks from public.task_batches where id = $1`, batch).
			Scan(&status, &counters[0], &counters[1], &counters[2], &counters[3], &counters[4])
		_ = tx.Commit(ctx)
	}
	fmt.Fprintf(w, "          %d tasks, %d tokens; batch status %s (counters: %d total, %d completed, %d failed)\n",
		total, tokens, status, counters[0], counters[1], counters[2])
	var out json.RawMessage
	if err := pool.QueryRow(ctx, `select output_data from public.ai_tasks where batch_id = $1 and stage_key = 'validator' limit 1`, batch).Scan(&out); err == nil {
		fmt.Fprintf(w, "          validator output: %s\n", truncate(string(out), 200))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
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

// hostPort is the service address as a client on this machine dials it.
func hostPort(a *app) string {
	addr := a.ln.Addr().String()
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return "localhost" + addr[i:]
	}
	return addr
}
