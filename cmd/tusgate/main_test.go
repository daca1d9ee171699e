package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The healthcheck reads the same sources as the server, in the same order:
// flag > TUSGATE_* environment > the file of --config or TUSGATE_CONFIG >
// default.
func TestHealthcheckReadsTheServersSettings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	live := srv.Listener.Addr().String()
	dead := deadAddr(t)

	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	liveFile := file("live.yaml", "listen: "+live+"\nbase-path: /up/\n")
	deadFile := file("dead.yaml", "listen: "+dead+"\n")
	badFile := file("bad.yaml", "no-such-setting: 1\n")

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"--config", []string{"--config", liveFile}, nil, 0},
		{"TUSGATE_CONFIG", nil, map[string]string{"TUSGATE_CONFIG": liveFile}, 0},
		{"--config beats TUSGATE_CONFIG", []string{"--config=" + liveFile}, map[string]string{"TUSGATE_CONFIG": deadFile}, 0},
		{"the file is read", []string{"--config", deadFile}, nil, 1},
		{"environment beats the file", nil, map[string]string{"TUSGATE_CONFIG": deadFile, "TUSGATE_LISTEN": live}, 0},
		{"flag beats the environment", []string{"--listen", live}, map[string]string{"TUSGATE_CONFIG": deadFile, "TUSGATE_LISTEN": dead}, 0},
		{"a file the server would refuse", []string{"--config", badFile, "--listen", live}, nil, 1},
		{"a file that is missing", []string{"--config", filepath.Join(dir, "missing.yaml")}, nil, 1},
		{"secret files are not read", []string{"--listen", live, "--redis-url", "redis://127.0.0.1:1/0",
			"--redis-password-file", filepath.Join(dir, "missing"), "--webhook-secret-file", filepath.Join(dir, "missing")}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			if got := healthcheck(tc.args, lookup, &stderr); got != tc.want {
				t.Fatalf("exit %d, want %d; stderr: %s", got, tc.want, stderr.String())
			}
			if tc.want != 0 && !strings.HasPrefix(stderr.String(), "tusgate healthcheck: ") {
				t.Fatalf("stderr %q", stderr.String())
			}
		})
	}
}

// A secret file the server cannot read stops it before it starts, with the
// configuration's exit code and a message that names the flag.
func TestUnreadableSecretFilesStopStartup(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook-url", "https://app.example/hook", "--webhook-secret-file", missing}, "--webhook-secret-file: open " + missing},
		{[]string{"--redis-url", "redis://127.0.0.1:1/0", "--redis-password-file", missing}, "--redis-password-file: open " + missing},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"--insecure-no-auth", "--listen", deadAddr(t)}, tc.args...)
		if got := run(args, &stdout, &stderr); got != exitConfig {
			t.Errorf("%v: exit %d, want %d; stderr: %s", tc.args, got, exitConfig, stderr.String())
		}
		if !strings.HasPrefix(stderr.String(), "tusgate: invalid configuration") || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: stderr %q, want a problem containing %q", tc.args, stderr.String(), tc.want)
		}
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
