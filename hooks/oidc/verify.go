package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// maxTokenSize is the largest token Verify parses.
const maxTokenSize = 8 << 10

// Descriptions of refused tokens: short, fixed, and free of token contents.
const (
	descTooLarge      = "token too large"
	descMalformed     = "malformed token"
	descAlgorithm     = "signing algorithm not allowed"
	descUnknownKey    = "unknown signing key"
	descKeyMismatch   = "signing key does not fit the algorithm"
	descCritical      = "unsupported critical header"
	descSignature     = "invalid signature"
	descNoIssuer      = "no issuer"
	descWrongIssuer   = "wrong issuer"
	descNoExpiry      = "no expiry"
	descExpired       = "token expired"
	descNotYetValid   = "token not yet valid"
	descFutureIssued  = "token issued in the future"
	descBadClaim      = "malformed claims"
	descNoAudience    = "no audience"
	descWrongAudience = "wrong audience"
	descNoSubject     = "no subject"
	descInvalid       = "invalid token"
)

// Verify checks raw, a JWT without the "Bearer " prefix, and returns the
// caller it authenticates. Errors are a *TokenError (missing or invalid
// token), a *ScopeError (valid token lacking a required scope), or wrap
// ErrKeysUnavailable (signatures cannot be checked right now).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" {
		return nil, &TokenError{Desc: "no token", Missing: true}
	}
	if len(raw) > maxTokenSize {
		return nil, &TokenError{Desc: descTooLarge}
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		return v.key(ctx, t)
	})
	if err != nil {
		err = v.classify(err, tok, claims)
		var te *TokenError
		if errors.As(err, &te) {
			v.s.log.DebugContext(ctx, "oidc: token refused", "reason", te.Desc)
		}
		return nil, err
	}
	return v.principal(ctx, claims)
}

// principal applies the checks jwt does not (audience, subject, scopes) to
// verified claims.
func (v *Verifier) principal(ctx context.Context, claims jwt.MapClaims) (*Principal, error) {
	refuse := func(desc string) (*Principal, error) {
		v.s.log.DebugContext(ctx, "oidc: token refused", "reason", desc)
		return nil, &TokenError{Desc: desc}
	}
	// golang-jwt converts date claims to int64 seconds, and a huge nbf or
	// iat overflows into the past, passing its check: refuse dates outside
	// 1970 … now+100 years.
	limit := float64(time.Now().AddDate(100, 0, 0).Unix())
	for _, name := range []string{"exp", "nbf", "iat"} {
		if f, ok := numericClaim(claims[name]); ok && (f < 0 || f > limit) {
			return refuse(descBadClaim)
		}
	}
	aud, err := claims.GetAudience()
	if err != nil {
		return refuse(descWrongAudience)
	}
	if !slices.ContainsFunc(aud, func(a string) bool { return a != "" }) {
		return refuse(descNoAudience)
	}
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(v.s.audiences, a) }) {
		return refuse(descWrongAudience)
	}
	sub, _ := claims[v.s.subjectClaim].(string)
	if strings.TrimSpace(sub) == "" {
		return refuse(descNoSubject)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // cannot happen: jwt requires a valid exp
		return refuse(descNoExpiry)
	}
	p := &Principal{
		Issuer:  v.s.issuer,
		Subject: sub,
		Scopes:  scopes(claims),
		Expiry:  exp.Time,
	}
	var missing []string
	for _, want := range v.s.requiredScopes {
		if !slices.Contains(p.Scopes, want) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return nil, &ScopeError{Missing: missing}
	}
	return p, nil
}

// scopes returns the union of the "scope" claim (space-separated; an array
// is accepted too) and Auth0's "permissions" array.
func scopes(claims jwt.MapClaims) []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	addAll := func(v any) {
		switch v := v.(type) {
		case string:
			for _, f := range strings.Fields(v) {
				add(f)
			}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					add(s)
				}
			}
		}
	}
	addAll(claims["scope"])
	if p, ok := claims["permissions"].([]any); ok {
		addAll(p)
	}
	return out
}

// key is the jwt.Keyfunc: it finds the token's key through keyfunc,
// refreshing the key set (rate-limited) for an unknown kid, and hands jwt
// only an asymmetric public key of the kind the token's algorithm needs.
// jwt has already refused algorithms outside the allowed list; the check is
// repeated here so that no RSA or EC key can ever reach an HMAC method.
func (v *Verifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if _, hmac := t.Method.(*jwt.SigningMethodHMAC); hmac || !slices.Contains(v.s.algorithms, alg) {
		return nil, &TokenError{Desc: descAlgorithm}
	}
	ks := v.keys.Load()
	if ks == nil {
		v.mu.Lock()
		reason := v.notReady
		v.mu.Unlock()
		if reason == nil { // loaded just now
			reason = errors.New("signing keys are loading")
		}
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, reason)
	}
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 4.1.11: extensions marked critical must be understood;
		// this verifier understands none.
		return nil, &TokenError{Desc: descCritical}
	}
	kid := ""
	if k, ok := t.Header[jwkset.HeaderKID]; ok {
		if kid, ok = k.(string); !ok {
			return nil, &TokenError{Desc: descMalformed}
		}
		jwk, found := ks.lookup(kid)
		if !found {
			if err := v.refreshForKID(ctx, ks, kid); err != nil {
				return nil, err
			}
			jwk, _ = ks.lookup(kid)
		}
		if jwk.Marshal().USE == jwkset.UseEnc {
			return nil, &TokenError{Desc: descKeyMismatch} // an encryption key never verifies signatures
		}
	}
	key, err := ks.kf.KeyfuncCtx(ctx)(t)
	if err != nil {
		if kid != "" && !ks.has(kid) { // the key went away meanwhile
			return nil, v.unknownKID()
		}
		return nil, &TokenError{Desc: descKeyMismatch} // e.g. the JWK's alg differs from the token's
	}
	if set, ok := key.(jwt.VerificationKeySet); ok { // no kid: try every key that fits
		var fit jwt.VerificationKeySet
		for _, k := range set.Keys {
			if fits(alg, k) {
				fit.Keys = append(fit.Keys, k)
			}
		}
		if len(fit.Keys) == 0 {
			return nil, &TokenError{Desc: descUnknownKey}
		}
		return fit, nil
	}
	if !fits(alg, key) {
		return nil, &TokenError{Desc: descKeyMismatch}
	}
	return key, nil
}

// fits reports whether key is a public key of the kind alg verifies with.
func fits(alg string, key any) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := key.(*rsa.PublicKey)
		return ok
	case "ES256", "ES384", "ES512":
		k, ok := key.(*ecdsa.PublicKey)
		if !ok || k.Curve == nil {
			return false
		}
		bits := 256
		switch alg {
		case "ES384":
			bits = 384
		case "ES512":
			bits = 521
		}
		return k.Curve.Params().BitSize == bits
	case "EdDSA":
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// refreshForKID makes one refresh of the key set serve every concurrent
// request naming an unknown kid. The refresh is jwkset's own unknown-kid
// refresh, rate-limited by v.limiter; when the limiter has no token left,
// no refresh happens and nobody waits for one. It returns nil once kid is
// known.
func (v *Verifier) refreshForKID(ctx context.Context, ks *keySet, kid string) error {
	v.mu.Lock()
	if ks.has(kid) {
		v.mu.Unlock()
		return nil
	}
	if ch := v.inflight; ch != nil { // someone is refreshing: wait for it
		v.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: looking up a new signing key: %w", ErrKeysUnavailable, ctx.Err())
		}
		if ks.has(kid) {
			return nil
		}
		return v.unknownKID()
	}
	if v.limiter.Tokens() < 1 { // refreshed moments ago
		v.mu.Unlock()
		return v.unknownKID()
	}
	ch := make(chan struct{})
	v.inflight = ch
	v.mu.Unlock()

	// jwkset takes the limiter's token (there is one, and only the holder
	// of inflight takes tokens), refetches the key set and looks kid up
	// again, all within unknownKIDWaitMax. The request's cancellation
	// must not abort a refresh that others wait for.
	err := func() error {
		defer func() {
			v.mu.Lock()
			v.inflight = nil
			v.mu.Unlock()
			close(ch)
		}()
		_, err := ks.client.KeyRead(v.ctx, kid)
		return err
	}()
	if err == nil {
		v.s.log.Info("oidc: loaded a new signing key", "jwks_url", ks.url)
		return nil
	}
	return v.unknownKID()
}

// unknownKID is the error for a kid the key set lacks: "retry later" if
// the latest attempt to fetch the key set failed, else 401.
func (v *Verifier) unknownKID() error {
	v.mu.Lock()
	last := v.lastRefresh
	v.mu.Unlock()
	if last != nil {
		return fmt.Errorf("%w: the token's signing key is unknown and the key set cannot be fetched: %w", ErrKeysUnavailable, last)
	}
	return &TokenError{Desc: descUnknownKey}
}

// classify turns a jwt parse error into a *TokenError, or passes on an
// error of the keyfunc.
func (v *Verifier) classify(err error, tok *jwt.Token, claims jwt.MapClaims) error {
	var te *TokenError
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, ErrKeysUnavailable):
		return err
	case errors.Is(err, jwt.ErrTokenMalformed):
		return &TokenError{Desc: descMalformed}
	case errors.Is(err, jwt.ErrTokenUnverifiable): // alg missing or unknown
		return &TokenError{Desc: descAlgorithm}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok == nil || tok.Method == nil || !slices.Contains(v.s.algorithms, tok.Method.Alg()) {
			return &TokenError{Desc: descAlgorithm}
		}
		return &TokenError{Desc: descSignature}
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return &TokenError{Desc: v.claimsProblem(err, claims)}
	}
	return &TokenError{Desc: descInvalid}
}

// claimsProblem describes why jwt refused the claims of a token whose
// signature is valid.
func (v *Verifier) claimsProblem(err error, claims jwt.MapClaims) string {
	iss, ierr := claims.GetIssuer()
	exp, eerr := claims.GetExpirationTime()
	switch {
	case ierr != nil:
		return descWrongIssuer
	case iss == "":
		return descNoIssuer
	case iss != v.s.issuer:
		v.hintIssuer(iss)
		return descWrongIssuer
	case errors.Is(err, jwt.ErrInvalidType):
		return descBadClaim
	case eerr == nil && exp == nil:
		return descNoExpiry
	case errors.Is(err, jwt.ErrTokenExpired):
		return descExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return descNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return descFutureIssued
	}
	return descInvalid
}

// hintIssuer logs, at most once a minute, that validly signed tokens carry
// an issuer differing from the configured one only by the trailing slash.
func (v *Verifier) hintIssuer(iss string) {
	if strings.TrimSuffix(iss, "/") != strings.TrimSuffix(v.s.issuer, "/") {
		return
	}
	v.mu.Lock()
	due := time.Since(v.hintAt) > time.Minute
	if due {
		v.hintAt = time.Now()
	}
	v.mu.Unlock()
	if due {
		v.s.log.Warn(fmt.Sprintf("oidc: tokens signed by the provider carry the issuer %q, which differs from --oidc-issuer %q only by the trailing slash; they are refused until --oidc-issuer is configured exactly as in the tokens",
			iss, v.s.issuer))
	}
}

// numericClaim returns a JSON number claim as a float64.
func numericClaim(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}
