// Package oidc verifies OpenID Connect access tokens (signed JWTs) from Auth0
// or any other OpenID issuer.
//
// A Verifier finds the issuer's key set by OIDC discovery (or takes a
// configured URL), keeps it fresh in the background with
// github.com/MicahParks/keyfunc/v3 and github.com/MicahParks/jwkset, and
// checks tokens with github.com/golang-jwt/jwt/v5: signature (asymmetric
// algorithms only; "none" and HS* are always refused), issuer, audience,
// expiry, not-before, issued-at, subject and required scopes.
//
// Verification errors are typed so that an HTTP layer can answer per
// RFC 6750: *TokenError (401), *ScopeError (403) and ErrKeysUnavailable
// (retry later).
package oidc

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Config configures a Verifier.
type Config struct {
	// Issuer must equal the token's "iss" exactly (Auth0's ends in "/").
	Issuer string
	// Audiences: the token's "aud" must contain at least one of them.
	Audiences []string
	// JWKSURL is the key set URL; empty means the jwks_uri of the issuer's
	// discovery document.
	JWKSURL string
	// Refresh is the background key set refresh interval (default 1h).
	Refresh time.Duration
	// Algorithms are the allowed JWS algorithms (default RS256, ES256).
	// "none" and every HS* are always refused, even if listed.
	Algorithms []string
	// Leeway is the clock skew allowed for exp, nbf and iat. Zero means
	// none; tusgate's --oidc-leeway defaults to 30s (DefaultLeeway).
	Leeway time.Duration
	// SubjectClaim names the claim that identifies the caller (default
	// "sub"); it must be a non-empty string.
	SubjectClaim string
	// RequiredScopes must each be in the space-separated "scope" claim or
	// in Auth0's "permissions" array.
	RequiredScopes []string
	// HTTPClient fetches the discovery document and the key set (default: a
	// client with a 10s timeout).
	HTTPClient *http.Client
	// Log receives operational messages (default slog.Default()). Tokens
	// and Authorization headers are never logged.
	Log *slog.Logger
}

// Principal is an authenticated caller.
type Principal struct {
	// Issuer is the token's issuer (equal to Config.Issuer).
	Issuer string
	// Subject is the value of Config.SubjectClaim.
	Subject string
	// Scopes is the union of the "scope" and "permissions" claims.
	Scopes []string
	// Expiry is when the token expires.
	Expiry time.Time
}

// ConfigError is a definite misconfiguration found at start. Msg names the
// setting to fix.
type ConfigError struct{ Msg string }

// Error returns Msg.
func (e *ConfigError) Error() string { return e.Msg }

// TokenError means the token is missing or invalid (HTTP 401).
type TokenError struct {
	// Desc is a short, safe description for the WWW-Authenticate
	// error_description, such as "token expired" or "wrong audience". It
	// never contains token contents.
	Desc string
	// Missing is set when there was no token at all (401 without error=).
	Missing bool
}

// Error describes the problem without revealing token contents.
func (e *TokenError) Error() string {
	if e.Missing {
		return "oidc: no access token"
	}
	return "oidc: invalid token: " + e.Desc
}

// ScopeError means the token is valid but lacks required scopes (HTTP 403
// insufficient_scope).
type ScopeError struct {
	// Missing lists the required scopes the token does not grant.
	Missing []string
}

// Error lists the missing scopes.
func (e *ScopeError) Error() string {
	return "oidc: token lacks required scope(s): " + strings.Join(e.Missing, " ")
}

// ErrKeysUnavailable means signatures cannot be checked right now: the key
// set was never loaded, or a token names an unknown key while the key set
// cannot be fetched. Callers should answer "retry later". Errors returned
// by Verify wrap it, so test with errors.Is.
var ErrKeysUnavailable = errors.New("oidc: signing keys unavailable")

// BearerToken extracts the token from an Authorization header value of the
// form "Bearer <token>" (scheme case-insensitive, then spaces and exactly
// one token68). An empty header gives a *TokenError with Missing set; any other
// scheme or malformed value gives a *TokenError.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", &TokenError{Desc: "no token", Missing: true}
	}
	scheme, rest, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &TokenError{Desc: "not a bearer token"}
	}
	token := strings.TrimLeft(rest, " ") // RFC 7235: 1*SP
	if !isToken68(token) {
		return "", &TokenError{Desc: "malformed authorization header"}
	}
	return token, nil
}

// isToken68 reports whether s is an RFC 7235 token68: letters, digits and
// -._~+/ followed by optional "=" padding.
func isToken68(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
