package oidc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Server modes of testIdP.
const (
	modeUp   = iota // answer normally
	mode503         // answer 503
	modeDrop        // close the connection without answering
)

// testKey is a signing key of the test issuer.
type testKey struct {
	kid    string
	alg    string
	signer crypto.Signer
}

// Keys are generated once: RSA generation is slow.
var (
	keysOnce sync.Once
	rsaKeys  []*rsa.PrivateKey
	ecKeys   []*ecdsa.PrivateKey
)

func genKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k)
			e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			ecKeys = append(ecKeys, e)
		}
	})
}

// testIdP is an OpenID issuer on a local httptest server that the test
// controls: it can publish and withdraw keys, go down, and counts requests.
type testIdP struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	published []testKey
	announce  string // issuer in the discovery document
	noAlg     bool   // publish JWKs without "alg"
	use       string // "use" of published JWKs (default "sig")

	mode          atomic.Int32
	jwksHits      atomic.Int64
	discoveryHits atomic.Int64
	jwksDelay     atomic.Int64 // nanoseconds; see delayJWKS
	RS, RS2, ES   testKey
	issuer, jwks  string
	mintedMu      sync.Mutex
	mintedTokens  []string
	logBuf        *lockedBuffer
}

func newIdP(t testing.TB) *testIdP {
	t.Helper()
	genKeys(t)
	idp := &testIdP{
		t:      t,
		RS:     testKey{kid: "rsa-1", alg: "RS256", signer: rsaKeys[0]},
		RS2:    testKey{kid: "rsa-2", alg: "RS256", signer: rsaKeys[1]},
		ES:     testKey{kid: "ec-1", alg: "ES256", signer: ecKeys[0]},
		logBuf: &lockedBuffer{},
	}
	idp.srv = httptest.NewServer(http.HandlerFunc(idp.serve))
	t.Cleanup(idp.srv.Close)
	idp.issuer = idp.srv.URL + "/" // Auth0 style
	idp.announce = idp.issuer
	idp.jwks = idp.srv.URL + "/.well-known/jwks.json"
	idp.published = []testKey{idp.RS, idp.ES}
	t.Cleanup(idp.checkLogs)
	return idp
}

func (idp *testIdP) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		idp.discoveryHits.Add(1)
	case "/.well-known/jwks.json":
		idp.jwksHits.Add(1)
		if !idp.delayJWKS(r.Context()) {
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	switch idp.mode.Load() {
	case mode503:
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	case modeDrop:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	idp.mu.Lock()
	defer idp.mu.Unlock()
	if r.URL.Path == "/.well-known/openid-configuration" {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":   idp.announce,
			"jwks_uri": idp.jwks,
		})
		return
	}
	var keys []map[string]string
	for _, k := range idp.published {
		jwk := jwkJSON(k, !idp.noAlg)
		if idp.use != "" {
			jwk["use"] = idp.use
		}
		keys = append(keys, jwk)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// delayJWKS holds a key set request for jwksDelay, re-read as it waits (so
// that lowering it releases requests already waiting). It returns false,
// at once, if the client gives up first, so that a long delay does not
// hold up the server's Close.
func (idp *testIdP) delayJWKS(ctx context.Context) bool {
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < time.Duration(idp.jwksDelay.Load()) {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkJSON is the public JWK of k, built by hand (not by the library under
// test).
func jwkJSON(k testKey, withAlg bool) map[string]string {
	m := map[string]string{"kid": k.kid, "use": "sig"}
	if withAlg {
		m["alg"] = k.alg
	}
	switch pub := k.signer.Public().(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64(pub.N.Bytes())
		m["e"] = b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		e, err := pub.ECDH()
		if err != nil {
			panic(err)
		}
		raw := e.Bytes() // 0x04 || X || Y
		m["kty"] = "EC"
		m["crv"] = "P-256"
		m["x"] = b64(raw[1:33])
		m["y"] = b64(raw[33:65])
	}
	return m
}

// publish replaces the published keys.
func (idp *testIdP) publish(keys ...testKey) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.published = keys
}

// claims returns valid claims for the test audience.
func (idp *testIdP) claims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":   idp.issuer,
		"sub":   "auth0|user-1",
		"aud":   []string{"https://api.tusgate.test", idp.srv.URL + "/userinfo"},
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
		"scope": "openid profile",
	}
}

// sign signs claims with k (kid in the header) and remembers the token, so
// that the logs can be checked for it.
func (idp *testIdP) sign(k testKey, claims jwt.MapClaims) string {
	idp.t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.alg), claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.signer)
	if err != nil {
		idp.t.Fatal(err)
	}
	idp.remember(s)
	return s
}

func (idp *testIdP) remember(tok string) {
	idp.mintedMu.Lock()
	idp.mintedTokens = append(idp.mintedTokens, tok)
	idp.mintedMu.Unlock()
}

// checkLogs fails the test if any token, or its signature, was logged.
func (idp *testIdP) checkLogs() {
	logs := idp.logBuf.String()
	idp.mintedMu.Lock()
	defer idp.mintedMu.Unlock()
	for _, tok := range idp.mintedTokens {
		parts := strings.Split(tok, ".")
		for _, p := range parts {
			if len(p) > 16 && strings.Contains(logs, p) {
				idp.t.Errorf("a token segment appears in the logs:\n%s", logs)
				return
			}
		}
	}
}

// config is a Config for this issuer, using discovery.
func (idp *testIdP) config() Config {
	return Config{
		Issuer:    idp.issuer,
		Audiences: []string{"https://api.tusgate.test"},
		Log:       slog.New(slog.NewTextHandler(idp.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// verifier starts a Verifier for cfg and closes it at the end of the test.
func (idp *testIdP) verifier(cfg Config) *Verifier {
	idp.t.Helper()
	v, err := New(context.Background(), cfg, 5*time.Second)
	if err != nil {
		idp.t.Fatalf("New: %v", err)
	}
	idp.t.Cleanup(v.Close)
	if err := v.Ready(); err != nil {
		idp.t.Fatalf("Ready: %v", err)
	}
	return v
}

// lockedBuffer is a concurrency-safe log sink.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// wantTokenError fails unless err is a *TokenError with desc.
func wantTokenError(t *testing.T, err error, desc string) {
	t.Helper()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("got %v (%T), want *TokenError %q", err, err, desc)
	}
	if te.Desc != desc {
		t.Fatalf("got TokenError %q, want %q", te.Desc, desc)
	}
	if te.Missing {
		t.Fatalf("TokenError %q has Missing set", te.Desc)
	}
	if errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("TokenError also wraps ErrKeysUnavailable")
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %v", what, within)
		case <-tick.C:
		}
	}
}
