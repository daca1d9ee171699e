// Package config holds tusgate's settings and loads them from command-line
// flags, TUSGATE_* environment variables and an optional YAML file, in that
// order of precedence, reporting every problem at once before anything starts.
package config

import (
	"log/slog"
	"time"
)

// Config is tusgate's complete configuration. Every field has a flag of the
// same name in kebab case (see Flags), an environment variable TUSGATE_<FLAG>
// and a key <flag> in the YAML file.
type Config struct {
	// ConfigFile is the YAML file the settings were (also) read from.
	ConfigFile string

	// Listen is the host:port of the upload listener.
	Listen string
	// BasePath is the URL path under which uploads live, with leading and
	// trailing slash, e.g. "/files/".
	BasePath string
	// DataDir holds uploads when no S3 bucket is set, and local state.
	DataDir string
	// MaxSize is the largest upload accepted, in bytes.
	MaxSize int64
	// MaxMetadataSize is the largest Upload-Metadata header accepted, in bytes.
	MaxMetadataSize int64
	// CORSOrigins are the browser origins allowed to upload ("*" for any).
	CORSOrigins []string
	// BehindProxy trusts X-Forwarded-* / Forwarded headers for upload URLs.
	BehindProxy bool
	// TLSCert and TLSKey, when both set, make the listener serve HTTPS.
	TLSCert, TLSKey string
	// MetricsListen, when set, serves /metrics on this separate host:port
	// (and not on Listen), and a /readyz that says why a dependency is
	// unavailable (the public one names only the dependency).
	MetricsListen string
	// Pprof serves Go's profiling endpoints under /debug/pprof/ on
	// MetricsListen (never on Listen: profiles reveal internals).
	Pprof bool
	// DisableDownload refuses GET on uploads.
	DisableDownload bool
	// IETFDraft accepts the IETF resumable-upload draft next to tus 1.0.
	IETFDraft bool
	// ObjectSHA256 computes the SHA-256 of every upload as its bytes
	// arrive (internal/objsha), reported when it is finished.
	ObjectSHA256 bool
	// LogFormat is "text" or "json".
	LogFormat string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// ShutdownTimeout is the whole budget for a graceful stop.
	ShutdownTimeout time.Duration
	// NetworkTimeout bounds each read of a request body and idle connections.
	NetworkTimeout time.Duration

	// QuotaUploads limits each owner's unfinished uploads (0: no limit).
	QuotaUploads int
	// QuotaBytes limits the declared bytes of each owner's unfinished
	// uploads (0: no limit).
	QuotaBytes int64

	// InsecureNoAuth accepts uploads from anyone. For trusted networks only.
	InsecureNoAuth bool

	// OIDC configures the verification of access tokens.
	OIDC OIDC
	// Dev runs a built-in development OpenID issuer under /dev/oidc/.
	Dev bool
	// DevTokenTTL is the lifetime of tokens the development issuer mints.
	DevTokenTTL time.Duration
	// DevAllowRemote lets --dev listen on non-loopback addresses.
	DevAllowRemote bool
	// DisableExamples stops serving the example pages and /config.json.
	DisableExamples bool

	// S3 configures the S3 store; an empty Bucket selects the disk store.
	S3 S3

	// RedisURL (redis:// or rediss://), when set, makes upload locks shared
	// through Redis so that several instances can serve the same uploads.
	RedisURL string
	// RedisLockLease is how long a lock outlives its holder's last renewal:
	// the time another instance waits for an upload whose holder died.
	RedisLockLease time.Duration
	// RedisPasswordFile holds the Redis password (instead of the URL).
	RedisPasswordFile string
	// RedisPassword comes from TUSGATE_REDIS_PASSWORD or RedisPasswordFile
	// (read by Resolve), never from a flag (flags show in process listings).
	RedisPassword string

	// Lifecycle configures webhooks and expiration.
	Lifecycle Lifecycle

	// DirectUploads serves Companion-compatible routes under /s3/ that
	// presign uploads straight from browsers to the S3 bucket.
	DirectUploads bool
	// DirectURLExpiry is how long those presigned URLs are valid.
	DirectURLExpiry time.Duration
}

// Lifecycle configures what happens around an upload's life: webhooks to
// the application and the expiry of abandoned uploads.
type Lifecycle struct {
	// WebhookURLs receive a signed JSON POST for every lifecycle event.
	WebhookURLs []string
	// PreFinishURL, when set, must approve every upload before it is
	// finished: a 2xx approves; only an explicit rejection (a 4xx with the
	// JSON body {"reject": true}) deletes the upload; any other answer
	// leaves it complete but unassembled, to be asked about again.
	PreFinishURL string
	// WebhookSecretFile holds the HMAC key signing webhooks.
	WebhookSecretFile string
	// WebhookSecret comes from TUSGATE_WEBHOOK_SECRET or WebhookSecretFile
	// (read by Resolve), never from a flag.
	WebhookSecret string
	// WebhookTimeout bounds each webhook request.
	WebhookTimeout time.Duration

	// UploadTTL is how long an unfinished upload may sit idle before it
	// expires (0: never).
	UploadTTL time.Duration
	// TombstoneTTL is how long requests for an expired upload answer 410
	// Gone (then 404).
	TombstoneTTL time.Duration
	// FinishedInfoTTL, when set, removes the .info of finished uploads this
	// long after they finished (the object itself stays).
	FinishedInfoTTL time.Duration
}

// WebhooksEnabled reports whether any webhook is configured.
func (l *Lifecycle) WebhooksEnabled() bool { return len(l.WebhookURLs) > 0 || l.PreFinishURL != "" }

// S3 configures the S3 store. Credentials never come from here, only from
// the AWS SDK's default chain.
type S3 struct {
	Bucket   string
	Endpoint string
	Region   string
	// PathStyle forces path-style addressing (bucket in the path). It is
	// implied when a custom endpoint is configured.
	PathStyle    bool
	ObjectPrefix string
	PartSize     int64
	MinPartSize  int64
	// MaxBufferedParts and ConcurrentPartUploads have no effect: they tuned
	// tusd's temp-file write path, which tusgate no longer uses. They are
	// read so that configurations that set them still start.
	MaxBufferedParts      int
	ConcurrentPartUploads int
	// BufferMemory bounds the memory of part buffers (the stream and
	// buffer write paths); writes beyond it stream through windows. 0:
	// always windows.
	BufferMemory int64
	// ParallelParts is the most parts of one upload on their way to S3 at
	// once, each in its own part buffer, while the buffer budget is less
	// than half used.
	ParallelParts int
	// TempDir is where partial uploads smaller than a part are joined;
	// empty means DataDir/s3-tmp.
	TempDir string
	// StorageClass of finished objects (empty: the bucket's default).
	StorageClass string
	// SSE is server-side encryption for everything written: "", "AES256"
	// or "aws:kms" (with SSEKMSKeyID, or the account's default key).
	SSE         string
	SSEKMSKeyID string
}

// OIDC configures access-token verification against an OpenID issuer.
type OIDC struct {
	// Issuer must equal the tokens' "iss" exactly (Auth0's ends in "/").
	Issuer string
	// Audiences: a token's "aud" must contain one of them.
	Audiences []string
	// JWKSURL overrides the key set URL from discovery.
	JWKSURL string
	// JWKSRefresh is the background key refresh interval.
	JWKSRefresh time.Duration
	// Algorithms are the accepted signature algorithms.
	Algorithms []string
	// Leeway is the clock skew allowed for exp, nbf and iat.
	Leeway time.Duration
	// SubjectClaim names the claim identifying the user.
	SubjectClaim string
	// RequiredScopes must all be granted (scope claim or Auth0 permissions).
	RequiredScopes []string
	// ClientID is the public client ID of the browser application, handed
	// to the example pages for their Auth0 login.
	ClientID string
}

// SaveReserve is the part of ShutdownTimeout kept for interrupted requests
// to save what they received: a third, at most 10s. tusd gives a request
// interrupted for any reason (shutdown, a lock release request) this long
// to finish its write.
func (c *Config) SaveReserve() time.Duration {
	return min(c.ShutdownTimeout/3, 10*time.Second)
}

// AuthEnabled reports whether requests are authenticated.
func (c *Config) AuthEnabled() bool { return !c.InsecureNoAuth }

// Size constants for the defaults and validation.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
	TiB int64 = 1 << 40
)

// Default returns the configuration a newcomer gets with no settings at all.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		BasePath:        "/files/",
		DataDir:         "./data",
		MaxSize:         5 * TiB,
		MaxMetadataSize: 4 * KiB,
		IETFDraft:       true,
		LogFormat:       "text",
		LogLevel:        slog.LevelInfo,
		ShutdownTimeout: 25 * time.Second,
		NetworkTimeout:  60 * time.Second,
		DevTokenTTL:     time.Hour,
		RedisLockLease:  30 * time.Second,
		DirectURLExpiry: 15 * time.Minute,
		Lifecycle: Lifecycle{
			WebhookTimeout: 10 * time.Second,
			UploadTTL:      24 * time.Hour,
			TombstoneTTL:   7 * 24 * time.Hour,
		},
		OIDC: OIDC{
			JWKSRefresh:  time.Hour,
			Algorithms:   []string{"RS256", "ES256"},
			Leeway:       30 * time.Second,
			SubjectClaim: "sub",
		},
		S3: S3{
			PartSize:              8 * MiB,
			BufferMemory:          64 * MiB,
			ParallelParts:         4,
			MinPartSize:           5 * MiB,
			MaxBufferedParts:      20,
			ConcurrentPartUploads: 10,
		},
	}
}

// UsesS3 reports whether uploads go to S3 rather than to the data dir.
func (c *Config) UsesS3() bool { return c.S3.Bucket != "" }
