package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix is the prefix of every environment variable tusgate reads.
const EnvPrefix = "TUSGATE_"

// Problems lists every configuration mistake found, each a sentence the user
// can act on.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		return "invalid configuration: " + p[0]
	}
	return "invalid configuration:\n  - " + strings.Join(p, "\n  - ")
}

// EnvName returns the environment variable that sets the named flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Flags registers every setting on a new flag set bound to cfg. The flag
// set's defaults are cfg's current values.
func Flags(cfg *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("tusgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)

	fs.StringVar(&cfg.ConfigFile, "config", cfg.ConfigFile, "YAML `file` with settings (keys are flag names)")

	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "`host:port` to serve uploads on")
	fs.StringVar(&cfg.BasePath, "base-path", cfg.BasePath, "URL `path` under which uploads live")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "`directory` for uploads (without S3) and local state")
	fs.Var(sizeValue{&cfg.MaxSize}, "max-size", "largest upload accepted (`size`, e.g. 5TiB)")
	fs.Var(sizeValue{&cfg.MaxMetadataSize}, "max-metadata-size", "largest Upload-Metadata header accepted (`size`)")
	fs.Var(&listValue{p: &cfg.CORSOrigins}, "cors-origins", "comma-separated browser `origins` allowed to upload, or *")
	fs.BoolVar(&cfg.BehindProxy, "behind-proxy", cfg.BehindProxy, "trust X-Forwarded-Host/-Proto and Forwarded headers")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate `file` to serve HTTPS (with --tls-key)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM private key `file` to serve HTTPS (with --tls-cert)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", cfg.MetricsListen, "separate `host:port` for /metrics (default: on --listen) and a /readyz that gives reasons")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve Go profiles under /debug/pprof/ on --metrics-listen (which it needs)")
	fs.BoolVar(&cfg.DisableDownload, "disable-download", cfg.DisableDownload, "refuse GET requests for uploads")
	fs.BoolVar(&cfg.IETFDraft, "ietf-draft", cfg.IETFDraft, "also accept the IETF resumable-upload draft protocol")
	fs.BoolVar(&cfg.ObjectSHA256, "object-sha256", cfg.ObjectSHA256, "compute the SHA-256 of every upload as it arrives (costs CPU per byte; see docs/integrity.md)")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log `format`: text or json")
	fs.TextVar(&cfg.LogLevel, "log-level", &cfg.LogLevel, "minimum log `level`: debug, info, warn, error")
	fs.Var(durationValue{&cfg.ShutdownTimeout}, "shutdown-timeout", "total `duration` a graceful stop may take")
	fs.Var(durationValue{&cfg.NetworkTimeout}, "network-timeout", "`duration` a request body may stall before the connection is dropped")
	fs.IntVar(&cfg.QuotaUploads, "quota-uploads", cfg.QuotaUploads, "unfinished uploads each user may have at once (0: no limit)")
	fs.Var(sizeValue{&cfg.QuotaBytes}, "quota-bytes", "declared `size` of each user's unfinished uploads together (0: no limit)")
	fs.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", cfg.InsecureNoAuth, "accept uploads without authentication (trusted networks only)")
	fs.StringVar(&cfg.OIDC.Issuer, "oidc-issuer", cfg.OIDC.Issuer, "OpenID issuer `URL`, exactly as in the tokens' iss (Auth0: https://TENANT.auth0.com/)")
	fs.Var(&listValue{p: &cfg.OIDC.Audiences}, "oidc-audience", "accepted token `audiences` (comma list or repeated; Auth0: the API identifier)")
	fs.StringVar(&cfg.OIDC.JWKSURL, "oidc-jwks-url", cfg.OIDC.JWKSURL, "key set `URL` (default: from the issuer's discovery document)")
	fs.Var(durationValue{&cfg.OIDC.JWKSRefresh}, "oidc-jwks-refresh", "`interval` of background key set refreshes")
	fs.Var(&listValue{p: &cfg.OIDC.Algorithms}, "oidc-algorithms", "accepted signature `algorithms` (none and HS* are always refused)")
	fs.Var(durationValue{&cfg.OIDC.Leeway}, "oidc-leeway", "clock skew `allowed` for exp, nbf and iat")
	fs.StringVar(&cfg.OIDC.SubjectClaim, "oidc-subject-claim", cfg.OIDC.SubjectClaim, "`claim` that identifies the user")
	fs.Var(&listValue{p: &cfg.OIDC.RequiredScopes}, "oidc-required-scopes", "`scopes` every token must grant (scope claim or Auth0 permissions)")
	fs.StringVar(&cfg.OIDC.ClientID, "oidc-client-id", cfg.OIDC.ClientID, "public client `ID` of the browser app (Auth0 SPA), for the example pages' login")
	fs.BoolVar(&cfg.DisableExamples, "disable-examples", cfg.DisableExamples, "do not serve the example pages and /config.json")
	fs.BoolVar(&cfg.Dev, "dev", cfg.Dev, "development mode: built-in OpenID issuer under /dev/oidc/ (loopback only)")
	fs.Var(durationValue{&cfg.DevTokenTTL}, "dev-token-ttl", "`lifetime` of development tokens")
	fs.BoolVar(&cfg.DevAllowRemote, "dev-allow-remote", cfg.DevAllowRemote, "let --dev listen on non-loopback addresses")

	fs.StringVar(&cfg.RedisURL, "redis-url", cfg.RedisURL, "Redis `URL` (redis:// or rediss://) for upload locks shared by several instances")
	fs.Var(durationValue{&cfg.RedisLockLease}, "redis-lock-lease", "`lease` of an upload lock after its holder's last renewal (see docs/scaling.md)")
	fs.StringVar(&cfg.RedisPasswordFile, "redis-password-file", cfg.RedisPasswordFile, "`file` holding the Redis password (or set TUSGATE_REDIS_PASSWORD)")
	fs.Var(&listValue{p: &cfg.Lifecycle.WebhookURLs}, "webhook-url", "`URL` receiving signed lifecycle events (repeat for several)")
	fs.StringVar(&cfg.Lifecycle.PreFinishURL, "pre-finish-url", cfg.Lifecycle.PreFinishURL, "`URL` that must approve each upload before it is finished (2xx approves; only a 4xx with JSON {\"reject\": true} deletes it; see docs/lifecycle.md)")
	fs.StringVar(&cfg.Lifecycle.WebhookSecretFile, "webhook-secret-file", cfg.Lifecycle.WebhookSecretFile, "`file` holding the webhook signing secret (or set TUSGATE_WEBHOOK_SECRET)")
	fs.Var(durationValue{&cfg.Lifecycle.WebhookTimeout}, "webhook-timeout", "`duration` each webhook request may take")
	fs.Var(durationValue{&cfg.Lifecycle.UploadTTL}, "upload-ttl", "idle `duration` after which an unfinished upload expires (0: never)")
	fs.Var(durationValue{&cfg.Lifecycle.TombstoneTTL}, "tombstone-ttl", "`duration` requests for an expired upload answer 410 Gone (then 404)")
	fs.Var(durationValue{&cfg.Lifecycle.FinishedInfoTTL}, "finished-info-ttl", "remove finished uploads' .info after this `duration` (0: keep)")
	fs.BoolVar(&cfg.DirectUploads, "direct-uploads", cfg.DirectUploads, "serve /s3/ routes that presign uploads straight from browsers to --s3-bucket (Companion-compatible; see docs/direct-uploads.md)")
	fs.Var(durationValue{&cfg.DirectURLExpiry}, "direct-url-expiry", "`lifetime` of the presigned URLs of direct uploads")
	fs.StringVar(&cfg.S3.Bucket, "s3-bucket", cfg.S3.Bucket, "S3 `bucket` for uploads (empty: store in --data-dir)")
	fs.StringVar(&cfg.S3.Endpoint, "s3-endpoint", cfg.S3.Endpoint, "S3 endpoint `URL` for MinIO, R2, … (also AWS_ENDPOINT_URL_S3)")
	fs.StringVar(&cfg.S3.Region, "s3-region", cfg.S3.Region, "S3 `region` (default: the AWS chain; us-east-1 with a custom endpoint)")
	fs.BoolVar(&cfg.S3.PathStyle, "s3-path-style", cfg.S3.PathStyle, "path-style S3 addressing (implied by a custom endpoint)")
	fs.StringVar(&cfg.S3.ObjectPrefix, "s3-object-prefix", cfg.S3.ObjectPrefix, "key `prefix` for every object tusgate writes")
	fs.Var(sizeValue{&cfg.S3.PartSize}, "s3-part-size", "preferred S3 part `size` (each upload in progress holds one to --s3-parallel-parts of them in memory)")
	fs.Var(sizeValue{&cfg.S3.BufferMemory}, "s3-buffer-memory", "memory `size` for part buffers, server-wide; writes beyond it stream through a 128KiB window each (0: always)")
	fs.IntVar(&cfg.S3.ParallelParts, "s3-parallel-parts", cfg.S3.ParallelParts, "parts of one upload sent to S3 at once, each in a part buffer (while --s3-buffer-memory is less than half used)")
	fs.Var(sizeValue{&cfg.S3.MinPartSize}, "s3-min-part-size", "smallest S3 part `size` (AWS: 5MiB; R2: set equal to --s3-part-size)")
	fs.IntVar(&cfg.S3.MaxBufferedParts, "s3-max-buffered-parts", cfg.S3.MaxBufferedParts, "no effect: tuned tusd's temp-file path, which tusgate no longer uses")
	fs.IntVar(&cfg.S3.ConcurrentPartUploads, "s3-concurrent-part-uploads", cfg.S3.ConcurrentPartUploads, "no effect: tuned tusd's temp-file path, which tusgate no longer uses")
	fs.StringVar(&cfg.S3.StorageClass, "s3-storage-class", cfg.S3.StorageClass, "storage `class` of finished objects, e.g. STANDARD_IA (default: the bucket's)")
	fs.StringVar(&cfg.S3.SSE, "s3-sse", cfg.S3.SSE, "server-side `encryption` of every object written: AES256 or aws:kms")
	fs.StringVar(&cfg.S3.SSEKMSKeyID, "s3-sse-kms-key-id", cfg.S3.SSEKMSKeyID, "KMS key `id` for --s3-sse aws:kms (default: the account's S3 key)")
	fs.StringVar(&cfg.S3.TempDir, "s3-temp-dir", cfg.S3.TempDir, "`directory` where partial uploads smaller than a part are joined (default: <data-dir>/s3-tmp)")
	return fs
}

// Load builds the configuration from args (without the program name), the
// environment (through lookupEnv) and the YAML file named by --config or
// TUSGATE_CONFIG. Precedence: flag > environment > file > default. It then
// reads the files the settings name (Resolve), checks the result (Validate)
// and gives the base path its slashes. The returned error is flag.ErrHelp
// for -h/--help, or Problems listing every mistake found.
func Load(args []string, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg, problems, err := read(args, lookupEnv)
	if err != nil {
		return nil, err
	}
	problems = append(problems, cfg.Resolve()...)
	problems = append(problems, cfg.Validate()...)
	if len(problems) > 0 {
		return nil, problems
	}
	cfg.BasePath = cleanBasePath(cfg.BasePath)
	return cfg, nil
}

// Read gathers the settings from the same sources as Load, in the same
// order, but neither reads the files they name (Resolve) nor checks them
// (Validate):
// for commands that need a few of the server's settings, such as the
// address tusgate healthcheck probes. The error is flag.ErrHelp, or
// Problems if a flag, variable or the file cannot be parsed.
func Read(args []string, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg, problems, err := read(args, lookupEnv)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return cfg, nil
}

func read(args []string, lookupEnv func(string) (string, bool)) (*Config, Problems, error) {
	cfg := Default()
	fs := Flags(&cfg)
	fromFlag, problems, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}

	fromEnv := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if fromFlag[f.Name] {
			return
		}
		v, ok := lookupEnv(EnvName(f.Name))
		if !ok {
			return
		}
		fromEnv[f.Name] = true
		if err := fs.Set(f.Name, v); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", EnvName(f.Name), err))
		}
	})

	if v, ok := lookupEnv(EnvPrefix + "REDIS_PASSWORD"); ok {
		cfg.RedisPassword = v
	}
	if v, ok := lookupEnv(EnvPrefix + "WEBHOOK_SECRET"); ok {
		cfg.Lifecycle.WebhookSecret = v
	}

	if cfg.ConfigFile != "" {
		problems = append(problems, applyFile(fs, cfg.ConfigFile, func(name string) bool {
			return fromFlag[name] || fromEnv[name]
		})...)
	}
	return &cfg, problems, nil
}

// parseArgs sets the flags named in args, collecting every bad value rather
// than stopping at the first as flag.FlagSet.Parse does. It accepts -name,
// --name, --name=value and --name value (not for booleans).
func parseArgs(fs *flag.FlagSet, args []string) (map[string]bool, Problems, error) {
	set := map[string]bool{}
	var problems Problems
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			if i+1 < len(args) {
				problems = append(problems, fmt.Sprintf("unexpected argument %q (see tusgate --help)", args[i+1]))
			}
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			problems = append(problems, fmt.Sprintf("unexpected argument %q: settings are flags like --listen=:8080 (see tusgate --help)", arg))
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
		if name == "h" || name == "help" {
			return nil, nil, flag.ErrHelp
		}
		f := fs.Lookup(name)
		if f == nil {
			problems = append(problems, fmt.Sprintf("unknown flag --%s (see tusgate --help)", name))
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				problems = append(problems, fmt.Sprintf("--%s needs a value", name))
				continue
			}
			i++
			value = args[i]
		}
		set[name] = true
		if err := fs.Set(name, value); err != nil {
			problems = append(problems, fmt.Sprintf("--%s: %v", name, err))
		}
	}
	return set, problems, nil
}

// applyFile sets every flag named in the YAML file that was not already set
// by a flag or the environment.
func applyFile(fs *flag.FlagSet, path string, alreadySet func(string) bool) Problems {
	data, err := os.ReadFile(path)
	if err != nil {
		return Problems{fmt.Sprintf("--config: cannot read %s: %v", path, errors.Unwrap(err))}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Problems{fmt.Sprintf("--config %s: not valid YAML: %v", path, err)}
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var problems Problems
	for _, key := range keys {
		f := fs.Lookup(key)
		switch {
		case f == nil:
			problems = append(problems, fmt.Sprintf("--config %s: unknown setting %q (keys are flag names, e.g. s3-bucket)", path, key))
			continue
		case key == "config":
			problems = append(problems, fmt.Sprintf("--config %s: a config file cannot name another config file", path))
			continue
		case alreadySet(key):
			continue
		}
		value, err := yamlScalar(doc[key])
		if err == nil {
			err = fs.Set(key, value)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("--config %s: %s: %v", path, key, err))
		}
	}
	return problems
}

// yamlScalar turns a YAML value into the string form its flag parses.
func yamlScalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case []any:
		items := make([]string, 0, len(x))
		for _, item := range x {
			s, err := yamlScalar(item)
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		return strings.Join(items, ","), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("expected a string, number, boolean or list, got %T", v)
	}
}

// Usage writes the flag reference to w.
func Usage(w io.Writer) {
	cfg := Default()
	fs := Flags(&cfg)
	fmt.Fprintf(w, `tusgate: resumable uploads (tus) into S3 or a local directory.

Usage:
  tusgate [flags]        serve uploads
  tusgate version        print the version
  tusgate healthcheck    exit 0 if the server on --listen answers /healthz
                         (reads the same flags, TUSGATE_* and --config file)

Every flag can also be set in the environment as TUSGATE_<FLAG> (e.g.
TUSGATE_S3_BUCKET) or in the YAML file given by --config (key: flag name).
Precedence: flag > environment > file > default. S3 credentials come only
from the AWS SDK's chain (AWS_ACCESS_KEY_ID, profiles, roles).

Flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
}
