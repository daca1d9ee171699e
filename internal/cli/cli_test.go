package cli

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/tusgate/tusgate/internal/client"
)

func runCLI(args []string, env map[string]string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Run(args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errOut.String()
}

func TestUploadUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upload"}, "name at least one FILE"},
		{[]string{"upload", "--parallel", "0", "a"}, "--parallel 0 must be at least 1"},
		{[]string{"upload", "--streams", "65", "a"}, "--streams 65 must be between 1 and 64"},
		{[]string{"upload", "--chunk-size", "lots", "a"}, `--chunk-size "lots" must be a size`},
		{[]string{"upload", "-", "-"}, `"-" (standard input) can be given once`},
		{[]string{"upload", "--endpoint", "ftp://x/", "a"}, `endpoint "ftp://x/" is not an http(s) URL`},
		{[]string{"upload", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"login", "--client-id", "x"}, "--issuer is required"},
	} {
		code, _, stderr := runCLI(tc.args, nil)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, ExitUsage, tc.want)
		}
	}
	if code, _, _ := runCLI([]string{"upload", "-h"}, nil); code != ExitOK {
		t.Errorf("-h: exit %d", code)
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	j := fs.Bool("json", false, "")
	n := fs.Int("parallel", 1, "")
	files, err := parseInterspersed(fs, []string{"a", "--json", "-", "--parallel", "3", "b", "--", "--c"})
	if err != nil || !*j || *n != 3 || strings.Join(files, " ") != "a - b --c" {
		t.Fatalf("files %q json %t parallel %d err %v", files, *j, *n, err)
	}
}

func TestOrderedPrinter(t *testing.T) {
	var out bytes.Buffer
	p := newOrderedPrinter(&out, 3)
	p.done(2, client.Result{URL: "u2", Checksums: map[string]string{"sha256": "S2==", "crc32": "C2=="}})
	p.done(1, client.Result{Err: errors.New("failed")})
	if out.Len() != 0 {
		t.Fatalf("printed before the first file ended: %q", out.String())
	}
	p.done(0, client.Result{URL: "u0"})
	if out.String() != "u0\nu2 crc32=C2== sha256=S2==\n" {
		t.Fatalf("printed %q", out.String())
	}
}

func TestChooseAuth(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no stored login
	env := Env{Getenv: func(k string) string { return map[string]string{"TUSGATE_TOKEN": "from-env"}[k] }}
	a, err := chooseAuth("", env)
	if tok, _ := a.Token(t.Context()); err != nil || tok != "from-env" {
		t.Fatalf("TUSGATE_TOKEN: %q %v", tok, err)
	}
	a, _ = chooseAuth("from-flag", env)
	if tok, _ := a.Token(t.Context()); tok != "from-flag" {
		t.Fatalf("--token: %q", tok)
	}
	if _, err := a.Refresh(t.Context(), "from-flag"); err == nil {
		t.Fatal("a static token refreshed")
	}
	if a, err := chooseAuth("", Env{Getenv: func(string) string { return "" }}); a != nil || err != nil {
		t.Fatalf("no token anywhere: %v %v", a, err)
	}
}
