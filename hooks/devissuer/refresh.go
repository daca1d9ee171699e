package devissuer

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Refresh tokens of the development issuer are JWTs signed with its key,
// so that they survive a restart like its access tokens do. They are meant
// for the issuer's own token endpoint only: their audience is that
// endpoint's URL (never the API's audience, so tusgate rejects them as
// access tokens), and they carry token_use "refresh". They are not
// revocable; this issuer is for development.

const (
	// RefreshTokenTTL is the lifetime of refresh tokens.
	RefreshTokenTTL = 7 * 24 * time.Hour

	// RefreshTokenGrant is the grant_type of RFC 6749 §6.
	RefreshTokenGrant = "refresh_token"

	refreshTokenUse = "refresh"
)

// mintRefresh returns a refresh token for user and scope (both already
// validated).
func (i *Issuer) mintRefresh(user, scope string) (string, error) {
	iat := i.now().Truncate(time.Second)
	claims := jwt.MapClaims{
		"iss":       i.issuer,
		"sub":       user,
		"aud":       i.endpoint(tokenPath),
		"iat":       iat.Unix(),
		"exp":       iat.Add(RefreshTokenTTL).Unix(),
		"jti":       rand.Text(),
		"token_use": refreshTokenUse,
	}
	signed, err := i.sign(claims, scope)
	if err != nil {
		return "", fmt.Errorf("devissuer: sign refresh token: %w", err)
	}
	return signed, nil
}

// checkRefresh verifies a refresh token of this issuer and returns its user
// and scope.
func (i *Issuer) checkRefresh(raw string) (user, scope string, ok bool) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &i.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer(i.issuer),
		jwt.WithAudience(i.endpoint(tokenPath)),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(i.now))
	if err != nil {
		return "", "", false
	}
	if use, _ := claims["token_use"].(string); use != refreshTokenUse {
		return "", "", false
	}
	user, _ = claims["sub"].(string)
	scope, _ = claims["scope"].(string)
	if validateUser(user) != nil {
		return "", "", false
	}
	return user, scope, true
}
