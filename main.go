// Command orchable runs multi-stage AI content pipelines on Supabase.
//
// Subcommands:
//
//	orchable serve            run the worker service (webhooks, dispatcher, sweeper, user API)
//	orchable migrate [--local] apply the embedded migrations (and the local Supabase shim)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "orchable:", err)
		stop()
		os.Exit(1) //nolint:gocritic // stop is called above
	}
}

func run(ctx context.Context, args []string, getenv func(string) string) error {
	_ = ctx
	_ = getenv
	if len(args) == 0 {
		return fmt.Errorf("usage: orchable <serve|migrate> [flags]")
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}
