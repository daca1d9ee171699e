// Package cli holds tusgate's client commands: upload, login and logout.
// Each parses its flags, wires packages client and devicelogin together
// and returns an exit code.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// Exit codes of the client commands.
const (
	ExitOK          = 0
	ExitFailed      = 1   // a file was not stored, or login failed
	ExitUsage       = 2   // bad flags or arguments
	ExitInterrupted = 130 // SIGINT or SIGTERM; run the command again to resume
)

// Env is what a command reads from outside its arguments.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Version        string
}

// Commands lists the client commands Run knows.
var Commands = []string{"upload", "login", "logout"}

// Run runs the client command args[0] with args[1:].
func Run(args []string, env Env) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	switch args[0] {
	case "upload":
		return upload(ctx, args[1:], env)
	case "login":
		return login(ctx, args[1:], env)
	case "logout":
		return logout(args[1:], env)
	}
	fmt.Fprintf(env.Stderr, "tusgate: unknown command %q\n", args[0])
	return ExitUsage
}

// Usage lists the client commands, after the server's flag reference.
func Usage(w io.Writer) {
	fmt.Fprint(w, `
Client commands (the same binary uploads to a tusgate; -h after each for its flags):
  tusgate login --issuer URL --client-id ID [--audience A]
                         sign in with the OAuth device flow; tokens kept in the config dir
  tusgate upload [--endpoint URL] FILE...
                         send files resumably (run again to resume); - reads standard input
  tusgate logout         remove the stored tokens
`)
}

// parseFlags parses args, printing usage on -h and problems on errors.
// ok false means return code.
func parseFlags(fs *flag.FlagSet, args []string, env Env) (code int, ok bool) {
	fs.SetOutput(env.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, false
		}
		return ExitUsage, false
	}
	return 0, true
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
