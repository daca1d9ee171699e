package oidc

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	defaultRefresh = time.Hour
	// DefaultLeeway is the usual clock skew allowance (--oidc-leeway).
	DefaultLeeway   = 30 * time.Second
	maxLeeway       = 5 * time.Minute
	minRefresh      = time.Second
	httpTimeout     = 10 * time.Second
	maxResponseBody = 1 << 20 // discovery documents and key sets are a few KiB
)

// supportedAlgorithms are the asymmetric JWS algorithms a token may use.
var supportedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// settings is a validated Config with defaults applied.
type settings struct {
	issuer         string
	audiences      []string
	jwksURL        string
	refresh        time.Duration
	algorithms     []string
	leeway         time.Duration
	subjectClaim   string
	requiredScopes []string
	client         *http.Client
	log            *slog.Logger
}

// settings validates cfg and applies defaults. Every problem found is
// listed in the returned *ConfigError.
func (cfg Config) settings() (settings, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	s := settings{
		issuer:       cfg.Issuer,
		jwksURL:      cfg.JWKSURL,
		refresh:      cfg.Refresh,
		leeway:       cfg.Leeway,
		subjectClaim: cfg.SubjectClaim,
		log:          cfg.Log,
	}
	if s.log == nil {
		s.log = slog.Default()
	}

	switch {
	case s.issuer == "":
		add("--oidc-issuer is required: the issuer exactly as in the tokens' iss (Auth0: https://TENANT.auth0.com/)")
	case !webURL(s.issuer):
		add("--oidc-issuer %q must be an https URL (http only on loopback)", s.issuer)
	}
	if s.jwksURL != "" && !webURL(s.jwksURL) {
		add("--oidc-jwks-url %q must be an https URL (http only on loopback)", s.jwksURL)
	}

	for _, a := range cfg.Audiences {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(s.audiences, a) {
			s.audiences = append(s.audiences, a)
		}
	}
	if len(s.audiences) == 0 {
		add("--oidc-audience is required: the audience your tokens are issued for (Auth0: the API identifier, not the client ID)")
	}

	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{"RS256", "ES256"}
	}
	badAlg := false
	for _, a := range algs {
		a = strings.TrimSpace(a)
		switch {
		case slices.Contains(supportedAlgorithms, a):
			if !slices.Contains(s.algorithms, a) {
				s.algorithms = append(s.algorithms, a)
			}
		case strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"):
			s.log.Warn("oidc: ignoring a refused signature algorithm in --oidc-algorithms: none and HS* are never accepted", "algorithm", a)
		default:
			badAlg = true
			hint := ""
			for _, known := range supportedAlgorithms {
				if strings.EqualFold(a, known) {
					hint = fmt.Sprintf(" (did you mean %s?)", known)
				}
			}
			add("--oidc-algorithms: %q is not a supported algorithm%s; use %s", a, hint, strings.Join(supportedAlgorithms, ", "))
		}
	}
	if len(s.algorithms) == 0 && !badAlg {
		add("--oidc-algorithms names no acceptable algorithm; use asymmetric ones such as RS256 or ES256 (none and HS* are always refused)")
	}

	switch {
	case s.refresh == 0:
		s.refresh = defaultRefresh
	case s.refresh < minRefresh:
		add("--oidc-jwks-refresh %v is too short (default 1h)", s.refresh)
	}
	switch {
	case s.leeway < 0 || s.leeway > maxLeeway:
		add("--oidc-leeway %v must be between 0 and %v (default 30s)", s.leeway, maxLeeway)
	}

	if s.subjectClaim == "" {
		s.subjectClaim = "sub"
	} else if strings.TrimSpace(s.subjectClaim) != s.subjectClaim {
		add("--oidc-subject-claim %q must not have surrounding spaces (default sub)", s.subjectClaim)
	}

	for _, sc := range cfg.RequiredScopes {
		for _, f := range strings.Fields(sc) {
			if !slices.Contains(s.requiredScopes, f) {
				s.requiredScopes = append(s.requiredScopes, f)
			}
		}
	}

	if len(problems) > 0 {
		return settings{}, &ConfigError{Msg: strings.Join(problems, "; ")}
	}

	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{Timeout: httpTimeout}
	}
	c := *base
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = limitTransport{base: rt}
	s.client = &c
	return s, nil
}

// webURL reports whether u is an absolute https URL, or http on a loopback
// host.
func webURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.User != nil {
		return false
	}
	return p.Scheme == "https" || p.Scheme == "http" && isLoopback(p.Hostname())
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// limitTransport caps response bodies at maxResponseBody, so that a broken
// or hostile endpoint cannot make the verifier buffer without bound.
type limitTransport struct{ base http.RoundTripper }

// RoundTrip performs the request and wraps the response body.
func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponseBody}
	return resp, nil
}

// limitedBody fails reads past its limit.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("response body exceeds %d bytes", maxResponseBody)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
