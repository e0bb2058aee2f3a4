package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/webhooks"
)

//nolint:dupword // "install install": the command, then what it does
const signingUsage = `usage:
  orchable webhooks signing install     install the Standard Webhooks signing trigger on ai_tasks (pg_net, pgcrypto, Vault)
  orchable webhooks signing uninstall   drop it
  orchable webhooks signing sql         print the SQL (to review, or to paste into the SQL editor)`

// signingCmd runs `orchable webhooks signing …`: the opt-in signing trigger
// (migrations never install it). It connects with DATABASE_URL as the
// database owner.
func signingCmd(ctx context.Context, getenv func(string) string, stdout io.Writer, args []string) error {
	if len(args) != 1 {
		return errors.New(signingUsage)
	}
	switch args[0] {
	case "sql":
		_, err := io.WriteString(stdout, webhooks.SigningSQL())
		return err
	case "install", "uninstall":
	default:
		return fmt.Errorf("unknown webhooks signing command %q\n%s", args[0], signingUsage)
	}
	pool, err := supabase.Connect(ctx, getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	if args[0] == "uninstall" {
		if err := webhooks.UninstallSigning(ctx, pool); err != nil {
			return fmt.Errorf("removing the webhook signing trigger: %w", err)
		}
		fmt.Fprintln(stdout, "webhook signing trigger removed (the Vault secrets were kept)")
		return nil
	}
	ready, err := webhooks.InstallSigning(ctx, pool)
	if err != nil {
		return fmt.Errorf("installing the webhook signing trigger: %w", err)
	}
	fmt.Fprintln(stdout, "webhook signing trigger installed on public.ai_tasks (orchable_signed_webhook); set WEBHOOK_MODE=standard and WEBHOOK_SIGNING_SECRET on the service")
	if !ready {
		fmt.Fprintf(stdout, "nothing is sent until Vault holds %[1]s and %[2]s:\n"+
			"  select vault.create_secret('https://<service>/webhooks/supabase', '%[1]s');\n"+
			"  select vault.create_secret('whsec_<base64 of 32 random bytes>', '%[2]s');\n",
			webhooks.VaultURL, webhooks.VaultSigningSecret)
	}
	return nil
}
