package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/webhooks"
)

const webhooksUsage = `usage:
  orchable webhooks install [--url URL]   create the filtered ai_tasks webhook triggers (pg_net, Vault);
                                          with --url, store URL and WEBHOOK_SECRET in Vault too
  orchable webhooks uninstall             drop them
  orchable webhooks sql                   print the SQL (to review, or to paste into the SQL editor)
  orchable webhooks signing install|uninstall|sql
                                          the opt-in Standard Webhooks signing trigger (full rows, every write)`

// webhooksCmd runs `orchable webhooks …`: the opt-in filtered webhook
// triggers (package webhooks). It connects with DATABASE_URL as the
// database owner and reads WEBHOOK_SECRET_HEADER and WEBHOOK_SECRET.
func webhooksCmd(ctx context.Context, getenv func(string) string, stdout io.Writer, args []string) error {
	if len(args) == 0 {
		return errors.New(webhooksUsage)
	}
	header := getenv("WEBHOOK_SECRET_HEADER")
	switch args[0] {
	case "signing":
		return signingCmd(ctx, getenv, stdout, args[1:])
	case "sql":
		s, err := webhooks.SQL(header)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, s)
		return err
	case "install":
		fs := flag.NewFlagSet("webhooks install", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		url := fs.String("url", "", "the service's webhook URL (https://…/webhooks/supabase) to store in Vault with WEBHOOK_SECRET")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%w\n%s", err, webhooksUsage)
		}
		opts := webhooks.Options{Header: header}
		if *url != "" {
			if !strings.HasPrefix(*url, "https://") && !strings.HasPrefix(*url, "http://") {
				return errors.New("--url must be an http(s) URL")
			}
			opts.URL, opts.Secret = *url, getenv("WEBHOOK_SECRET")
			if opts.Secret == "" {
				return errors.New("WEBHOOK_SECRET is required with --url (the secret the triggers send)")
			}
		}
		pool, err := supabase.Connect(ctx, getenv("DATABASE_URL"))
		if err != nil {
			return err
		}
		defer pool.Close()
		rep, err := webhooks.Install(ctx, pool, opts)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "filtered webhook triggers installed on public.ai_tasks (orchable_webhook_insert, orchable_webhook_update)")
		for _, w := range rep.Warnings {
			fmt.Fprintln(stdout, "warning:", w)
		}
		if !rep.SecretsReady {
			fmt.Fprintf(stdout, "nothing is sent until Vault holds %s and %s: run again with --url, or\n"+
				"  select vault.create_secret('https://<service>/webhooks/supabase', '%s');\n"+
				"  select vault.create_secret('<WEBHOOK_SECRET>', '%s');\n",
				webhooks.VaultURL, webhooks.VaultSecret, webhooks.VaultURL, webhooks.VaultSecret)
		}
		return nil
	case "uninstall":
		pool, err := supabase.Connect(ctx, getenv("DATABASE_URL"))
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := webhooks.Uninstall(ctx, pool); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "filtered webhook triggers removed (the Vault secrets were kept)")
		return nil
	default:
		return fmt.Errorf("unknown webhooks command %q\n%s", args[0], webhooksUsage)
	}
}
