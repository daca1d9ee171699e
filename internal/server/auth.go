package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/hooks/devissuer"
	"github.com/tusgate/tusgate/hooks/oidc"
)

// devIssuerPath is where --dev mounts its OpenID issuer.
const devIssuerPath = "/dev/oidc"

// devAudience is the audience of development tokens.
const devAudience = "tusgate"

// setupAuth builds the token verifier (and, with --dev, the development
// issuer it trusts) and returns the middleware for the upload routes.
// Without authentication it returns nil.
func (s *Server) setupAuth(ctx context.Context, mux *http.ServeMux) (func(http.Handler) http.Handler, error) {
	cfg := s.cfg
	if !cfg.AuthEnabled() {
		return nil, nil
	}
	oc := oidc.Config{
		Issuer:         cfg.OIDC.Issuer,
		Audiences:      cfg.OIDC.Audiences,
		JWKSURL:        cfg.OIDC.JWKSURL,
		Refresh:        cfg.OIDC.JWKSRefresh,
		Algorithms:     cfg.OIDC.Algorithms,
		Leeway:         cfg.OIDC.Leeway,
		SubjectClaim:   cfg.OIDC.SubjectClaim,
		RequiredScopes: cfg.OIDC.RequiredScopes,
		Log:            s.log,
	}
	wait := 10 * time.Second
	if cfg.Dev {
		issuer, issuerURL, err := s.devIssuer()
		if err != nil {
			return nil, err
		}
		h := http.StripPrefix(devIssuerPath, issuer.Handler())
		mux.Handle(devIssuerPath+"/", h)
		oc.Issuer = issuerURL
		oc.Audiences = []string{devAudience}
		oc.Algorithms = []string{"ES256"}
		oc.SubjectClaim = "sub"
		oc.JWKSURL = ""
		// The verifier fetches discovery and keys over HTTP as for any
		// issuer, but from this process: the listener is not up yet.
		oc.HTTPClient = &http.Client{Transport: inProcess{prefix: issuerURL, h: h}, Timeout: 10 * time.Second}
		s.log.Warn("DEVELOPMENT MODE (--dev): tokens for any user name come from " + issuerURL + "/token; never use this in production")
	}
	v, err := oidc.New(ctx, oc, wait)
	var ce *oidc.ConfigError
	if errors.As(err, &ce) {
		return nil, &StartupError{config.Problems{ce.Msg}}
	}
	if err != nil {
		return nil, fmt.Errorf("setting up token verification: %w", err)
	}
	s.cleanup.add(func() error { v.Close(); return nil })
	s.ready.AddLive("oidc", v.Ready)
	return func(next http.Handler) http.Handler { return hooks.Middleware(v, s.log, next) }, nil
}

// devIssuer creates the development issuer, keeping its key in the data
// directory so that tokens survive a restart.
func (s *Server) devIssuer() (*devissuer.Issuer, string, error) {
	cfg := s.cfg
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, "", err
	}
	// The issuer URL is only the tokens' "iss" and where this process fetches
	// its own keys (in-process), so it names loopback however pages reach
	// the server (--dev-allow-remote).
	if host != "localhost" && host != "::1" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	dir := filepath.Join(cfg.DataDir, "dev-issuer")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", &StartupError{config.Problems{fmt.Sprintf("--data-dir %s: cannot keep the development issuer's key: %v", cfg.DataDir, err)}}
	}
	issuerURL := scheme + "://" + net.JoinHostPort(host, port) + devIssuerPath
	issuer, err := devissuer.New(devissuer.Options{
		IssuerURL: issuerURL,
		Audience:  devAudience,
		TokenTTL:  cfg.DevTokenTTL,
		KeyFile:   filepath.Join(dir, "key.pem"),
		Log:       s.log,
	})
	if err != nil {
		return nil, "", &StartupError{config.Problems{err.Error()}}
	}
	return issuer, issuerURL, nil
}

// inProcess is an http.RoundTripper that serves requests for URLs under
// prefix with a handler of this process.
type inProcess struct {
	prefix string
	h      http.Handler
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(r.URL.String(), t.prefix) {
		return nil, fmt.Errorf("in-process transport: %s is not under %s", r.URL, t.prefix)
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}
