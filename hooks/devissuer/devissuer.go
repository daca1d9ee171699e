// Package devissuer implements a development OpenID Connect issuer for tusgate: a discovery document, a JWKS with
// one ES256 public key, and a token endpoint that mints access tokens for any user name it is given. It performs no
// authentication at all and exists only so tusgate can be run and tested locally without a real identity provider.
// Never enable it in production.
package devissuer

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTokenTTL is the lifetime of minted tokens when Options.TokenTTL is zero.
const DefaultTokenTTL = time.Hour

const (
	maxUserLen  = 64
	maxScopeLen = 1024
	minTTL      = time.Second
)

// Issuer is a development OpenID Connect issuer: discovery, JWKS and a token endpoint that mints access tokens
// for any typed user name. For local development only.
//
// An Issuer is safe for concurrent use. Its only mutable state is the
// pending device authorizations (device.go), kept in memory.
type Issuer struct {
	issuer   string
	audience string
	ttl      time.Duration
	key      *ecdsa.PrivateKey
	kid      string
	log      *slog.Logger

	discovery []byte // pre-rendered /.well-known/openid-configuration
	jwks      []byte // pre-rendered /jwks.json

	devices *devices // pending device authorizations

	now func() time.Time // replaceable in tests
}

// Options configures an Issuer.
type Options struct {
	// IssuerURL is the exact "iss" of minted tokens and the base of the issuer's endpoints,
	// e.g. "http://127.0.0.1:8080/dev/oidc". It must be an absolute http or https URL without query or fragment.
	IssuerURL string
	// Audience is the "aud" of minted tokens, e.g. "tusgate". Required.
	Audience string
	// TokenTTL is the lifetime of minted tokens (default DefaultTokenTTL, minimum one second).
	TokenTTL time.Duration
	// KeyFile is where the signing key is kept (PEM, mode 0600), e.g. <data-dir>/dev-issuer/key.pem. It is created
	// if missing and reused if present, so tokens survive a restart. If empty, an ephemeral key is used.
	KeyFile string
	// Log receives diagnostics; nil discards them. Tokens are never logged.
	Log *slog.Logger
}

// New loads or creates the signing key (ECDSA P-256 → ES256; key id = RFC 7638 JWK thumbprint, base64url) and returns the issuer.
// Errors name the file and what to do (e.g. unreadable/corrupt key file: "delete it to make a new one").
func New(opts Options) (*Issuer, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkIssuerURL(opts.IssuerURL); err != nil {
		return nil, err
	}
	if strings.TrimSpace(opts.Audience) == "" {
		return nil, errors.New("devissuer: Audience is required (e.g. \"tusgate\")")
	}
	ttl := opts.TokenTTL
	switch {
	case ttl == 0:
		ttl = DefaultTokenTTL
	case ttl < minTTL:
		return nil, fmt.Errorf("devissuer: TokenTTL %s is too short; use at least %s", ttl, minTTL)
	}

	key, err := loadOrCreateKey(opts.KeyFile, log)
	if err != nil {
		return nil, err
	}
	x, y, err := ecPoint(&key.PublicKey)
	if err != nil {
		return nil, err
	}

	i := &Issuer{
		issuer:   opts.IssuerURL,
		audience: opts.Audience,
		ttl:      ttl,
		key:      key,
		kid:      thumbprint(x, y),
		log:      log,
		devices:  newDevices(),
		now:      time.Now,
	}
	if i.discovery, err = json.Marshal(i.discoveryDocument()); err != nil {
		return nil, fmt.Errorf("devissuer: render discovery document: %w", err)
	}
	if i.jwks, err = json.Marshal(jwkSet{Keys: []jwk{{
		Kty: "EC", Crv: "P-256", X: b64(x), Y: b64(y), Kid: i.kid, Alg: "ES256", Use: "sig",
	}}}); err != nil {
		return nil, fmt.Errorf("devissuer: render JWKS: %w", err)
	}

	log.Warn("dev issuer enabled: it mints tokens for anyone who asks; never use it in production",
		"issuer", i.issuer, "audience", i.audience, "token_ttl", i.ttl.String(), "kid", i.kid, "key_file", opts.KeyFile)
	return i, nil
}

// checkIssuerURL accepts absolute http(s) URLs without user info, query or fragment.
func checkIssuerURL(s string) error {
	if s == "" {
		return errors.New("devissuer: IssuerURL is required (e.g. \"http://127.0.0.1:8080/dev/oidc\")")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("devissuer: IssuerURL %q is not a valid URL: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("devissuer: IssuerURL %q must be an absolute http:// or https:// URL without user info, query or fragment", s)
	}
	return nil
}

// endpoint returns the absolute URL of an endpoint below the issuer URL.
func (i *Issuer) endpoint(rel string) string {
	return strings.TrimSuffix(i.issuer, "/") + rel
}

// requestError is a client error; its message is safe to return as error_description.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{msg: fmt.Sprintf(format, args...)}
}

// Mint returns a signed token for user with the issuer's defaults (used by tests and by the handler). ttl 0 = TokenTTL.
//
// user must be 1–64 characters from ASCII letters, digits and . _ - @ |. scope, if not empty, is a space separated
// list of RFC 6749 scope tokens. ttl must be between one second and TokenTTL. The returned time is the token's
// expiry ("exp", whole seconds).
func (i *Issuer) Mint(user, scope string, ttl time.Duration) (string, time.Time, error) {
	m, err := i.mint(user, scope, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	return m.token, m.exp, nil
}

// minted describes a freshly minted token.
type minted struct {
	token    string
	iat, exp time.Time
	scope    string // normalized
}

// sign signs claims (with scope, when not empty) with the issuer's key,
// naming it in the header.
func (i *Issuer) sign(claims jwt.MapClaims, scope string) (string, error) {
	if scope != "" {
		claims["scope"] = scope
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = i.kid
	return tok.SignedString(i.key)
}

func (i *Issuer) mint(user, scope string, ttl time.Duration) (minted, error) {
	if err := validateUser(user); err != nil {
		return minted{}, err
	}
	scope, err := normalizeScope(scope)
	if err != nil {
		return minted{}, err
	}
	ttl, err = i.effectiveTTL(ttl)
	if err != nil {
		return minted{}, err
	}

	iat := i.now().Truncate(time.Second)
	exp := iat.Add(ttl).Truncate(time.Second)
	jti := rand.Text()
	claims := jwt.MapClaims{
		"iss": i.issuer,
		"sub": user,
		"aud": i.audience,
		"iat": iat.Unix(),
		"nbf": iat.Unix(),
		"exp": exp.Unix(),
		"jti": jti,
	}
	signed, err := i.sign(claims, scope)
	if err != nil {
		return minted{}, fmt.Errorf("devissuer: sign token: %w", err)
	}
	i.log.Info("dev issuer minted token", "sub", user, "jti", jti, "scope", scope, "exp", exp.UTC())
	return minted{token: signed, iat: iat, exp: exp, scope: scope}, nil
}

// effectiveTTL applies the default and the bounds to a requested lifetime.
func (i *Issuer) effectiveTTL(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl == 0:
		return i.ttl, nil
	case ttl < minTTL:
		return 0, badRequest("ttl %s is too short; use at least %s", ttl, minTTL)
	case ttl > i.ttl:
		return 0, badRequest("ttl %s exceeds the maximum token lifetime %s", ttl, i.ttl)
	}
	return ttl, nil
}

// validateUser checks the user name (the token's subject).
func validateUser(user string) error {
	if user == "" {
		return badRequest("username is required")
	}
	if len(user) > maxUserLen {
		return badRequest("username is longer than %d characters", maxUserLen)
	}
	for _, c := range []byte(user) {
		if !isUserChar(c) {
			return badRequest("username may only contain letters, digits and . _ - @ |")
		}
	}
	return nil
}

func isUserChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._-@|", c) >= 0
}

// normalizeScope validates a scope string (RFC 6749 §3.3) and joins its tokens with single spaces.
func normalizeScope(scope string) (string, error) {
	if len(scope) > maxScopeLen {
		return "", badRequest("scope is longer than %d characters", maxScopeLen)
	}
	tokens := strings.Fields(scope)
	for _, t := range tokens {
		for _, c := range []byte(t) {
			// scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
			if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return "", badRequest("scope contains an invalid character")
			}
		}
	}
	return strings.Join(tokens, " "), nil
}
