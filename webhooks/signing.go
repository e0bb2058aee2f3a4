package webhooks

import (
	"context"
	_ "embed"
)

// signingSQL installs the Standard Webhooks signing trigger
// (orchable_signed_webhook). Since migration 20261204001000 it is opt-in:
// the migrations never install it.
//
//go:embed signing.sql
var signingSQL string

// VaultSigningSecret names the Vault secret the signing trigger reads besides VaultURL.
const VaultSigningSecret = "orchable_webhook_signing_secret" //nolint:gosec // G101: the name of a Vault secret, not a secret

const uninstallSigningSQL = `
drop trigger if exists orchable_signed_webhook on public.ai_tasks;
drop function if exists public.orchable_send_signed_webhook()`

// SigningSQL returns the script that installs the signing trigger, to
// review or to run in the SQL editor.
func SigningSQL() string { return signingSQL }

// InstallSigning installs the signing trigger in one transaction. It needs
// Vault, and pg_net and pgcrypto (created when available); it fails with
// what is missing. It reports whether Vault already holds both secrets
// (nothing is sent until it does).
func InstallSigning(ctx context.Context, db Conn) (secretsReady bool, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, signingSQL); err != nil {
		return false, err
	}
	if err := tx.QueryRow(ctx, `select count(distinct name) = 2 from vault.decrypted_secrets where name in ($1, $2)`,
		VaultURL, VaultSigningSecret).Scan(&secretsReady); err != nil {
		return false, err
	}
	return secretsReady, tx.Commit(ctx)
}

// UninstallSigning drops the signing trigger and its function (the Vault
// secrets stay).
func UninstallSigning(ctx context.Context, db Conn) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, uninstallSigningSQL); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
