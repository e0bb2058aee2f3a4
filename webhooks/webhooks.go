// Package webhooks installs, only when an operator asks for it, filtered
// webhook triggers on public.ai_tasks (filtered_webhooks.sql): they post,
// through pg_net, a slim Supabase-shaped payload when a task becomes
// runnable or is approved by its owner, and nothing for the engine's own
// claims, renewals and completions. The URL and shared secret are kept in
// Supabase Vault. The file is embedded here, outside the migrations, so
// `orchable migrate` and `supabase db push` never install it.
package webhooks

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed filtered_webhooks.sql
var installSQL string

// DefaultHeader is the header the secret is sent in unless another is
// named (the service's WEBHOOK_SECRET_HEADER default).
const DefaultHeader = "X-Supabase-Webhook-Source"

// Vault secret names the triggers read.
const (
	VaultURL    = "orchable_webhook_url"
	VaultSecret = "orchable_webhook_secret" //nolint:gosec // G101: the name of a Vault secret, not a secret
)

const uninstallSQL = `
drop trigger if exists orchable_webhook_insert on public.ai_tasks;
drop trigger if exists orchable_webhook_update on public.ai_tasks;
drop function if exists orchable.send_task_webhooks()`

var headerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,99}$`)

// SQL returns the install script with the secret sent in header.
func SQL(header string) (string, error) {
	if header == "" {
		header = DefaultHeader
	}
	if !headerRE.MatchString(header) {
		return "", fmt.Errorf("WEBHOOK_SECRET_HEADER %q is not a valid header name", header)
	}
	return strings.ReplaceAll(installSQL, "'"+DefaultHeader+"'", "'"+header+"'"), nil
}

// Conn is what Install needs: a connection as the database owner (the
// direct connection or the session pooler; not PostgREST).
type Conn interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Options configure Install.
type Options struct {
	// Header carries the secret. Default DefaultHeader.
	Header string
	// URL and Secret, when both set, are stored in Vault (created or
	// updated) as VaultURL and VaultSecret.
	URL, Secret string
}

// Report is what Install found and did.
type Report struct {
	// Warnings name other ai_tasks webhooks (a Studio Database Webhook, the
	// signing trigger) that would announce the same work again.
	Warnings []string
	// SecretsReady reports whether both Vault secrets exist.
	SecretsReady bool
}

// Install creates the filtered triggers in one transaction. It needs pg_net
// (created when available) and Vault; it fails with what is missing.
func Install(ctx context.Context, db Conn, opts Options) (*Report, error) {
	script, err := SQL(opts.Header)
	if err != nil {
		return nil, err
	}
	if (opts.URL == "") != (opts.Secret == "") {
		return nil, errors.New("store the webhook URL and the secret together (--url and WEBHOOK_SECRET)")
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var hasVault, hasNet, netAvailable bool
	if err := tx.QueryRow(ctx, `select exists (select from pg_namespace where nspname = 'vault'),
		exists (select from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'net' and p.proname = 'http_post'),
		exists (select from pg_available_extensions where name = 'pg_net')`).Scan(&hasVault, &hasNet, &netAvailable); err != nil {
		return nil, err
	}
	switch {
	case !hasVault:
		return nil, errors.New("supabase Vault (schema vault) is missing: the filtered webhooks keep their URL and secret there")
	case !hasNet && !netAvailable:
		return nil, errors.New("pg_net is not available: enable it (Dashboard → Database → Extensions) and run this again")
	case !hasNet:
		if _, err := tx.Exec(ctx, "create extension if not exists pg_net"); err != nil {
			return nil, fmt.Errorf("creating pg_net: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, script); err != nil {
		return nil, fmt.Errorf("installing the filtered webhook triggers: %w", err)
	}
	if opts.URL != "" {
		for name, value := range map[string]string{VaultURL: opts.URL, VaultSecret: opts.Secret} {
			if _, err := tx.Exec(ctx, `select case
				when exists (select from vault.decrypted_secrets where name = $1)
				then (select vault.update_secret(s.id, $2) from vault.decrypted_secrets s where s.name = $1 limit 1)::text
				else vault.create_secret($2, $1)::text end`, name, value); err != nil {
				return nil, fmt.Errorf("storing %s in Vault: %w", name, err)
			}
		}
	}
	rep := &Report{}
	rows, err := tx.Query(ctx, `select t.tgname || ' (' || n.nspname || '.' || p.proname || ')'
		from pg_trigger t join pg_proc p on p.oid = t.tgfoid join pg_namespace n on n.oid = p.pronamespace
		where t.tgrelid = 'public.ai_tasks'::regclass and not t.tgisinternal
		  and ((n.nspname = 'supabase_functions' and p.proname = 'http_request') or p.proname = 'orchable_send_signed_webhook')
		order by 1`)
	if err != nil {
		return nil, err
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		rep.Warnings = append(rep.Warnings, "trigger "+o+" also sends ai_tasks webhooks: remove it, or work is announced twice")
	}
	if err := tx.QueryRow(ctx, `select count(distinct name) = 2 from vault.decrypted_secrets where name in ($1, $2)`,
		VaultURL, VaultSecret).Scan(&rep.SecretsReady); err != nil {
		return nil, err
	}
	return rep, tx.Commit(ctx)
}

// Uninstall drops the filtered triggers and their function (the Vault
// secrets stay).
func Uninstall(ctx context.Context, db Conn) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, uninstallSQL); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
