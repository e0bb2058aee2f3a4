// Command fakegemini runs the fake Gemini server (model/geminitest) as a
// process for end-to-end tests. It listens on loopback only and prints its
// base URL on the first line of standard output.
//
//	fakegemini -addr 127.0.0.1:8089 -keys 'AIzaKEY1=proj-a,AIzaKEY2=proj-b' -rpm 10 -rpd 500
//
// Prompts containing [[fakegemini:<kind>]] get a scripted answer: invalid_json,
// fenced, safety, recitation, prompt_blocked, max_tokens, unavailable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/orchable/orchable/model/geminitest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakegemini:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	keys := flag.String("keys", "", "comma-separated key=project pairs that are valid")
	rpm := flag.Int("rpm", 0, "requests per minute per project and model (0 = unlimited)")
	tpm := flag.Int("tpm", 0, "input tokens per minute per project and model (0 = unlimited)")
	rpd := flag.Int("rpd", 0, "requests per day per project and model (0 = unlimited)")
	retired := flag.String("retired", "", "comma-separated model ids that answer 404")
	latency := flag.Duration("latency", 0, "latency added to every answer")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("invalid -addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("-addr must be a loopback IP address")
	}
	cfg := geminitest.Config{
		Keys:         map[string]string{},
		DefaultQuota: geminitest.Quota{RPM: *rpm, TPM: *tpm, RPD: *rpd},
	}
	for kv := range strings.SplitSeq(*keys, ",") {
		if kv == "" {
			continue
		}
		k, p, ok := strings.Cut(kv, "=")
		if !ok || k == "" || p == "" {
			return errors.New("invalid -keys entry (want key=project)")
		}
		cfg.Keys[k] = p
	}
	if *retired != "" {
		cfg.RetiredModels = strings.Split(*retired, ",")
	}
	if *latency > 0 {
		d := *latency
		cfg.Latency = func(int) time.Duration { return d }
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", *addr)
	if err != nil {
		return fmt.Errorf("error listening: %w", err)
	}
	srv, hs := geminitest.NewUnstarted(cfg)
	_ = hs.Listener.Close()
	hs.Listener = ln
	srv.Start()
	defer srv.Close()
	fmt.Println(srv.URL)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
