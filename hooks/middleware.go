package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tusgate/tusgate/hooks/oidc"
	"github.com/tusgate/tusgate/internal/tuserror"
)

// Verifier checks access tokens; *oidc.Verifier is the implementation.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*oidc.Principal, error)
}

// realm is the protection space named in WWW-Authenticate.
const realm = "tusgate"

// Middleware authenticates every request except OPTIONS (CORS preflight and
// tus capability discovery, which reveal no upload) and puts the caller
// into the request context. Failures are answered per RFC 6750: no token
// 401; bad token 401 invalid_token; missing scope 403 insufficient_scope;
// keys unavailable 503 with Retry-After. The server's guard, which wraps
// every handler, turns that 503 into 423 for HEAD (a 5xx on HEAD makes
// tus-js-client abandon the upload).
func Middleware(v Verifier, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		raw, err := oidc.BearerToken(r.Header.Get("Authorization"))
		var p *oidc.Principal
		if err == nil {
			p, err = v.Verify(r.Context(), raw)
		}
		if err != nil {
			deny(w, r, log, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

func deny(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var (
		tokenErr *oidc.TokenError
		scopeErr *oidc.ScopeError
	)
	switch {
	case errors.As(err, &tokenErr) && tokenErr.Missing:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q`, realm))
		tuserror.Write(w, r, http.StatusUnauthorized, "ERR_UNAUTHENTICATED", "send an access token: Authorization: Bearer <token>")
	case errors.As(err, &tokenErr):
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token", error_description=%q`, realm, quoteSafe(tokenErr.Desc)))
		tuserror.Write(w, r, http.StatusUnauthorized, "ERR_INVALID_TOKEN", tokenErr.Desc+"; log in again")
	case errors.As(err, &scopeErr):
		scope := strings.Join(scopeErr.Missing, " ")
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope", scope=%q`, realm, quoteSafe(scope)))
		tuserror.Write(w, r, http.StatusForbidden, "ERR_INSUFFICIENT_SCOPE", "the token lacks the scope(s): "+scope)
	default:
		if !errors.Is(err, oidc.ErrKeysUnavailable) {
			log.ErrorContext(r.Context(), "token verification failed unexpectedly", "error", err.Error())
		}
		w.Header().Set("Retry-After", tuserror.RetryAfter)
		tuserror.Write(w, r, http.StatusServiceUnavailable, "ERR_AUTH_UNAVAILABLE", "cannot verify tokens right now; retry later")
	}
}

// quoteSafe keeps a header parameter to printable ASCII without quotes.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
