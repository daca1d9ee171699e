package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tusgate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	cfg, err := Load([]string{"--insecure-no-auth"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.BasePath != "/files/" || cfg.DataDir != "./data" ||
		cfg.MaxSize != 5*TiB || cfg.MaxMetadataSize != 4*KiB || !cfg.IETFDraft || cfg.ObjectSHA256 ||
		cfg.ShutdownTimeout != 25*time.Second || cfg.UsesS3() || len(cfg.CORSOrigins) != 0 {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	file := writeFile(t, `
listen: 127.0.0.1:7000
base-path: /from-file/
max-size: 1GiB
data-dir: /file/data
cors-origins: [https://a.example, https://b.example]
insecure-no-auth: true
s3-concurrent-part-uploads: 3
`)
	cfg, err := Load(
		[]string{"--config", file, "--listen=127.0.0.1:9000"},
		env("TUSGATE_LISTEN", "127.0.0.1:8000", "TUSGATE_BASE_PATH", "/from-env", "TUSGATE_S3_BUCKET", "bkt"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9000" {
		t.Errorf("flag should beat env and file: listen = %q", cfg.Listen)
	}
	if cfg.BasePath != "/from-env/" {
		t.Errorf("env should beat file: base-path = %q", cfg.BasePath)
	}
	if cfg.MaxSize != GiB || cfg.DataDir != "/file/data" || cfg.S3.ConcurrentPartUploads != 3 {
		t.Errorf("file values not applied: %+v", cfg)
	}
	if want := []string{"https://a.example", "https://b.example"}; !reflect.DeepEqual(cfg.CORSOrigins, want) {
		t.Errorf("cors-origins = %v, want %v", cfg.CORSOrigins, want)
	}
	if cfg.S3.Bucket != "bkt" || cfg.S3.PartSize != 8*MiB || cfg.S3.BufferMemory != 64*MiB {
		t.Errorf("env bucket or default part size lost: %+v", cfg.S3)
	}
}

// --object-sha256 from each source.
func TestObjectSHA256(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		file string
	}{
		{args: []string{"--object-sha256"}},
		{env: []string{"TUSGATE_OBJECT_SHA256", "true"}},
		{file: "object-sha256: true\n"},
	} {
		args := append([]string{"--insecure-no-auth"}, tc.args...)
		if tc.file != "" {
			args = append(args, "--config", writeFile(t, tc.file))
		}
		cfg, err := Load(args, env(tc.env...))
		if err != nil || !cfg.ObjectSHA256 {
			t.Errorf("%+v: ObjectSHA256 %v, %v", tc, cfg != nil && cfg.ObjectSHA256, err)
		}
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	file := writeFile(t, "insecure-no-auth: true\nlisten: 127.0.0.1:7001\n")
	cfg, err := Load(nil, env("TUSGATE_CONFIG", file))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7001" {
		t.Fatalf("listen = %q", cfg.Listen)
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	file := writeFile(t, "nonsense-key: 1\nshutdown-timeout: forever\n")
	_, err := Load([]string{
		"--config", file,
		"--bogus",
		"--max-size=12 parsecs",
		"--listen=nohost",
		"--log-format=xml",
		"--cors-origins=https://ok.example,ftp://x",
		"--s3-bucket=b", "--s3-part-size=1MiB", "--s3-endpoint=not a url",
		"--tls-cert=/nonexistent",
		"--base-path=/healthz",
	}, env("TUSGATE_NETWORK_TIMEOUT", "soon"))
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []string{
		`unknown flag --bogus`,
		`--max-size: "12 parsecs" is not a size`,
		`TUSGATE_NETWORK_TIMEOUT: "soon" is not a duration`,
		`unknown setting "nonsense-key"`,
		`shutdown-timeout: "forever" is not a duration`,
		`--listen "nohost"`,
		`--base-path "/healthz" collides with tusgate's own /healthz`,
		`--cors-origins: "ftp://x" is not an origin`,
		`--tls-cert and --tls-key go together`,
		`--log-format "xml": use text or json`,
		`no authentication configured`,
		`--s3-endpoint "not a url" must be a URL`,
		`--s3-part-size 1MiB is smaller than --s3-min-part-size 5MiB`,
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing problem %q in:\n%s", w, msg)
		}
	}
	if len(p) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(p), len(want), msg)
	}
}

func TestFlagBeatsBadEnv(t *testing.T) {
	// A bad environment value for a flag given on the command line is never read.
	cfg, err := Load([]string{"--insecure-no-auth", "--max-size=1GiB"}, env("TUSGATE_MAX_SIZE", "garbage"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxSize != GiB {
		t.Fatalf("max-size = %d", cfg.MaxSize)
	}
}

func TestHelp(t *testing.T) {
	if _, err := Load([]string{"--help"}, env()); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "64MiB": 64 * MiB, "5GiB": 5 * GiB, "5TiB": 5 * TiB, "4KiB": 4 * KiB,
		"10MB": 10_000_000, "1.5GiB": 3 * GiB / 2, "2g": 2 * GiB, " 7 mib ": 7 * MiB,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1XB", "99999999999TiB", "1..2"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
	if s := FormatSize(5 * TiB); s != "5TiB" {
		t.Errorf("FormatSize = %q", s)
	}
}

func TestS3Limits(t *testing.T) {
	_, err := Load([]string{"--insecure-no-auth", "--s3-bucket=b", "--max-size=6TiB", "--s3-min-part-size=1MiB", "--s3-part-size=6GiB", "--s3-parallel-parts=0", "--s3-sse=DES", "--s3-sse-kms-key-id=k", "--s3-storage-class=COLD"}, env())
	for _, w := range []string{"exceeds S3's largest object", "below S3's minimum part size", "exceeds S3's largest part", "--s3-parallel-parts 0 must be between 1 and 64", `--s3-sse "DES"`, "--s3-sse-kms-key-id needs --s3-sse aws:kms", `--s3-storage-class "COLD"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}

// TestPprofNeedsMetricsListen: profiles are never served on the upload
// listener.
func TestPprofNeedsMetricsListen(t *testing.T) {
	_, err := Load([]string{"--dev", "--pprof"}, env())
	if err == nil || !strings.Contains(err.Error(), "--pprof needs --metrics-listen") {
		t.Errorf("--pprof alone: %v; want the --metrics-listen problem", err)
	}
	cfg, err := Load([]string{"--dev", "--pprof", "--metrics-listen", "127.0.0.1:9090"}, env())
	if err != nil || !cfg.Pprof {
		t.Errorf("--pprof with --metrics-listen: %v, Pprof %v", err, cfg != nil && cfg.Pprof)
	}
}

func TestAuthModes(t *testing.T) {
	ok := [][]string{
		{"--insecure-no-auth"},
		{"--dev"},
		{"--oidc-issuer", "https://tenant.auth0.com/", "--oidc-audience", "https://api.example"},
		{"--oidc-issuer", "http://127.0.0.1:9000", "--oidc-audience", "a,b"},
	}
	for _, args := range ok {
		if _, err := Load(args, env()); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	bad := map[string][]string{
		"choose one of":                                          {"--dev", "--insecure-no-auth"},
		"--oidc-audience is required":                            {"--oidc-issuer", "https://tenant.auth0.com/"},
		"must be an https URL":                                   {"--oidc-issuer", "http://tenant.auth0.com/", "--oidc-audience", "x"},
		`"HS256" is not accepted`:                                {"--insecure-no-auth", "--oidc-algorithms", "RS256,HS256"},
		`"none" is not accepted`:                                 {"--insecure-no-auth", "--oidc-algorithms", "none"},
		"--dev-allow-remote":                                     {"--dev", "--listen", ":8080"},
		"--dev-token-ttl":                                        {"--dev", "--dev-token-ttl", "1s"},
		"--oidc-jwks-refresh":                                    {"--insecure-no-auth", "--oidc-jwks-refresh", "1s"},
		"--oidc-subject-claim must not be":                       {"--insecure-no-auth", "--oidc-subject-claim", " "},
		"--oidc-audience has no effect with --dev":               {"--dev", "--oidc-audience", "x"},
		"--oidc-client-id has no effect with --insecure-no-auth": {"--insecure-no-auth", "--oidc-client-id", "abc"},
	}
	for want, args := range bad {
		_, err := Load(args, env())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", args, err, want)
		}
	}
	cfg, err := Load([]string{"--dev", "--listen", "0.0.0.0:8080", "--dev-allow-remote"}, env())
	if err != nil || !cfg.Dev || !cfg.AuthEnabled() {
		t.Fatalf("--dev-allow-remote: %v", err)
	}
	cfg, _ = Load([]string{"--oidc-issuer", "https://t.example/", "--oidc-audience", "a", "--oidc-audience", "b"}, env())
	if want := []string{"a", "b"}; !reflect.DeepEqual(cfg.OIDC.Audiences, want) {
		t.Fatalf("repeated --oidc-audience: %v", cfg.OIDC.Audiences)
	}
}

func TestLifecycleSettings(t *testing.T) {
	cfg, err := Load([]string{"--insecure-no-auth"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Lifecycle; l.UploadTTL != 24*time.Hour || l.TombstoneTTL != 7*24*time.Hour || l.FinishedInfoTTL != 0 || l.WebhooksEnabled() {
		t.Fatalf("lifecycle defaults: %+v", l)
	}

	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load([]string{"--insecure-no-auth", "--webhook-url", "https://a.example/hook", "--webhook-url=http://127.0.0.1:9/x",
		"--webhook-secret-file", secret, "--upload-ttl", "2s", "--finished-info-ttl", "1h"}, env())
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Lifecycle
	if !reflect.DeepEqual(l.WebhookURLs, []string{"https://a.example/hook", "http://127.0.0.1:9/x"}) ||
		l.WebhookSecret != "0123456789abcdef0123" || l.UploadTTL != 2*time.Second || l.FinishedInfoTTL != time.Hour {
		t.Fatalf("lifecycle: %+v", l)
	}

	cfg, err = Load([]string{"--insecure-no-auth", "--pre-finish-url", "https://app.example/approve"},
		env("TUSGATE_WEBHOOK_SECRET", "from-the-environment-1234"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lifecycle.WebhookSecret != "from-the-environment-1234" || !cfg.Lifecycle.WebhooksEnabled() {
		t.Fatalf("lifecycle: %+v", cfg.Lifecycle)
	}

	_, err = Load([]string{"--insecure-no-auth", "--webhook-url", "ftp://x", "--webhook-url", "https://u:p@h.example/",
		"--pre-finish-url", "relative/path", "--upload-ttl", "10ms", "--tombstone-ttl", "-1s", "--webhook-timeout", "0s"},
		env("TUSGATE_WEBHOOK_SECRET", "short"))
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("err = %v, want Problems", err)
	}
	msg := p.Error()
	for _, want := range []string{`"ftp://x" must be an absolute`, "must not carry credentials", `"relative/path" must be`,
		"signing secret of at least 16", "--upload-ttl 10ms is too short", "must not be negative", "--webhook-timeout 0s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems lack %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "u:p@") {
		t.Errorf("problems show webhook credentials:\n%s", msg)
	}
}

// Resolve reads the secret files (a file wins over the environment, trailing
// line breaks go) and the TLS key pair; every file it cannot read is a
// problem naming its flag, listed by Load with the others. Validate reads
// no file and changes nothing.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	secret, password, missing := filepath.Join(dir, "secret"), filepath.Join(dir, "password"), filepath.Join(dir, "missing")
	for name, body := range map[string]string{secret: "0123456789abcdef0123\r\n", password: "p4ss\n"} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	redis := []string{"--insecure-no-auth", "--redis-url", "redis://127.0.0.1:6379/0", "--webhook-url", "https://app.example/hook"}
	cfg, err := Load(append(slices.Clone(redis), "--redis-password-file", password, "--webhook-secret-file", secret),
		env("TUSGATE_REDIS_PASSWORD", "from-env", "TUSGATE_WEBHOOK_SECRET", "from-the-environment-1234"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RedisPassword != "p4ss" || cfg.Lifecycle.WebhookSecret != "0123456789abcdef0123" {
		t.Fatalf("password %q, secret %q", cfg.RedisPassword, cfg.Lifecycle.WebhookSecret)
	}

	_, err = Load(append(slices.Clone(redis), "--redis-password-file", missing, "--webhook-secret-file", missing,
		"--tls-cert", missing, "--tls-key", missing, "--log-format", "xml"), env())
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("err = %v, want Problems", err)
	}
	want := []string{"--redis-password-file: open " + missing, "--webhook-secret-file: open " + missing,
		"--tls-cert/--tls-key: cannot load the key pair: open " + missing, "signing secret of at least 16", `--log-format "xml"`}
	for _, w := range want {
		if !strings.Contains(p.Error(), w) {
			t.Errorf("problems lack %q:\n%s", w, p.Error())
		}
	}
	if len(p) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(p), len(want), p.Error())
	}

	// Without --redis-url the password file is not read.
	_, err = Load([]string{"--insecure-no-auth", "--redis-password-file", missing}, env())
	if !errors.As(err, &p) || len(p) != 1 || !strings.Contains(p[0], "--redis-password-file needs --redis-url") {
		t.Errorf("password file without --redis-url: %v", err)
	}

	c := Default()
	c.InsecureNoAuth = true
	c.BasePath = "uploads"
	c.RedisURL, c.RedisPasswordFile = "redis://127.0.0.1:6379/0", missing
	c.TLSCert, c.TLSKey = missing, missing
	c.Lifecycle.WebhookSecretFile = missing
	before := c
	if p := c.Validate(); len(p) != 0 {
		t.Errorf("Validate read files: %v", p)
	}
	if !reflect.DeepEqual(c, before) {
		t.Errorf("Validate changed the settings: %+v, was %+v", c, before)
	}
	if p := c.Resolve(); len(p) != 3 {
		t.Errorf("Resolve: %v, want 3 problems", p)
	}
}

// The Redis lock lease must outlive the renewal interval and timeout, the
// save reserve of interrupted requests (a third of --shutdown-timeout, at
// most 10s) and the pause allowance; the problem says what to set.
func TestRedisLockLeaseMargin(t *testing.T) {
	redis := []string{"--insecure-no-auth", "--redis-url", "redis://127.0.0.1:6379/0"}
	for _, tc := range []struct {
		args []string
		want string // "" when valid
	}{
		{nil, ""}, // 30s and 25s: 5s + 1s + 8.3s + 2s
		{[]string{"--redis-lock-lease", "14s"}, ""}, // 2.3s + 1s + 8.3s + 2s
		{[]string{"--redis-lock-lease", "13s"}, "set --redis-lock-lease to at least 14s, or lower --shutdown-timeout"},
		{[]string{"--redis-lock-lease", "3s"}, "--redis-lock-lease 3s is too short"},
		{[]string{"--redis-lock-lease", "2s", "--shutdown-timeout", "1s"}, "at least 4s"},
		{[]string{"--redis-lock-lease", "4s", "--shutdown-timeout", "1s"}, ""},
		{[]string{"--redis-lock-lease", "5s", "--shutdown-timeout", "3s"}, ""},
		{[]string{"--redis-lock-lease", "15s", "--shutdown-timeout", "2m"}, "at least 16s"}, // the reserve stops at 10s
		{[]string{"--redis-lock-lease", "16s", "--shutdown-timeout", "2m"}, ""},
		{[]string{"--redis-lock-lease", "11m"}, "--redis-lock-lease 11m0s must be at most 10m"},
	} {
		_, err := Load(append(slices.Clone(redis), tc.args...), env())
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want a problem containing %q", tc.args, err, tc.want)
		}
	}
	// Without Redis the lease is unused and not checked.
	if _, err := Load([]string{"--insecure-no-auth", "--redis-lock-lease", "3s"}, env()); err != nil {
		t.Errorf("lease without --redis-url: %v", err)
	}
	// It is listed with the other problems.
	_, err := Load(append(slices.Clone(redis), "--redis-lock-lease", "3s", "--log-format", "xml"), env())
	var p Problems
	if !errors.As(err, &p) || len(p) != 2 {
		t.Errorf("problems: %v", err)
	}
}
