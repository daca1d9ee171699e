package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tusgate/tusgate/internal/locker/redislocker"
)

// Limits S3 imposes on multipart uploads.
const (
	s3MinPartSize = 5 * MiB
	s3MaxPartSize = 5 * GiB
	s3MaxObject   = 5 * TiB
)

// storageClasses S3 accepts for new objects.
var storageClasses = []string{"STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "EXPRESS_ONEZONE"}

// reservedPaths are served by tusgate itself and cannot hold uploads.
var reservedPaths = []string{"/healthz", "/readyz", "/metrics", "/dev/"}

// Validate checks the settings and returns every problem found. It changes
// nothing and reads no files: run Resolve first, so that it checks the
// secrets read from them.
func (c *Config) Validate() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if err := checkHostPort(c.Listen); err != nil {
		add("--listen %q: %v; write host:port, e.g. 127.0.0.1:8080 or :8080", c.Listen, err)
	}
	if c.Pprof && c.MetricsListen == "" {
		add("--pprof needs --metrics-listen: profiles are served only there, never on the upload listener; add e.g. --metrics-listen 127.0.0.1:9090")
	}
	if c.MetricsListen != "" {
		if err := checkHostPort(c.MetricsListen); err != nil {
			add("--metrics-listen %q: %v; write host:port, e.g. 127.0.0.1:9090", c.MetricsListen, err)
		}
	}

	bp := cleanBasePath(c.BasePath)
	switch {
	case bp == "//":
		add("--base-path must not be /: tusgate serves /healthz, /readyz and its pages there; use e.g. /files/")
	case strings.ContainsAny(bp, "?#% \\") || strings.Contains(bp, "//") || strings.Contains(bp, "/../") || strings.Contains(bp, "/./"):
		add("--base-path %q must be a plain URL path such as /files/", c.BasePath)
	default:
		for _, r := range reservedPaths {
			if strings.HasPrefix(bp, r) || strings.HasPrefix(r, bp) {
				add("--base-path %q collides with tusgate's own %s; use e.g. /files/", c.BasePath, r)
				break
			}
		}
	}

	if strings.TrimSpace(c.DataDir) == "" {
		add("--data-dir must not be empty")
	}
	if c.MaxSize <= 0 {
		add("--max-size must be positive, e.g. 5TiB")
	}
	if c.UsesS3() && c.MaxSize > s3MaxObject {
		add("--max-size %s exceeds S3's largest object (5TiB)", FormatSize(c.MaxSize))
	}
	if c.MaxMetadataSize <= 0 || c.MaxMetadataSize > 64*KiB {
		add("--max-metadata-size must be between 1 and 64KiB (default 4KiB)")
	}
	for _, o := range c.CORSOrigins {
		if err := checkOrigin(o); err != nil {
			add("--cors-origins: %q %v; write origins like https://app.example.com or *", o, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		add("--tls-cert and --tls-key go together: set both to serve HTTPS, or neither")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("--log-format %q: use text or json", c.LogFormat)
	}
	if c.ShutdownTimeout < time.Second {
		add("--shutdown-timeout %v is too short; give at least 1s (default 25s)", c.ShutdownTimeout)
	}
	if c.NetworkTimeout < time.Second {
		add("--network-timeout %v is too short; give at least 1s (default 60s)", c.NetworkTimeout)
	}

	p = append(p, c.validateAuth()...)
	p = append(p, c.validateRedis()...)
	p = append(p, c.Lifecycle.validate()...)
	if c.QuotaUploads < 0 || c.QuotaBytes < 0 {
		add("--quota-uploads and --quota-bytes must not be negative (0: no limit)")
	}
	if (c.QuotaUploads > 0 || c.QuotaBytes > 0) && c.InsecureNoAuth {
		add("--quota-uploads and --quota-bytes are per user and need authentication (--oidc-issuer or --dev), not --insecure-no-auth")
	}

	if c.UsesS3() {
		p = append(p, c.S3.validate()...)
	}
	if c.DirectUploads {
		if !c.UsesS3() {
			add("--direct-uploads needs --s3-bucket: browsers upload straight to that bucket")
		}
		if c.InsecureNoAuth {
			add("--direct-uploads needs authentication (--oidc-issuer or --dev), not --insecure-no-auth: every upload belongs to a user")
		}
	}
	if c.DirectURLExpiry < time.Second || c.DirectURLExpiry > time.Hour {
		add("--direct-url-expiry %v: give 1s to 1h (default 15m)", c.DirectURLExpiry)
	}
	return p
}

// cleanBasePath returns the base path p with one slash at each end, as
// Config.BasePath holds it once loaded.
func cleanBasePath(p string) string { return "/" + strings.Trim(p, "/") + "/" }

// validateAuth checks that exactly one way of authenticating is chosen.
func (c *Config) validateAuth() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	modes := 0
	for _, on := range []bool{c.OIDC.Issuer != "", c.Dev, c.InsecureNoAuth} {
		if on {
			modes++
		}
	}
	switch {
	case modes == 0:
		add("no authentication configured: set --oidc-issuer and --oidc-audience (e.g. Auth0: https://TENANT.auth0.com/ and your API identifier), " +
			"or --dev for local development, or --insecure-no-auth to accept uploads from anyone on a trusted network")
	case modes > 1:
		add("choose one of --oidc-issuer, --dev and --insecure-no-auth")
	}
	if c.Dev || c.InsecureNoAuth {
		mode := "--dev"
		if c.InsecureNoAuth {
			mode = "--insecure-no-auth"
		}
		for _, f := range []struct {
			flag string
			set  bool
		}{
			{"--oidc-audience", len(c.OIDC.Audiences) > 0},
			{"--oidc-jwks-url", c.OIDC.JWKSURL != ""},
			{"--oidc-required-scopes", len(c.OIDC.RequiredScopes) > 0},
			{"--oidc-client-id", c.OIDC.ClientID != ""},
		} {
			if f.set {
				add("%s has no effect with %s; remove it (it configures --oidc-issuer)", f.flag, mode)
			}
		}
	}
	if c.OIDC.Issuer != "" {
		if u, err := url.Parse(c.OIDC.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			add("--oidc-issuer %q must be an https URL (http only on loopback)", c.OIDC.Issuer)
		}
		if len(c.OIDC.Audiences) == 0 {
			add("--oidc-audience is required with --oidc-issuer: the audience your tokens are issued for (Auth0: the API identifier, not the client ID)")
		}
	}
	if c.OIDC.JWKSURL != "" {
		if u, err := url.Parse(c.OIDC.JWKSURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			add("--oidc-jwks-url %q must be an https URL (http only on loopback)", c.OIDC.JWKSURL)
		}
	}
	for _, alg := range c.OIDC.Algorithms {
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		default:
			add("--oidc-algorithms: %q is not accepted; use asymmetric algorithms such as RS256 or ES256 (none and HS* are always refused)", alg)
		}
	}
	if len(c.OIDC.Algorithms) == 0 {
		add("--oidc-algorithms must name at least one algorithm (default RS256,ES256)")
	}
	if c.OIDC.Leeway < 0 || c.OIDC.Leeway > 5*time.Minute {
		add("--oidc-leeway %v must be between 0 and 5m (default 30s)", c.OIDC.Leeway)
	}
	if c.OIDC.JWKSRefresh < time.Minute {
		add("--oidc-jwks-refresh %v is too short; give at least 1m (default 1h)", c.OIDC.JWKSRefresh)
	}
	if strings.TrimSpace(c.OIDC.SubjectClaim) == "" {
		add("--oidc-subject-claim must not be empty (default sub)")
	}
	if c.Dev {
		if c.DevTokenTTL < 10*time.Second || c.DevTokenTTL > 24*time.Hour {
			add("--dev-token-ttl %v must be between 10s and 24h (default 1h)", c.DevTokenTTL)
		}
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) && !c.DevAllowRemote {
			add("--dev mints tokens for anyone who asks, so it only listens on loopback; --listen %q is not loopback (add --dev-allow-remote if you really mean it)", c.Listen)
		}
	}
	return p
}

// validateRedis checks the Redis settings.
func (c *Config) validateRedis() Problems {
	var p Problems
	if c.RedisURL == "" {
		if c.RedisPasswordFile != "" {
			p = append(p, "--redis-password-file needs --redis-url")
		}
		return p
	}
	u, err := url.Parse(c.RedisURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		p = append(p, fmt.Sprintf("--redis-url must look like redis://host:6379/0 or rediss://host:6380/0 (got %q)", redactURL(c.RedisURL)))
	}
	if c.RedisLockLease > maxRedisLockLease {
		p = append(p, fmt.Sprintf("--redis-lock-lease %v must be at most 10m (default 30s)", c.RedisLockLease))
	} else if !c.leaseIsSafe(c.RedisLockLease) {
		renewal := redislocker.RenewalWindow(c.RedisLockLease)
		p = append(p, fmt.Sprintf("--redis-lock-lease %v is too short for --shutdown-timeout %v: a lock must outlast what its holder "+
			"may still write after its last renewal: the renewal interval and timeout (%v), the save reserve of interrupted requests "+
			"(%v, a third of --shutdown-timeout, at most 10s) and %v for a part upload under way and pauses (see docs/scaling.md); "+
			"set --redis-lock-lease to at least %v, or lower --shutdown-timeout",
			c.RedisLockLease, c.ShutdownTimeout, renewal.Round(time.Millisecond), c.SaveReserve().Round(time.Millisecond),
			lockPauseAllowance, c.minRedisLockLease()))
	}
	return p
}

// Bounds of --redis-lock-lease.
const (
	maxRedisLockLease = 10 * time.Minute
	// lockPauseAllowance is P of the lease rule in
	// internal/locker/redislocker: a part upload already under way when
	// a holder learns that its lease is lost, and pauses of the process
	// (garbage collection, a starved CPU). Slow links to S3 need more,
	// which only a longer lease gives.
	lockPauseAllowance = 2 * time.Second
)

// leaseIsSafe reports whether a Redis lock lease outlives everything its
// holder may still do after its last successful renewal (the rule at the
// top of internal/locker/redislocker): lease > Renew + R + G + P.
func (c *Config) leaseIsSafe(lease time.Duration) bool {
	return lease > redislocker.RenewalWindow(lease)+c.SaveReserve()+lockPauseAllowance
}

// minRedisLockLease is the shortest safe lease in whole seconds.
func (c *Config) minRedisLockLease() time.Duration {
	for l := time.Second; l < maxRedisLockLease; l += time.Second {
		if c.leaseIsSafe(l) {
			return l
		}
	}
	return maxRedisLockLease
}

// minWebhookSecret is the shortest signing secret accepted.
const minWebhookSecret = 16

// validate checks the lifecycle settings.
func (l *Lifecycle) validate() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	for _, raw := range append(slices.Clone(l.WebhookURLs), l.PreFinishURL) {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("webhook URL %q must be an absolute http:// or https:// URL", redactURL(raw))
		} else if u.User != nil {
			add("webhook URL %q must not carry credentials: receivers authenticate deliveries by their signature", redactURL(raw))
		}
	}
	if l.WebhooksEnabled() && len(l.WebhookSecret) < minWebhookSecret {
		add("webhooks need a signing secret of at least %d characters: set TUSGATE_WEBHOOK_SECRET or --webhook-secret-file (e.g. from openssl rand -hex 32)", minWebhookSecret)
	}
	if l.WebhookTimeout < time.Second || l.WebhookTimeout > 5*time.Minute {
		add("--webhook-timeout %v must be between 1s and 5m (default 10s)", l.WebhookTimeout)
	}
	if l.UploadTTL != 0 && l.UploadTTL < time.Second {
		add("--upload-ttl %v is too short; give at least 1s, or 0 to never expire uploads (default 24h)", l.UploadTTL)
	}
	if l.TombstoneTTL < 0 || l.FinishedInfoTTL < 0 {
		add("--tombstone-ttl and --finished-info-ttl must not be negative")
	}
	if l.FinishedInfoTTL != 0 && l.FinishedInfoTTL < time.Second {
		add("--finished-info-ttl %v is too short; give at least 1s, or 0 to keep them", l.FinishedInfoTTL)
	}
	return p
}

// redactURL hides a password in a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// isLoopback reports whether host names this machine only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *S3) validate() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if s.Endpoint != "" {
		if u, err := url.Parse(s.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("--s3-endpoint %q must be a URL such as https://s3.example.com or http://127.0.0.1:9000", s.Endpoint)
		}
	}
	if s.MinPartSize < s3MinPartSize {
		add("--s3-min-part-size %s is below S3's minimum part size of 5MiB", FormatSize(s.MinPartSize))
	}
	if s.PartSize < s.MinPartSize {
		add("--s3-part-size %s is smaller than --s3-min-part-size %s", FormatSize(s.PartSize), FormatSize(s.MinPartSize))
	}
	if s.PartSize > s3MaxPartSize {
		add("--s3-part-size %s exceeds S3's largest part of 5GiB", FormatSize(s.PartSize))
	}
	if s.BufferMemory < 0 {
		add("--s3-buffer-memory must not be negative (0 sends every write through a window)")
	}
	if s.ParallelParts < 1 || s.ParallelParts > 64 {
		add("--s3-parallel-parts %d must be between 1 and 64", s.ParallelParts)
	}
	switch s.SSE {
	case "", "AES256", "aws:kms":
	default:
		add("--s3-sse %q: use AES256 or aws:kms", s.SSE)
	}
	if s.SSEKMSKeyID != "" && s.SSE != "aws:kms" {
		add("--s3-sse-kms-key-id needs --s3-sse aws:kms")
	}
	if s.StorageClass != "" && !slices.Contains(storageClasses, s.StorageClass) {
		add("--s3-storage-class %q: use one of %s", s.StorageClass, strings.Join(storageClasses, ", "))
	}
	if strings.HasPrefix(s.ObjectPrefix, "/") || strings.Contains(s.ObjectPrefix, "..") {
		add("--s3-object-prefix %q must not start with / or contain ..", s.ObjectPrefix)
	}
	return p
}

func checkHostPort(hp string) error {
	_, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("not host:port")
	}
	if port == "" {
		return fmt.Errorf("missing port")
	}
	return nil
}

func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("is not an origin")
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("must be scheme://host[:port] with no path")
	}
	return nil
}
