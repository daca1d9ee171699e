package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

const (
	// unknownKIDInterval is the least time between two key set refreshes
	// caused by tokens naming an unknown key.
	unknownKIDInterval = 5 * time.Second
	// unknownKIDWaitMax bounds how long a refresh for an unknown key may
	// hold up a request (jwkset applies it to the limiter wait and the
	// fetch together).
	unknownKIDWaitMax = time.Second
	// initialBackoff and maxBackoff pace the retries until the key set
	// first loads.
	initialBackoff = time.Second
	maxBackoff     = 30 * time.Second
)

// Verifier checks access tokens against an OpenID issuer's keys. It is safe
// for concurrent use.
type Verifier struct {
	s       settings
	parser  *jwt.Parser
	limiter *rate.Limiter // unknown-kid refreshes, shared with jwkset

	ctx       context.Context // background work; ends with Close
	cancel    context.CancelFunc
	done      chan struct{} // closed when the loading loop ends
	closeOnce sync.Once

	keys atomic.Pointer[keySet] // nil until the key set first loads

	mu          sync.Mutex
	notReady    error         // why the key set is not loaded yet
	lastRefresh error         // outcome of the latest key set fetch (nil: success)
	inflight    chan struct{} // closed when the running unknown-kid refresh ends
	hintAt      time.Time     // last issuer trailing-slash hint
}

// keySet is a loaded key set with its refreshing machinery.
type keySet struct {
	url    string
	raw    jwkset.Storage  // the fetched keys, as last replaced by a refresh
	client jwkset.Storage  // jwkset HTTP client: refreshes on unknown kid
	kf     keyfunc.Keyfunc // looks keys up for jwt
	cancel context.CancelFunc
}

// has reports whether the key set currently holds kid.
func (ks *keySet) has(kid string) bool {
	_, ok := ks.lookup(kid)
	return ok
}

// lookup returns the key set's JWK for kid.
func (ks *keySet) lookup(kid string) (jwkset.JWK, bool) {
	jwk, err := ks.raw.KeyRead(context.Background(), kid)
	return jwk, err == nil
}

// New validates cfg (returning a *ConfigError listing every problem) and
// starts loading the issuer's keys in the background: OIDC discovery
// (unless cfg.JWKSURL is set), then the key set.
//
// New waits for that first attempt at most wait. If discovery shows a
// definite misconfiguration (the provider announces a different issuer, has
// no discovery document at all, or announces no usable jwks_uri), New
// returns a *ConfigError. If the issuer is merely unreachable (network
// error, 5xx, timeout), New returns a working Verifier whose Ready reports
// the reason and which retries in the background, backing off from 1s to
// 30s, until the keys load; until then Verify fails with ErrKeysUnavailable.
//
// ctx bounds only the wait: background work runs until Close.
func New(ctx context.Context, cfg Config, wait time.Duration) (*Verifier, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v := &Verifier{
		s: s,
		parser: jwt.NewParser(
			jwt.WithValidMethods(s.algorithms),
			jwt.WithIssuer(s.issuer),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(s.leeway),
			jwt.WithIssuedAt(),
		),
		limiter:  rate.NewLimiter(rate.Every(unknownKIDInterval), 1),
		ctx:      bg,
		cancel:   cancel,
		done:     make(chan struct{}),
		notReady: errors.New("oidc: signing keys are loading"),
	}
	first := make(chan error, 1)
	go v.run(first)

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-first:
		var ce *ConfigError
		if errors.As(err, &ce) {
			v.Close()
			return nil, ce
		}
	case <-timer.C:
		v.s.log.Warn("oidc: the issuer has not answered yet; continuing while the signing keys load in the background",
			"issuer", s.issuer, "waited", wait.String())
	case <-ctx.Done():
		v.Close()
		return nil, fmt.Errorf("oidc: waiting for the signing keys of %s: %w", s.issuer, ctx.Err())
	}
	return v, nil
}

// Ready returns nil once the signing keys are loaded, else a one-line
// reason.
func (v *Verifier) Ready() error {
	if v.keys.Load() != nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.notReady == nil { // loaded just now
		return nil
	}
	return errors.New(oneLine(v.notReady.Error()))
}

// Close stops background work. Afterwards Verify still checks tokens
// against the keys loaded so far, but the keys are no longer refreshed.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		<-v.done
		if ks := v.keys.Load(); ks != nil {
			ks.cancel() // already ended with v.ctx; for clarity
		}
	})
}

// run loads the keys, retrying with backoff until they load or Close. The
// outcome of the first attempt goes to first.
func (v *Verifier) run(first chan<- error) {
	defer close(v.done)
	jwksURL := v.s.jwksURL
	delay := initialBackoff
	for n := 0; ; n++ {
		err := v.attempt(&jwksURL)
		if n == 0 {
			first <- err
		}
		if err == nil || v.ctx.Err() != nil {
			return
		}
		v.mu.Lock()
		v.notReady = fmt.Errorf("oidc: signing keys not loaded: %w", err)
		v.mu.Unlock()
		var ce *ConfigError
		if errors.As(err, &ce) {
			v.s.log.Error("oidc: cannot load signing keys; retrying", "error", err.Error(), "retry_in", delay.String())
		} else {
			v.s.log.Warn("oidc: cannot load signing keys yet; requests are answered \"retry later\" until they load; retrying",
				"error", err.Error(), "retry_in", delay.String())
		}
		t := time.NewTimer(delay)
		select {
		case <-v.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, maxBackoff)
	}
}

// attempt discovers the key set URL unless *jwksURL is known, then loads
// the key set.
func (v *Verifier) attempt(jwksURL *string) error {
	if *jwksURL == "" {
		u, err := v.discover()
		if err != nil {
			return err
		}
		*jwksURL = u
	}
	return v.load(*jwksURL)
}

// discover fetches the issuer's OIDC discovery document, checks the issuer
// it announces and returns its jwks_uri.
func (v *Verifier) discover() (string, error) {
	docURL := strings.TrimSuffix(v.s.issuer, "/") + "/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(v.ctx, httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return "", fmt.Errorf("OIDC discovery at %s: %w", docURL, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("OIDC discovery: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return "", &ConfigError{Msg: fmt.Sprintf("--oidc-issuer %q: the provider has no OpenID discovery document at %s (HTTP %d); check the issuer URL, or set --oidc-jwks-url",
			v.s.issuer, docURL, resp.StatusCode)}
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("OIDC discovery at %s: HTTP %d", docURL, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", fmt.Errorf("OIDC discovery at %s: decoding the document: %w", docURL, err)
	}
	if doc.Issuer != v.s.issuer {
		return "", issuerMismatch(v.s.issuer, doc.Issuer, docURL)
	}
	if doc.JWKSURI == "" || !webURL(doc.JWKSURI) {
		return "", &ConfigError{Msg: fmt.Sprintf("the OpenID discovery document at %s announces no usable jwks_uri (%q; it must be https, or http on loopback): set --oidc-jwks-url",
			docURL, doc.JWKSURI)}
	}
	v.s.log.Debug("oidc: discovered the key set URL", "issuer", v.s.issuer, "jwks_url", doc.JWKSURI)
	return doc.JWKSURI, nil
}

// issuerMismatch explains that the configured issuer is not the one the
// provider announces.
func issuerMismatch(configured, announced, docURL string) *ConfigError {
	if announced != "" && strings.TrimSuffix(configured, "/") == strings.TrimSuffix(announced, "/") {
		return &ConfigError{Msg: fmt.Sprintf(`--oidc-issuer %q differs from the issuer the provider announces, %q, only by the trailing slash: configure it exactly as announced (Auth0 issuers end in "/")`,
			configured, announced)}
	}
	return &ConfigError{Msg: fmt.Sprintf("--oidc-issuer %q differs from the issuer the provider announces at %s, %q: configure it exactly as announced",
		configured, docURL, announced)}
}

// load fetches the key set at u and, if it holds keys, installs it with
// its background refresh.
func (v *Verifier) load(u string) error {
	ctx, cancel := context.WithCancel(v.ctx)
	raw := recordingStorage{Storage: jwkset.NewMemoryStorage(), replaced: v.refreshed}
	store, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:      v.s.client,
		Ctx:         ctx,
		HTTPTimeout: httpTimeout,
		// Fail here, so that the retry loop (with backoff, reported by
		// Ready) handles an unreachable key set rather than the hourly
		// refresh.
		NoErrorReturnFirstHTTPReq: false,
		RefreshErrorHandler:       v.refreshFailed(u),
		RefreshInterval:           v.s.refresh,
		Storage:                   raw,
	})
	if err != nil {
		cancel() // ends the refresh goroutine jwkset started
		return fmt.Errorf("fetching the key set %s: %w", u, err)
	}
	all, err := raw.KeyReadAll(ctx)
	if err == nil && len(all) == 0 {
		err = errors.New("it holds no supported signing keys")
	}
	if err != nil {
		cancel()
		return fmt.Errorf("key set %s: %w", u, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{u: store},
		PrioritizeHTTP:    true, // nothing is given locally: look at the fetched keys first
		RateLimitWaitMax:  unknownKIDWaitMax,
		RefreshUnknownKID: v.limiter,
	})
	if err != nil {
		cancel()
		return fmt.Errorf("key set %s: %w", u, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: client})
	if err != nil {
		cancel()
		return fmt.Errorf("key set %s: %w", u, err)
	}
	v.keys.Store(&keySet{url: u, raw: raw, client: client, kf: kf, cancel: cancel})
	v.mu.Lock()
	v.notReady = nil
	v.mu.Unlock()
	v.s.log.Info("oidc: signing keys loaded", "issuer", v.s.issuer, "jwks_url", u, "keys", len(all))
	return nil
}

// refreshed records a successful key set fetch.
func (v *Verifier) refreshed(n int) {
	v.mu.Lock()
	v.lastRefresh = nil
	v.mu.Unlock()
	if n == 0 {
		v.s.log.Warn("oidc: the key set holds no supported signing keys; every token will be refused", "issuer", v.s.issuer)
	} else {
		v.s.log.Debug("oidc: key set refreshed", "keys", n)
	}
}

// refreshFailed returns the jwkset RefreshErrorHandler for the key set at
// u: it records the failure (so that tokens naming unknown keys get "retry
// later" rather than 401) and logs it. The keys fetched before stay in use.
func (v *Verifier) refreshFailed(u string) func(ctx context.Context, err error) {
	return func(_ context.Context, err error) {
		if v.ctx.Err() != nil {
			return // closing
		}
		v.mu.Lock()
		v.lastRefresh = err
		v.mu.Unlock()
		v.s.log.Warn("oidc: key set refresh failed; keeping the keys fetched before", "jwks_url", u, "error", err.Error())
	}
}

// recordingStorage is the storage jwkset refreshes into; it reports every
// successful refresh.
type recordingStorage struct {
	jwkset.Storage
	replaced func(n int)
}

// KeyReplaceAll stores a freshly fetched key set and reports it.
func (r recordingStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if err := r.Storage.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	r.replaced(len(given))
	return nil
}

// oneLine joins the lines of a multi-line message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
