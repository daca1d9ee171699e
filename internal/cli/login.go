package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/tusgate/tusgate/internal/devicelogin"
)

const loginUsage = `Usage: tusgate login --issuer URL --client-id ID [--audience A] [--scope S]

Signs in with the OAuth 2.0 device flow: shows a URL and a code to confirm
in a browser (on any device), then keeps the tokens in the user's config
directory (mode 0600) for tusgate upload, which refreshes them as needed.

Auth0: --issuer https://TENANT.auth0.com/ --client-id <a Native
application with the Device Code grant> --audience <your API identifier>.
tusgate --dev: --issuer http://127.0.0.1:8080/dev/oidc --client-id tusgate-cli

Flags:
`

func login(ctx context.Context, args []string, env Env) int {
	var issuer, clientID, audience, scope string
	fs := flag.NewFlagSet("tusgate login", flag.ContinueOnError)
	fs.StringVar(&issuer, "issuer", "", "OpenID issuer `URL`")
	fs.StringVar(&clientID, "client-id", "", "OAuth client `ID` of the command line (a public client with the device code grant)")
	fs.StringVar(&audience, "audience", "", "API audience the tokens are for (Auth0)")
	fs.StringVar(&scope, "scope", "offline_access", "scopes to ask for, space separated (offline_access: a refresh token)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), loginUsage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, env); !ok {
		return code
	}
	var problems []string
	if issuer == "" {
		problems = append(problems, "--issuer is required")
	}
	if clientID == "" {
		problems = append(problems, "--client-id is required")
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if len(problems) > 0 {
		fmt.Fprintln(env.Stderr, "tusgate login:", strings.Join(problems, "; "))
		return ExitUsage
	}
	path, err := devicelogin.DefaultPath()
	if err != nil {
		fmt.Fprintln(env.Stderr, "tusgate login:", err)
		return ExitFailed
	}
	tok, err := devicelogin.Login(ctx, devicelogin.Request{
		Issuer: issuer, ClientID: clientID, Audience: audience, Scopes: strings.Fields(scope),
		Prompt: func(uri, code, complete string) {
			if complete != "" {
				fmt.Fprintf(env.Stderr, "To log in, open %s\n(or open %s and enter the code)\nand confirm the code: %s\n", complete, uri, code)
			} else {
				fmt.Fprintf(env.Stderr, "To log in, open %s\nand enter the code: %s\n", uri, code)
			}
		},
	})
	if ctx.Err() != nil {
		fmt.Fprintln(env.Stderr, "tusgate login: interrupted")
		return ExitInterrupted
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, "tusgate login:", err)
		return ExitFailed
	}
	if err := devicelogin.Save(path, tok); err != nil {
		fmt.Fprintln(env.Stderr, "tusgate login:", err)
		return ExitFailed
	}
	msg := "Logged in; tokens saved in " + path
	if !tok.Expiry.IsZero() {
		msg += fmt.Sprintf(" (access token valid until %s", tok.Expiry.Local().Format(time.DateTime))
		if tok.RefreshToken != "" {
			msg += ", then refreshed"
		}
		msg += ")"
	}
	fmt.Fprintln(env.Stderr, msg)
	return ExitOK
}

func logout(args []string, env Env) int {
	fs := flag.NewFlagSet("tusgate logout", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: tusgate logout\n\nRemoves the tokens tusgate login stored.") }
	if code, ok := parseFlags(fs, args, env); !ok {
		return code
	}
	path, err := devicelogin.DefaultPath()
	if err != nil {
		fmt.Fprintln(env.Stderr, "tusgate logout:", err)
		return ExitFailed
	}
	removed, err := devicelogin.Remove(path)
	switch {
	case err != nil:
		fmt.Fprintln(env.Stderr, "tusgate logout:", err)
		return ExitFailed
	case removed:
		fmt.Fprintln(env.Stderr, "Logged out; removed "+path)
	default:
		fmt.Fprintln(env.Stderr, "Not logged in")
	}
	return ExitOK
}
