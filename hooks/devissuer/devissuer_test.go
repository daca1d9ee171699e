package devissuer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "http://127.0.0.1:8080/dev/oidc"
	testAudience = "tusgate"
)

// t0 is the fixed "now" of issuers created by newTestIssuer.
var t0 = time.Unix(1_700_000_000, 0)

func newTestIssuer(t *testing.T, opts Options) *Issuer {
	t.Helper()
	if opts.IssuerURL == "" {
		opts.IssuerURL = testIssuer
	}
	if opts.Audience == "" {
		opts.Audience = testAudience
	}
	if opts.KeyFile == "" {
		opts.KeyFile = filepath.Join(t.TempDir(), "dev-issuer-key.pem")
	}
	iss, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	iss.now = func() time.Time { return t0 }
	return iss
}

// do sends a request to the issuer's handler.
func do(t *testing.T, iss *Issuer, method, target, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	iss.Handler().ServeHTTP(rec, req)
	return rec
}

func decodeJSON(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body.String(), err)
	}
}

// publicKeyFromJWKS fetches the JWKS and returns its only key and kid, checking that it is a public EC key.
func publicKeyFromJWKS(t *testing.T, iss *Issuer) (*ecdsa.PublicKey, string) {
	t.Helper()
	rec := do(t, iss, http.MethodGet, "/jwks.json", "", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /jwks.json: %d %s", rec.Code, rec.Body)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	decodeJSON(t, rec, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1: %s", len(set.Keys), rec.Body)
	}
	k := set.Keys[0]
	if _, ok := k["d"]; ok {
		t.Fatalf("JWKS contains the private member d: %s", rec.Body)
	}
	want := map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"}
	for name, v := range want {
		if k[name] != v {
			t.Errorf("JWK %s = %v, want %q", name, k[name], v)
		}
	}
	var members []string
	for name := range k {
		members = append(members, name)
	}
	slices.Sort(members)
	if got := strings.Join(members, ","); got != "alg,crv,kid,kty,use,x,y" {
		t.Errorf("JWK members = %s, want alg,crv,kid,kty,use,x,y", got)
	}
	x, errX := base64.RawURLEncoding.DecodeString(k["x"].(string))
	y, errY := base64.RawURLEncoding.DecodeString(k["y"].(string))
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		t.Fatalf("bad x/y: %v %v len %d %d", errX, errY, len(x), len(y))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatalf("JWKS key is not a valid P-256 point: %v", err)
	}
	kid, _ := k["kid"].(string)
	// Independent RFC 7638 computation: required members in lexicographic order, no whitespace.
	canonical := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, k["x"], k["y"])
	sum := sha256.Sum256([]byte(canonical))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); kid != want {
		t.Errorf("kid = %q, want RFC 7638 thumbprint %q", kid, want)
	}
	return pub, kid
}

// verify checks the token's signature with pub and the standard claims, and returns the raw claims.
func verify(t *testing.T, token string, pub *ecdsa.PublicKey, kid string, at time.Time) (jwt.MapClaims, *jwt.Token) {
	t.Helper()
	parsed, err := jwt.Parse(token, func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != kid {
			return nil, fmt.Errorf("kid %v, want %s", tok.Header["kid"], kid)
		}
		return pub, nil
	},
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return at }),
	)
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return parsed.Claims.(jwt.MapClaims), parsed
}

// rawClaims decodes the payload without verification, to check exact JSON types.
func rawClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiscovery(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	rec := do(t, iss, http.MethodGet, "/.well-known/openid-configuration", "", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var doc map[string]any
	decodeJSON(t, rec, &doc)
	wantStrings := map[string]string{
		"issuer":                        testIssuer,
		"jwks_uri":                      testIssuer + "/jwks.json",
		"token_endpoint":                testIssuer + "/token",
		"device_authorization_endpoint": testIssuer + "/device/code",
	}
	for k, v := range wantStrings {
		if doc[k] != v {
			t.Errorf("%s = %#v, want %q", k, doc[k], v)
		}
	}
	wantLists := map[string][]string{
		"id_token_signing_alg_values_supported": {"ES256"},
		"response_types_supported":              {"token"},
		"subject_types_supported":               {"public"},
		"grant_types_supported":                 {"password", DeviceCodeGrant, RefreshTokenGrant},
	}
	for k, want := range wantLists {
		raw, _ := doc[k].([]any)
		var got []string
		for _, v := range raw {
			s, _ := v.(string)
			got = append(got, s)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s = %#v, want %q", k, doc[k], want)
		}
	}
	// The issuer string must be byte-for-byte equal to IssuerURL (no escaping, no normalization).
	if !bytes.Contains(rec.Body.Bytes(), []byte(`"issuer":"`+testIssuer+`"`)) {
		t.Errorf("issuer not byte-identical in %s", rec.Body)
	}

	if rec := do(t, iss, http.MethodHead, "/.well-known/openid-configuration", "", ""); rec.Code != http.StatusOK {
		t.Errorf("HEAD discovery: %d", rec.Code)
	}
	rec = do(t, iss, http.MethodPost, "/.well-known/openid-configuration", "", "")
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST discovery: %d Allow=%q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestDiscoveryTrailingSlashIssuer(t *testing.T) {
	const issuer = "https://dev.example.com/"
	iss := newTestIssuer(t, Options{IssuerURL: issuer})
	var doc map[string]any
	decodeJSON(t, do(t, iss, http.MethodGet, "/.well-known/openid-configuration", "", ""), &doc)
	if doc["issuer"] != issuer || doc["jwks_uri"] != "https://dev.example.com/jwks.json" ||
		doc["token_endpoint"] != "https://dev.example.com/token" {
		t.Errorf("discovery = %v", doc)
	}
}

func TestJWKS(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	_, kid := publicKeyFromJWKS(t, iss)
	if kid != iss.kid {
		t.Errorf("JWKS kid %q, issuer kid %q", kid, iss.kid)
	}
	rec := do(t, iss, http.MethodDelete, "/jwks.json", "", "")
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /jwks.json: %d", rec.Code)
	}
	if rec := do(t, iss, http.MethodGet, "/nope", "", ""); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d", rec.Code)
	}
}

type tokenResp struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

func requestToken(t *testing.T, iss *Issuer, target, contentType, body string) tokenResp {
	t.Helper()
	rec := do(t, iss, http.MethodPost, target, contentType, body)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST %s %s: %d %s", target, body, rec.Code, rec.Body)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var tr tokenResp
	decodeJSON(t, rec, &tr)
	if tr.TokenType != "Bearer" || tr.AccessToken == "" {
		t.Fatalf("bad token response %+v", tr)
	}
	return tr
}

func TestToken(t *testing.T) {
	const ttl = 30 * time.Minute
	iss := newTestIssuer(t, Options{TokenTTL: ttl})
	pub, kid := publicKeyFromJWKS(t, iss)

	cases := []struct {
		name, contentType, body string
		user, scope             string
	}{
		{"form", "application/x-www-form-urlencoded", "username=alice&scope=upload+read", "alice", "upload read"},
		{"form with password grant", "application/x-www-form-urlencoded; charset=utf-8",
			"grant_type=password&username=auth0%7Calice&password=whatever&client_id=x", "auth0|alice", ""},
		{"json", "application/json", `{"username":"bob.smith@example.com","scope":"upload"}`, "bob.smith@example.com", "upload"},
		{"json no scope", "application/json; charset=utf-8", `{"username":"carol_1-2"}`, "carol_1-2", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := requestToken(t, iss, "/token", tc.contentType, tc.body)
			if tr.ExpiresIn != int64(ttl/time.Second) {
				t.Errorf("expires_in = %d, want %d", tr.ExpiresIn, int64(ttl/time.Second))
			}
			if tr.Scope != tc.scope {
				t.Errorf("scope = %q, want %q", tr.Scope, tc.scope)
			}
			_, parsed := verify(t, tr.AccessToken, pub, kid, t0.Add(time.Second))
			if parsed.Header["alg"] != "ES256" || parsed.Header["kid"] != kid {
				t.Errorf("header = %v", parsed.Header)
			}

			c := rawClaims(t, tr.AccessToken)
			want := map[string]any{
				"iss": testIssuer,
				"sub": tc.user,
				"aud": testAudience, // a plain string, not an array
				"iat": float64(t0.Unix()),
				"nbf": float64(t0.Unix()),
				"exp": float64(t0.Add(ttl).Unix()),
			}
			if tc.scope != "" {
				want["scope"] = tc.scope
			}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("claim %s = %#v, want %#v", k, c[k], v)
				}
			}
			jti, _ := c["jti"].(string)
			if len(jti) < 16 {
				t.Errorf("jti = %#v, want a random string", c["jti"])
			}
			if len(c) != len(want)+1 {
				t.Errorf("claims = %v, want exactly %v plus jti", c, want)
			}
		})
	}

	// The token is rejected once expired and before it is valid.
	tr := requestToken(t, iss, "/token", "application/x-www-form-urlencoded", "username=alice")
	for _, at := range []time.Time{t0.Add(ttl + time.Second), t0.Add(-time.Minute)} {
		_, err := jwt.Parse(tr.AccessToken, func(*jwt.Token) (any, error) { return pub, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return at }), jwt.WithIssuedAt())
		if err == nil {
			t.Errorf("token accepted at %v", at)
		}
	}
}

func TestTokenUniqueJTI(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	seen := map[string]bool{}
	for range 20 {
		tok, _, err := iss.Mint("alice", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		jti := rawClaims(t, tok)["jti"].(string)
		if seen[jti] {
			t.Fatalf("duplicate jti %q", jti)
		}
		seen[jti] = true
	}
}

func TestTokenTTLParam(t *testing.T) {
	iss := newTestIssuer(t, Options{}) // default TTL: 1h
	if iss.ttl != DefaultTokenTTL {
		t.Fatalf("default TTL = %v", iss.ttl)
	}
	pub, kid := publicKeyFromJWKS(t, iss)

	shorter := []struct{ target, contentType, body string }{
		{"/token?ttl=5m", "application/x-www-form-urlencoded", "username=alice"},
		{"/token", "application/x-www-form-urlencoded", "username=alice&ttl=5m"},
		{"/token", "application/json", `{"username":"alice","ttl":"5m"}`},
		{"/token?ttl=5m", "application/json", `{"username":"alice"}`},
	}
	for _, tc := range shorter {
		tr := requestToken(t, iss, tc.target, tc.contentType, tc.body)
		if tr.ExpiresIn != 300 {
			t.Errorf("%s %s: expires_in = %d, want 300", tc.target, tc.body, tr.ExpiresIn)
		}
		c, _ := verify(t, tr.AccessToken, pub, kid, t0)
		if exp, _ := c.GetExpirationTime(); !exp.Equal(t0.Add(5 * time.Minute)) {
			t.Errorf("exp = %v, want %v", exp, t0.Add(5*time.Minute))
		}
	}

	// Exactly TokenTTL is allowed.
	if tr := requestToken(t, iss, "/token?ttl=1h", "application/x-www-form-urlencoded", "username=alice"); tr.ExpiresIn != 3600 {
		t.Errorf("ttl=1h: expires_in = %d", tr.ExpiresIn)
	}

	// Longer than TokenTTL, non-positive, too short or malformed values are rejected.
	for _, ttl := range []string{"1h1s", "24h", "0s", "-5m", "500ms", "5", "soon"} {
		rec := do(t, iss, http.MethodPost, "/token?ttl="+url.QueryEscape(ttl), "application/x-www-form-urlencoded", "username=alice")
		assertInvalidRequest(t, rec, "ttl="+ttl)
	}
	rec := do(t, iss, http.MethodPost, "/token", "application/json", `{"username":"alice","ttl":3600}`)
	assertInvalidRequest(t, rec, "numeric JSON ttl")
}

func assertInvalidRequest(t *testing.T, rec *httptest.ResponseRecorder, what string) {
	t.Helper()
	if rec.Code != http.StatusBadRequest {
		t.Errorf("%s: status %d, want 400: %s", what, rec.Code, rec.Body)
		return
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	decodeJSON(t, rec, &e)
	if e.Error != "invalid_request" || e.Description == "" {
		t.Errorf("%s: error body = %s", what, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "access_token") {
		t.Errorf("%s: error body contains a token", what)
	}
}

func TestTokenInvalidInput(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	badUsers := []string{"", strings.Repeat("a", 65), "alice smith", " alice", "<script>", "<script>alert(1)</script>",
		"al\"ice", "alice/bob", "alïce", "alice\n", "alice\x00"}
	for _, u := range badUsers {
		rec := do(t, iss, http.MethodPost, "/token", "application/x-www-form-urlencoded", url.Values{"username": {u}}.Encode())
		assertInvalidRequest(t, rec, fmt.Sprintf("form username %q", u))
		body, _ := json.Marshal(map[string]string{"username": u})
		rec = do(t, iss, http.MethodPost, "/token", "application/json", string(body))
		assertInvalidRequest(t, rec, fmt.Sprintf("json username %q", u))
	}
	// 64 characters is the maximum and is fine.
	requestToken(t, iss, "/token", "application/x-www-form-urlencoded", "username="+strings.Repeat("a", 64))

	other := []struct{ name, contentType, body string }{
		{"missing username", "application/x-www-form-urlencoded", "scope=upload"},
		{"username twice", "application/x-www-form-urlencoded", "username=alice&username=bob"},
		{"bad scope char", "application/x-www-form-urlencoded", "username=alice&scope=" + url.QueryEscape(`a"b`)},
		{"non-ascii scope", "application/json", `{"username":"alice","scope":"ü"}`},
		{"long scope", "application/json", `{"username":"alice","scope":"` + strings.Repeat("s", 1025) + `"}`},
		{"malformed json", "application/json", `{"username":`},
		{"json array", "application/json", `["alice"]`},
		{"two json objects", "application/json", `{"username":"alice"}{"username":"bob"}`},
		{"no content type", "", "username=alice"},
		{"text/plain", "text/plain", "username=alice"},
		{"huge body", "application/json", `{"username":"alice","x":"` + strings.Repeat("x", 100<<10) + `"}`},
	}
	for _, tc := range other {
		assertInvalidRequest(t, do(t, iss, http.MethodPost, "/token", tc.contentType, tc.body), tc.name)
	}

	rec := do(t, iss, http.MethodPost, "/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&username=alice")
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"unsupported_grant_type"`) {
		t.Errorf("unsupported grant type: %d %s", rec.Code, rec.Body)
	}

	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodOptions} {
		rec := do(t, iss, m, "/token?username=alice", "", "")
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s /token: %d, want 405", m, rec.Code)
		}
		if rec.Header().Get("Allow") != "POST" {
			t.Errorf("%s /token: Allow = %q", m, rec.Header().Get("Allow"))
		}
	}
}

func TestMint(t *testing.T) {
	iss := newTestIssuer(t, Options{TokenTTL: 10 * time.Minute})
	pub, kid := publicKeyFromJWKS(t, iss)

	tok, exp, err := iss.Mint("auth0|alice", "  upload   read ", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("exp = %v", exp)
	}
	c, _ := verify(t, tok, pub, kid, t0)
	if c["sub"] != "auth0|alice" || c["scope"] != "upload read" {
		t.Errorf("claims = %v", c)
	}

	if _, exp, err := iss.Mint("alice", "", time.Minute); err != nil || !exp.Equal(t0.Add(time.Minute)) {
		t.Errorf("Mint 1m: %v %v", exp, err)
	}
	for _, ttl := range []time.Duration{10*time.Minute + time.Second, -time.Second, time.Millisecond} {
		if _, _, err := iss.Mint("alice", "", ttl); err == nil {
			t.Errorf("Mint with ttl %v succeeded", ttl)
		}
	}
	if _, _, err := iss.Mint("<script>", "", 0); err == nil {
		t.Error("Mint with bad user succeeded")
	}
}

func TestKeyPersistence(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "data", "dev-issuer-key.pem") // parent directory does not exist yet
	first := newTestIssuer(t, Options{KeyFile: keyFile})

	info, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(keyFile)
	if block, _ := pem.Decode(data); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("key file is not a PKCS #8 PEM: %q", data)
	}
	entries, _ := os.ReadDir(filepath.Dir(keyFile))
	if len(entries) != 1 {
		t.Errorf("unexpected files next to the key: %v", entries)
	}

	tok, _, err := first.Mint("alice", "", 0)
	if err != nil {
		t.Fatal(err)
	}

	second := newTestIssuer(t, Options{KeyFile: keyFile})
	if first.kid != second.kid {
		t.Fatalf("kid changed across restarts: %q → %q", first.kid, second.kid)
	}
	pub, kid := publicKeyFromJWKS(t, second)
	verify(t, tok, pub, kid, t0)

	// A different key file gives a different key, whose JWKS does not verify the token.
	other := newTestIssuer(t, Options{KeyFile: filepath.Join(dir, "other.pem")})
	if other.kid == first.kid {
		t.Fatal("two key files produced the same kid")
	}
	otherPub, _ := publicKeyFromJWKS(t, other)
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return otherPub, nil },
		jwt.WithTimeFunc(func() time.Time { return t0 })); err == nil {
		t.Error("token verified with an unrelated key")
	}
}

func TestKeyFileConcurrentCreate(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	const n = 8
	kids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			iss, err := New(Options{IssuerURL: testIssuer, Audience: testAudience, KeyFile: keyFile})
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = iss.kid
		})
	}
	wg.Wait()
	for _, k := range kids[1:] {
		if k != kids[0] {
			t.Fatalf("concurrent New produced different kids: %v", kids)
		}
	}
}

func TestKeyFileSEC1AndPermissions(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "sec1.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	iss := newTestIssuer(t, Options{KeyFile: keyFile})
	if !iss.key.Equal(key) {
		t.Error("SEC 1 key file not loaded")
	}
	if runtime.GOOS != "windows" {
		if info, _ := os.Stat(keyFile); info.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want it tightened to 0600", info.Mode().Perm())
		}
	}
}

func TestKeyFileCorrupt(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)

	cases := map[string][]byte{
		"garbage":   []byte("this is not a key\n"),
		"empty":     nil,
		"truncated": []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n-----END PRIVATE KEY-----\n"),
		"wrong pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		"rsa":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}),
		"p384":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			keyFile := filepath.Join(t.TempDir(), "dev-issuer-key.pem")
			if err := os.WriteFile(keyFile, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{IssuerURL: testIssuer, Audience: testAudience, KeyFile: keyFile})
			if err == nil {
				t.Fatal("New succeeded with a corrupt key file")
			}
			if !strings.Contains(err.Error(), keyFile) || !strings.Contains(err.Error(), "delete it") {
				t.Errorf("error %q does not name the file and the remedy", err)
			}
			// The corrupt file must be left alone.
			if got, _ := os.ReadFile(keyFile); !bytes.Equal(got, data) {
				t.Error("corrupt key file was modified")
			}
		})
	}

	t.Run("parent is a file", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(parent, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(parent, "key.pem")
		_, err := New(Options{IssuerURL: testIssuer, Audience: testAudience, KeyFile: keyFile})
		if err == nil || !strings.Contains(err.Error(), keyFile) {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("unreadable (a directory)", func(t *testing.T) {
		keyFile := t.TempDir()
		_, err := New(Options{IssuerURL: testIssuer, Audience: testAudience, KeyFile: keyFile})
		if err == nil || !strings.Contains(err.Error(), keyFile) || !strings.Contains(err.Error(), "delete it") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestNewOptions(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	bad := []Options{
		{Audience: testAudience},
		{IssuerURL: "127.0.0.1:8080/dev/oidc", Audience: testAudience},
		{IssuerURL: "/dev/oidc", Audience: testAudience},
		{IssuerURL: "ftp://example.com/", Audience: testAudience},
		{IssuerURL: "http://example.com/?a=b", Audience: testAudience},
		{IssuerURL: "http://example.com/#x", Audience: testAudience},
		{IssuerURL: testIssuer},
		{IssuerURL: testIssuer, Audience: testAudience, TokenTTL: -time.Minute},
		{IssuerURL: testIssuer, Audience: testAudience, TokenTTL: time.Millisecond},
	}
	for _, o := range bad {
		o.KeyFile = keyFile
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}

	// No KeyFile: ephemeral key.
	iss, err := New(Options{IssuerURL: testIssuer, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := iss.Mint("alice", "", 0); err != nil {
		t.Fatal(err)
	}
}

// TestNoTokensInLogs checks that minted tokens never reach the log.
func TestNoTokensInLogs(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	iss := newTestIssuer(t, Options{Log: log})

	tr := requestToken(t, iss, "/token", "application/x-www-form-urlencoded", "username=alice&scope=upload")
	tok, _, err := iss.Mint("bob", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	do(t, iss, http.MethodPost, "/token", "application/x-www-form-urlencoded", "username=%3Cscript%3E")

	out := buf.String()
	for _, secret := range []string{tr.AccessToken, tok, strings.Split(tok, ".")[2]} {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains a token:\n%s", out)
		}
	}
	if !strings.Contains(out, "sub=alice") || !strings.Contains(out, "sub=bob") {
		t.Errorf("expected mint events in the log:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEndToEnd mounts the handler like tusgate does and walks discovery → JWKS → token over real HTTP.
func TestEndToEnd(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()

	issuerURL := srv.URL + "/dev/oidc"
	iss, err := New(Options{IssuerURL: issuerURL, Audience: testAudience, KeyFile: filepath.Join(t.TempDir(), "k.pem")})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", iss.Handler()))

	getJSON := func(u string, v any) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", u, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}

	var doc struct {
		Issuer        string `json:"issuer"`
		JWKSURI       string `json:"jwks_uri"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	getJSON(issuerURL+"/.well-known/openid-configuration", &doc)
	if doc.Issuer != issuerURL {
		t.Fatalf("issuer %q, want %q", doc.Issuer, issuerURL)
	}

	var set struct {
		Keys []struct{ Kid, X, Y string } `json:"keys"`
	}
	getJSON(doc.JWKSURI, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("keys: %+v", set.Keys)
	}
	x, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	y, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].Y)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}

	resp, err := http.PostForm(doc.TokenEndpoint+"?ttl=2m", url.Values{"username": {"auth0|alice"}, "scope": {"upload"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %s %s", resp.Status, body)
	}
	var tr tokenResp
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.ExpiresIn != 120 {
		t.Errorf("expires_in = %d", tr.ExpiresIn)
	}
	parsed, err := jwt.Parse(tr.AccessToken, func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != set.Keys[0].Kid {
			return nil, fmt.Errorf("unknown kid %v", tok.Header["kid"])
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(issuerURL), jwt.WithAudience(testAudience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithSubject("auth0|alice"))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if parsed.Claims.(jwt.MapClaims)["scope"] != "upload" {
		t.Errorf("claims %v", parsed.Claims)
	}

	resp, err = http.Get(doc.TokenEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET token endpoint: %s", resp.Status)
	}
}
