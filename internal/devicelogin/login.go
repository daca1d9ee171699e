package devicelogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Endpoints are the issuer's endpoints the device flow uses.
type Endpoints struct {
	DeviceAuthorization string
	Token               string
}

// Discover reads the issuer's OpenID discovery document
// (<issuer>/.well-known/openid-configuration) for its device
// authorization and token endpoints.
func Discover(ctx context.Context, hc *http.Client, issuer string) (Endpoints, error) {
	if !webURL(issuer) {
		return Endpoints{}, fmt.Errorf("--issuer %q must be an https URL (http only on loopback)", issuer)
	}
	docURL := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return Endpoints{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Endpoints{}, fmt.Errorf("reading the issuer's discovery document: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Endpoints{}, fmt.Errorf("reading %s: %s", docURL, resp.Status)
	}
	var doc struct {
		Issuer     string `json:"issuer"`
		DeviceAuth string `json:"device_authorization_endpoint"`
		Token      string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return Endpoints{}, fmt.Errorf("reading %s: %w", docURL, err)
	}
	if strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(issuer, "/") {
		return Endpoints{}, fmt.Errorf("%s names the issuer %q, not %q", docURL, doc.Issuer, issuer)
	}
	if doc.DeviceAuth == "" {
		return Endpoints{}, fmt.Errorf("the issuer %s offers no device authorization (no device_authorization_endpoint in its discovery document); with Auth0, use a Native application with the Device Code grant", issuer)
	}
	if !webURL(doc.DeviceAuth) || !webURL(doc.Token) {
		return Endpoints{}, fmt.Errorf("%s announces endpoints that are not https URLs (%q, %q)", docURL, doc.DeviceAuth, doc.Token)
	}
	return Endpoints{DeviceAuthorization: doc.DeviceAuth, Token: doc.Token}, nil
}

// webURL reports whether s is an absolute https URL, or http on loopback.
func webURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return u.Scheme == "http" && (host == "localhost" || ip != nil && ip.IsLoopback())
}

// Request is what a login asks for.
type Request struct {
	Issuer   string
	ClientID string
	Audience string   // Auth0: the API identifier
	Scopes   []string // e.g. offline_access for a refresh token
	// HTTPClient sends the requests; nil uses http.DefaultClient.
	HTTPClient *http.Client
	// Prompt shows the user where to approve the login.
	Prompt func(verificationURI, userCode, verificationURIComplete string)
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
}

func (r Request) config(ep Endpoints) *oauth2.Config {
	return &oauth2.Config{
		ClientID: r.ClientID,
		Scopes:   r.Scopes,
		Endpoint: oauth2.Endpoint{
			DeviceAuthURL: ep.DeviceAuthorization,
			TokenURL:      ep.Token,
			AuthStyle:     oauth2.AuthStyleInParams, // a public client: client_id in the form
		},
	}
}

// Login runs the device flow: it asks for a device code, shows the user
// where to approve it, and polls until the issuer hands out tokens (or
// the code expires, or ctx ends).
func Login(ctx context.Context, r Request) (*Tokens, error) {
	hc := r.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	now := r.Now
	if now == nil {
		now = time.Now
	}
	ep, err := Discover(ctx, hc, r.Issuer)
	if err != nil {
		return nil, err
	}
	cfg := r.config(ep)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	var opts []oauth2.AuthCodeOption
	if r.Audience != "" {
		opts = append(opts, oauth2.SetAuthURLParam("audience", r.Audience))
	}
	da, err := cfg.DeviceAuth(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("asking for a device code: %w", describe(err))
	}
	if r.Prompt != nil {
		r.Prompt(da.VerificationURI, da.UserCode, da.VerificationURIComplete)
	}
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, errors.New("the code expired before it was approved; run tusgate login again")
		}
		return nil, fmt.Errorf("waiting for approval: %w", describe(err))
	}
	return &Tokens{
		Issuer:        r.Issuer,
		ClientID:      r.ClientID,
		Audience:      r.Audience,
		Scope:         strings.Join(r.Scopes, " "),
		TokenEndpoint: ep.Token,
		AccessToken:   tok.AccessToken,
		RefreshToken:  tok.RefreshToken,
		TokenType:     tok.TokenType,
		Expiry:        tok.Expiry,
		Obtained:      now(),
	}, nil
}

// describe turns an OAuth error answer into its code and description,
// or its status when it has no OAuth error code: never the answer's body,
// which may be a page of several lines, or echo the request (and with it
// the refresh token).
func describe(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	if re.ErrorCode != "" {
		if re.ErrorDescription != "" {
			return fmt.Errorf("%s: %s", re.ErrorCode, oneLine(re.ErrorDescription))
		}
		return errors.New(oneLine(re.ErrorCode))
	}
	if re.Response != nil {
		return fmt.Errorf("the issuer answered %s", re.Response.Status)
	}
	return errors.New("the issuer's answer is not an OAuth token answer")
}

// oneLine keeps the first line of s, at most 200 bytes of it.
func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
