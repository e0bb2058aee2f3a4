package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/orchable/orchable/config"
	"github.com/orchable/orchable/devdemo"
	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

func migrate(ctx context.Context, getenv func(string) string, stdout io.Writer, local, includeAll bool) error {
	dbURL := getenv("DATABASE_URL")
	if supabase.DetectPooler(dbURL) == supabase.PoolerTransaction {
		// The runner holds a session advisory lock across several
		// transactions: behind a transaction pooler it can be taken on one
		// server connection and released on another (a later migrate hangs).
		return &supabase.TransactionPoolerError{Op: "orchable migrate", Host: supabase.PoolerHost(dbURL)}
	}
	pool, err := supabase.Connect(ctx, dbURL)
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
func dataPath(ctx context.Context, cfg *config.Config) (supabase.DB, *supabase.UserIdentities, func(), error) {
	ids, err := supabase.NewUserIdentities(nil, &cfg.Auth)
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg.Supabase.Transport == config.TransportDirect {
		pool, err := supabase.Connect(ctx, cfg.DB.URL)
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
	pool, err := supabase.Connect(ctx, cfg.DB.URL)
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
// the direct transport — with the demo batch of package devdemo, and prints
// its progress and a summary. With once it exits after the summary;
// otherwise it keeps serving.
func dev(ctx context.Context, getenv func(string) string, stdout io.Writer, rows int, once bool) error {
	demo, err := devdemo.Prepare(ctx, getenv, stdout, rows)
	if err != nil {
		return err
	}
	defer demo.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readyc := make(chan *app, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- serve(ctx, demo.Getenv, stdout, func(a *app) {
			a.console.EnableDevSignIn(demo.Session) // `orchable dev` only
			readyc <- a
		})
	}()
	var a *app
	select {
	case a = <-readyc:
	case err := <-errc:
		return err
	}
	if err := demo.Show(ctx, hostPort(a)); err != nil {
		cancel()
		<-errc //nolint:errcheck // after cancel the server returns the cancellation; err is what failed
		return err
	}
	if once {
		cancel()
		return <-errc
	}
	fmt.Fprintln(stdout, "\nserving; Ctrl-C to stop")
	return <-errc
}

// hostPort is the service address as a client on this machine dials it.
func hostPort(a *app) string {
	addr := a.ln.Addr().String()
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return "localhost" + addr[i:]
	}
	return addr
}
