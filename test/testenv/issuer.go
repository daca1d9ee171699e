package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is a minimal OpenID provider for tests: discovery and a JWKS on
// 127.0.0.1, with keys the test adds, rotates and signs tokens with. It can
// be taken down, and counts JWKS fetches.
type Issuer struct {
	URL string // http://127.0.0.1:PORT (no trailing slash)

	mu        sync.Mutex
	keys      map[string]crypto.Signer // kid → private key
	published map[string]bool          // kids in the JWKS
	announced string                   // issuer in the discovery document
	down      bool

	jwksFetches atomic.Int64
}

// StartIssuer starts the provider and stops it when the test ends.
func StartIssuer(t testing.TB) *Issuer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: StartIssuer: %v", err)
	}
	iss := &Issuer{URL: "http://" + l.Addr().String(), keys: map[string]crypto.Signer{}, published: map[string]bool{}}
	iss.announced = iss.URL
	srv := &http.Server{Handler: iss, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return iss
}

// AddRSAKey creates an RSA-2048 key; publish says whether the JWKS lists it.
func (i *Issuer) AddRSAKey(t testing.TB, kid string, publish bool) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	i.addKey(kid, k, publish)
}

// AddECKey creates a P-256 key; publish says whether the JWKS lists it.
func (i *Issuer) AddECKey(t testing.TB, kid string, publish bool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	i.addKey(kid, k, publish)
}

func (i *Issuer) addKey(kid string, k crypto.Signer, publish bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys[kid] = k
	i.published[kid] = publish
}

// Publish lists (or stops listing) a key in the JWKS, e.g. to rotate.
func (i *Issuer) Publish(kid string, publish bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published[kid] = publish
}

// PublicKey returns the public half of a key.
func (i *Issuer) PublicKey(kid string) crypto.PublicKey {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.keys[kid].Public()
}

// Announce sets the issuer string of the discovery document (default URL).
func (i *Issuer) Announce(issuer string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.announced = issuer
}

// SetDown makes every request answer 503.
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.down = down
}

// JWKSFetches counts JWKS requests served.
func (i *Issuer) JWKSFetches() int64 { return i.jwksFetches.Load() }

// Claims returns the claims of a valid token for subject.
func (i *Issuer) Claims(subject, audience string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": i.URL, "sub": subject, "aud": audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// Sign signs claims with key kid (RS256 for RSA keys, ES256 for EC keys).
func (i *Issuer) Sign(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	i.mu.Lock()
	k := i.keys[kid]
	i.mu.Unlock()
	var method jwt.SigningMethod = jwt.SigningMethodRS256
	if _, ok := k.(*ecdsa.PrivateKey); ok {
		method = jwt.SigningMethodES256
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ServeHTTP serves discovery and the JWKS.
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	down, announced := i.down, i.announced
	i.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                announced,
			"jwks_uri":                              i.URL + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	case "/jwks.json":
		i.jwksFetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": i.jwks()})
	default:
		http.NotFound(w, r)
	}
}

func (i *Issuer) jwks() []map[string]string {
	i.mu.Lock()
	defer i.mu.Unlock()
	b64 := base64.RawURLEncoding.EncodeToString
	var out []map[string]string
	for kid, k := range i.keys {
		if !i.published[kid] {
			continue
		}
		switch pub := k.Public().(type) {
		case *rsa.PublicKey:
			out = append(out, map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
				"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())})
		case *ecdsa.PublicKey:
			point, err := pub.Bytes() // 0x04 || X || Y
			if err != nil || len(point) != 65 {
				continue
			}
			x, y := point[1:33], point[33:]
			out = append(out, map[string]string{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
				"x": b64(x), "y": b64(y)})
		}
	}
	return out
}
