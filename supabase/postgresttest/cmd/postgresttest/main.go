// Command postgresttest serves the PostgREST-protocol test server
// (package postgresttest) as a separate process, for end-to-end tests such
// as a supabase-js client. Test-only.
//
//	postgresttest -listen 127.0.0.1:54321 -db postgres://… -jwt-secret … [-jwks-url …] [-anon-key …]
//	  [-publishable-key …] [-secret-key …] [-max-rows 1000]
//
// Flags default to the environment: POSTGRESTTEST_LISTEN, DATABASE_URL,
// JWT_SECRET, JWKS_URL, ANON_KEY (comma-separated accepted legacy apikeys),
// PUBLISHABLE_KEY and SECRET_KEY (new-format keys, comma-separated).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/supabase/postgresttest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "postgresttest:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", cmp.Or(os.Getenv("POSTGRESTTEST_LISTEN"), "127.0.0.1:54321"), "listen address")
	dbURL := flag.String("db", os.Getenv("DATABASE_URL"), "PostgreSQL URL (a role that can SET ROLE anon/authenticated/service_role)")
	secret := flag.String("jwt-secret", os.Getenv("JWT_SECRET"), "HS256 JWT secret")
	jwksURL := flag.String("jwks-url", os.Getenv("JWKS_URL"), "JWKS URL for asymmetric tokens")
	anonKey := flag.String("anon-key", os.Getenv("ANON_KEY"), "accepted legacy apikey values, comma-separated (empty: not checked)")
	publishable := flag.String("publishable-key", os.Getenv("PUBLISHABLE_KEY"), "accepted sb_publishable_ keys, comma-separated (act as anon)")
	secretKeys := flag.String("secret-key", os.Getenv("SECRET_KEY"), "accepted sb_secret_ keys, comma-separated (act as service_role)")
	maxRows := flag.Int("max-rows", 0, "db-max-rows (0: Supabase's 1000; negative: no limit)")
	flag.Parse()
	if *dbURL == "" {
		return errors.New("-db (DATABASE_URL) is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg := &postgresttest.Config{JWTSecret: []byte(*secret), JWKSURL: *jwksURL, MaxRows: *maxRows}
	if *anonKey != "" {
		cfg.APIKeys = strings.Split(*anonKey, ",")
	}
	if *publishable != "" {
		cfg.PublishableKeys = strings.Split(*publishable, ",")
	}
	if *secretKeys != "" {
		cfg.SecretKeys = strings.Split(*secretKeys, ",")
	}
	s, err := postgresttest.New(ctx, pool, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	srv := &http.Server{Addr: *listen, Handler: s, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.InfoContext(ctx, "postgresttest: listening", slog.String("addr", *listen))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
