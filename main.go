// Command orchable runs multi-stage AI content pipelines on Supabase.
//
// Subcommands:
//
//	orchable serve                        run the service (webhooks, dispatcher, sweeper, user API)
//	orchable dev                          run locally on the embedded default and show a batch completing
//	orchable migrate [--local] [--include-all]  apply the embedded migrations (--local: the Supabase shim first)
//	orchable import --owner UUID DIR      import an original pipeline bundle as the owner's templates
//	orchable keys encrypt --break-original-frontend  encrypt user_api_keys rows in place (idempotent)
//
// main.go is wiring only: configuration → logger → database → clients →
// pipeline → Echo → run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/orchable/orchable/config"
)

func main() {
	config.TuneRuntime(os.Getenv) // the process's collector, before anything allocates much
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "orchable:", config.EnvNames(err))
		os.Exit(1)
	}
}

const usage = `usage: orchable <command> [flags]

commands:
  serve                      run the service
  dev [--rows N] [--once]    run locally on the embedded default (local PostgreSQL, offline model)
  migrate [--local] [--include-all]  apply the embedded migrations to DATABASE_URL
  import --owner UUID DIR    import a pipeline bundle (orchestration.json + prompts/*.md)
  webhooks install|uninstall|sql  opt-in filtered ai_tasks webhook triggers (pg_net + Vault; see README)
  webhooks signing install|uninstall|sql  opt-in Standard Webhooks signing trigger (not installed by migrate)
  keys encrypt --break-original-frontend
                             encrypt API keys in user_api_keys (needs ORCHABLE_KEKS; the original
                             front end can no longer use them, see README "Key encryption")
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage) //nolint:staticcheck // ST1005: the usage text is printed as it is, line breaks and all
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, getenv, stdout, nil)
	case "dev":
		fs := flag.NewFlagSet("dev", flag.ContinueOnError)
		rows := fs.Int("rows", 3, "number of input rows in the demo batch")
		once := fs.Bool("once", false, "exit after the demo batch completes")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		return dev(ctx, getenv, stdout, *rows, *once)
	case "migrate":
		fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
		local := fs.Bool("local", false, "apply the local Supabase shim when the auth schema is missing")
		includeAll := fs.Bool("include-all", false, "also apply migrations older than the newest applied one (as supabase db push --include-all)")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		return migrate(ctx, getenv, stdout, *local, *includeAll)
	case "import":
		fs := flag.NewFlagSet("import", flag.ContinueOnError)
		owner := fs.String("owner", "", "UUID of the user who will own the templates")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: orchable import --owner UUID <bundle-dir>")
		}
		return importBundle(ctx, getenv, stdout, *owner, fs.Arg(0))
	case "keys":
		if len(rest) == 0 || rest[0] != "encrypt" {
			return errors.New("usage: orchable keys encrypt " + breakFrontendFlagUsage)
		}
		fs := flag.NewFlagSet("keys encrypt", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		ack := fs.Bool(breakFrontendFlag, false, "acknowledge that the original front end can no longer read the encrypted keys")
		if err := fs.Parse(rest[1:]); err != nil {
			return fmt.Errorf("%w\nusage: orchable keys encrypt %s", err, breakFrontendFlagUsage)
		}
		if fs.NArg() != 0 {
			return errors.New("usage: orchable keys encrypt " + breakFrontendFlagUsage)
		}
		if !*ack {
			return errors.New(breakFrontendRefusal) //nolint:staticcheck // ST1005: printed as it is, line breaks and all
		}
		return encryptKeys(ctx, getenv, stdout)
	case "webhooks":
		return webhooksCmd(ctx, getenv, stdout, rest)
	case "help", "-h", "--help":
		_, _ = io.WriteString(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
