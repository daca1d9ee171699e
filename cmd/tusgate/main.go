// Command tusgate serves resumable uploads (tus 1.0 and the IETF draft) into
// S3 or a local directory. Run `tusgate --help` for the settings.
//
// The same binary is the command-line client: `tusgate upload`, `tusgate
// login` and `tusgate logout` (package internal/cli).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/internal/cli"
	"github.com/tusgate/tusgate/internal/server"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitConfig  = 2
	exitUnready = 1
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "tusgate", versionString())
			return exitOK
		case "healthcheck":
			return healthcheck(args[1:], os.LookupEnv, stderr)
		case "help":
			config.Usage(stdout)
			cli.Usage(stdout)
			return exitOK
		case "upload", "login", "logout":
			return cli.Run(args, cli.Env{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Version: versionString()})
		}
	}

	cfg, err := config.Load(args, os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		config.Usage(stdout)
		cli.Usage(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "tusgate:", err)
		return exitConfig
	}
	log := newLogger(cfg, stderr)
	if cfg.InsecureNoAuth {
		log.Warn("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach " + cfg.Listen + " can upload, read and delete uploads")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, os.LookupEnv, log)
	if err == nil {
		err = srv.Run(ctx)
	}
	var se *server.StartupError
	switch {
	case errors.As(err, &se):
		fmt.Fprintln(stderr, "tusgate:", se)
		return exitConfig
	case err != nil:
		log.Error("tusgate stopped", "error", err.Error())
		return exitFailed
	}
	return exitOK
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// healthcheck asks the local server's /healthz, for container HEALTHCHECKs
// in images without curl. It reads the server's settings from the same
// sources in the same order (flags > TUSGATE_* > the --config or
// TUSGATE_CONFIG file > defaults), so a server configured by any of them
// is probed on its --listen address, over HTTPS with --tls-cert.
func healthcheck(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	// Container runtimes reserve exit code 2 in health checks: every
	// failure here exits 1.
	cfg, err := config.Read(args, lookupEnv)
	if err != nil {
		fmt.Fprintln(stderr, "tusgate healthcheck:", err)
		return exitUnready
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "tusgate healthcheck: --listen %q is not host:port\n", cfg.Listen)
		return exitUnready
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: 5 * time.Second}
	if cfg.TLSCert != "" {
		scheme = "https"
		// The server's certificate names its public host, not loopback.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback liveness probe only
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "tusgate healthcheck:", err)
		return exitUnready
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "tusgate healthcheck: %s answered %s\n", url, resp.Status)
		return exitUnready
	}
	return exitOK
}
