package integration

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tusgate/tusgate/test/testenv"
)

const audience = "https://uploads.example/api"

// authSetup is a tusgate trusting a test issuer with an RSA and an EC key.
type authSetup struct {
	iss *testenv.Issuer
	b   *backend
	g   *gate
}

func startAuth(t *testing.T, b *backend, extra ...string) *authSetup {
	t.Helper()
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	iss.AddECKey(t, "ec1", true)
	args := append([]string{"--oidc-issuer", iss.URL, "--oidc-audience", audience}, extra...)
	g := b.start(t, args...)
	return &authSetup{iss: iss, b: b, g: g}
}

func (a *authSetup) token(t *testing.T, kid, subject string) string {
	return a.iss.Sign(t, kid, a.iss.Claims(subject, audience))
}

func bearer(tok string) map[string]string {
	return with(tusHeaders, "Authorization", "Bearer "+tok)
}

func TestAuthValidTokensEndToEnd(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		a := startAuth(t, b)
		for _, kid := range []string{"rsa1", "ec1"} {
			tok := a.token(t, kid, "auth0|alice")
			h := bearer(tok)
			data, sum := payload(6*MiB+3, 40)
			r := do(t, "POST", a.g.URL+"/files/", with(h, "Upload-Length", strconv.Itoa(len(data)), "Upload-Metadata", "filename YS5iaW4=,tusgate-owner bWFsbG9yeQ=="), nil)
			if r.Status != http.StatusCreated {
				t.Fatalf("%s POST: %d %s", kid, r.Status, r.Body)
			}
			loc := r.Header.Get("Location")
			id := uploadID(loc)
			if folder, _, ok := strings.Cut(id, "/"); !ok || len(folder) != 26 {
				t.Fatalf("upload ID %q does not start with a 26-character owner folder", id)
			}
			p := do(t, "PATCH", loc, with(h, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data))
			if p.Status != http.StatusNoContent {
				t.Fatalf("%s PATCH: %d %s", kid, p.Status, p.Body)
			}
			hd := do(t, "HEAD", loc, h, nil)
			if hd.Status != http.StatusOK || hd.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
				t.Fatalf("%s HEAD: %d", kid, hd.Status)
			}
			// The server-set owner replaces the client's reserved key.
			md := hd.Header.Get("Upload-Metadata")
			if !strings.Contains(md, "tusgate-owner "+base64.StdEncoding.EncodeToString([]byte("auth0|alice"))) || strings.Contains(md, "bWFsbG9yeQ==") {
				t.Fatalf("owner metadata not server-set: %q", md)
			}
			b.assertStored(t, loc, sum, int64(len(data)))
			g := do(t, "GET", loc, h, nil)
			if g.Status != http.StatusOK || sha256Hex([]byte(g.Body)) != sum {
				t.Fatalf("%s GET: %d", kid, g.Status)
			}
			if d := do(t, "DELETE", loc, h, nil); d.Status != http.StatusNoContent {
				t.Fatalf("%s DELETE: %d", kid, d.Status)
			}
			b.assertGone(t, loc)
		}
	})
}

// countUploads counts what the store holds, to prove a rejected request had
// no side effect.
func (b *backend) countUploads(t *testing.T) int {
	t.Helper()
	if b.s3 != nil {
		return len(b.s3.Keys(t, testBucket, "")) + len(b.s3.MultipartUploads(t, testBucket))
	}
	n := 0
	_ = filepath.WalkDir(b.dataDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".info") {
			n++
		}
		return nil
	})
	return n
}

func TestAuthRejectsBadTokens(t *testing.T) {
	b := s3Backend(t)
	a := startAuth(t, b)
	iss := a.iss
	valid := func() jwt.MapClaims { return iss.Claims("bob", audience) }
	modify := func(f func(jwt.MapClaims)) string {
		c := valid()
		f(c)
		return iss.Sign(t, "rsa1", c)
	}
	// alg=none.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, valid()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	// HS256 with the RSA public key as the HMAC secret (key confusion).
	pubDER, _ := x509.MarshalPKIXPublicKey(iss.PublicKey("rsa1").(*rsa.PublicKey))
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, valid())
	hs.Header["kid"] = "rsa1"
	confusedPEM, _ := hs.SignedString(pubPEM)
	confusedDER, _ := hs.SignedString(pubDER)
	// A valid token whose payload was changed after signing.
	good := a.token(t, "rsa1", "bob")
	parts := strings.Split(good, ".")
	forged, _ := json.Marshal(map[string]any{"iss": iss.URL, "sub": "admin", "aud": audience, "exp": time.Now().Add(time.Hour).Unix()})
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	// A token signed by a key the JWKS does not list.
	iss.AddRSAKey(t, "rogue", false)
	rogue := iss.Sign(t, "rogue", valid())

	cases := []struct {
		name string
		auth string // Authorization header; "" for none
		want int
	}{
		{"no token", "", 401},
		{"alg none", "Bearer " + none, 401},
		{"HS256 with RSA public key PEM", "Bearer " + confusedPEM, 401},
		{"HS256 with RSA public key DER", "Bearer " + confusedDER, 401},
		{"wrong iss", "Bearer " + modify(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" }), 401},
		{"missing iss", "Bearer " + modify(func(c jwt.MapClaims) { delete(c, "iss") }), 401},
		{"iss with trailing slash", "Bearer " + modify(func(c jwt.MapClaims) { c["iss"] = iss.URL + "/" }), 401},
		{"wrong aud", "Bearer " + modify(func(c jwt.MapClaims) { c["aud"] = "other-api" }), 401},
		{"expired", "Bearer " + modify(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), 401},
		{"no exp", "Bearer " + modify(func(c jwt.MapClaims) { delete(c, "exp") }), 401},
		{"nbf in the future", "Bearer " + modify(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), 401},
		{"missing sub", "Bearer " + modify(func(c jwt.MapClaims) { delete(c, "sub") }), 401},
		{"unknown kid", "Bearer " + rogue, 401},
		{"tampered payload", "Bearer " + tampered, 401},
		{"garbage", "Bearer not.a.jwt", 401},
		{"wrong scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), 401},
		{"oversized", "Bearer " + strings.Repeat("A", 9*1024), 401},
	}
	before := b.countUploads(t)
	for _, c := range cases {
		h := with(tusHeaders, "Upload-Length", "5")
		if c.auth != "" {
			h["Authorization"] = c.auth
		}
		r := do(t, "POST", a.g.URL+"/files/", h, nil)
		if r.Status != c.want {
			t.Errorf("%s: %d, want %d (%s)", c.name, r.Status, c.want, r.Body)
			continue
		}
		www := r.Header.Get("WWW-Authenticate")
		if !strings.HasPrefix(www, `Bearer realm="tusgate"`) {
			t.Errorf("%s: WWW-Authenticate %q", c.name, www)
		}
		if c.auth != "" && !strings.Contains(www, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q lacks invalid_token", c.name, www)
		}
		if c.auth == "" && strings.Contains(www, "error=") {
			t.Errorf("no token: WWW-Authenticate %q must not carry an error", www)
		}
	}
	if after := b.countUploads(t); after != before {
		t.Fatalf("rejected requests changed the store: %d → %d objects", before, after)
	}
	// The unknown kid made the verifier look at the JWKS again, once.
	fetches := iss.JWKSFetches()
	do(t, "POST", a.g.URL+"/files/", with(tusHeaders, "Upload-Length", "5", "Authorization", "Bearer "+rogue), nil)
	if iss.JWKSFetches() > fetches+1 {
		t.Fatalf("unknown kids hammer the JWKS: %d fetches after %d", iss.JWKSFetches(), fetches)
	}
	// No token or part of one in the log.
	log := a.g.Log()
	for _, secret := range []string{good, parts[2], confusedPEM} {
		if strings.Contains(log, secret) {
			t.Fatalf("a token appears in the log")
		}
	}
}

func TestAuthKeyRotationWithoutRestart(t *testing.T) {
	a := startAuth(t, diskBackend(t))
	a.iss.AddECKey(t, "ec2", false)
	tok := a.token(t, "ec2", "carol")
	if r := do(t, "POST", a.g.URL+"/files/", with(bearer(tok), "Upload-Length", "1"), nil); r.Status != 401 {
		t.Fatalf("unpublished key accepted: %d", r.Status)
	}
	a.iss.Publish("ec2", true)
	// The verifier refreshes on an unknown kid at most every few seconds.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := do(t, "POST", a.g.URL+"/files/", with(bearer(tok), "Upload-Length", "1"), nil)
		if r.Status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated key not accepted within 20s: %d %s", r.Status, r.Body)
		}
		time.Sleep(200 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestAuthScopes(t *testing.T) {
	a := startAuth(t, diskBackend(t), "--oidc-required-scopes", "upload:write")
	c := a.iss.Claims("dave", audience)
	r := do(t, "POST", a.g.URL+"/files/", with(bearer(a.iss.Sign(t, "rsa1", c)), "Upload-Length", "1"), nil)
	if r.Status != http.StatusForbidden || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("missing scope: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	c["scope"] = "openid upload:write"
	if r := do(t, "POST", a.g.URL+"/files/", with(bearer(a.iss.Sign(t, "rsa1", c)), "Upload-Length", "1"), nil); r.Status != http.StatusCreated {
		t.Fatalf("scope claim: %d %s", r.Status, r.Body)
	}
	delete(c, "scope")
	c["permissions"] = []string{"upload:write"}
	if r := do(t, "POST", a.g.URL+"/files/", with(bearer(a.iss.Sign(t, "rsa1", c)), "Upload-Length", "1"), nil); r.Status != http.StatusCreated {
		t.Fatalf("Auth0 permissions: %d %s", r.Status, r.Body)
	}
}

// Another user cannot reach an upload, by any route into tusd's handler.
func TestAuthOwnership(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		a := startAuth(t, b)
		alice, bob := bearer(a.token(t, "rsa1", "auth0|alice")), bearer(a.token(t, "ec1", "auth0|bob"))
		data, sum := payload(6*MiB, 41)
		r := do(t, "POST", a.g.URL+"/files/", with(alice, "Upload-Length", strconv.Itoa(len(data))), nil)
		loc := r.Header.Get("Location")
		half := 3 * MiB
		if p := do(t, "PATCH", loc, with(alice, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data[:half])); p.Status != 204 {
			t.Fatalf("alice PATCH: %d", p.Status)
		}
		// Alice's finished partial, for concatenation attempts.
		pr := do(t, "POST", a.g.URL+"/files/", with(alice, "Upload-Length", "4", "Upload-Concat", "partial"), nil)
		partial := pr.Header.Get("Location")
		do(t, "PATCH", partial, with(alice, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), strings.NewReader("abcd"))

		id := uploadID(loc)
		path := strings.TrimPrefix(loc, a.g.URL)
		patchH := func(h map[string]string) map[string]string {
			return with(h, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.Itoa(half))
		}
		attacks := []struct {
			name, method, url string
			header            map[string]string
			body              string
		}{
			{"HEAD", "HEAD", loc, bob, ""},
			{"PATCH", "PATCH", loc, patchH(bob), "evil"},
			{"GET", "GET", loc, bob, ""},
			{"DELETE", "DELETE", loc, bob, ""},
			{"override DELETE", "POST", loc, with(bob, "X-HTTP-Method-Override", "DELETE"), ""},
			{"override PATCH", "POST", loc, with(patchH(bob), "X-HTTP-Method-Override", "PATCH"), "evil"},
			{"override HEAD", "POST", loc, with(bob, "X-HTTP-Method-Override", "HEAD"), ""},
			{"double slash", "DELETE", a.g.URL + "/files//" + id, bob, ""},
			{"trailing slash", "DELETE", loc + "/", bob, ""},
			{"encoded slash", "DELETE", a.g.URL + "/files/" + strings.Replace(id, "/", "%2F", 1), bob, ""},
			{"base path without slash", "DELETE", a.g.URL + "/files" + "/" + id, bob, ""},
			{"IETF draft HEAD", "HEAD", loc, with(bob, "Upload-Draft-Interop-Version", "6"), ""},
			{"IETF draft PATCH", "PATCH", loc, with(bob, "Upload-Draft-Interop-Version", "6", "Content-Type", "application/partial-upload", "Upload-Offset", strconv.Itoa(half)), "evil"},
			{"concat partial by URL", "POST", a.g.URL + "/files/", with(bob, "Upload-Concat", "final;"+partial), ""},
			{"concat partial by path", "POST", a.g.URL + "/files/", with(bob, "Upload-Concat", "final;"+strings.TrimPrefix(partial, a.g.URL)), ""},
			{"concat via other host", "POST", a.g.URL + "/files/", with(bob, "Upload-Concat", "final;https://other.example"+strings.TrimPrefix(partial, a.g.URL)), ""},
			{"concat unfinished upload", "POST", a.g.URL + "/files/", with(bob, "Upload-Concat", "final;"+path), ""},
		}
		for _, at := range attacks {
			var body *strings.Reader
			if at.body != "" {
				body = strings.NewReader(at.body)
			}
			var resp response
			if body != nil {
				resp = do(t, at.method, at.url, at.header, body)
			} else {
				resp = do(t, at.method, at.url, at.header, nil)
			}
			if resp.Status != http.StatusNotFound {
				t.Errorf("bob's %s on alice's upload: %d, want 404 (%s)", at.name, resp.Status, resp.Body)
			}
		}
		// Unauthenticated attempts get 401 before anything else.
		if r := do(t, "HEAD", loc, tusHeaders, nil); r.Status != 401 {
			t.Errorf("anonymous HEAD: %d", r.Status)
		}

		// Ownership survives a restart; alice finishes intact.
		a.g.Restart()
		if r := do(t, "HEAD", loc, bob, nil); r.Status != 404 {
			t.Fatalf("bob's HEAD after restart: %d", r.Status)
		}
		if off := do(t, "HEAD", loc, alice, nil).Header.Get("Upload-Offset"); off != strconv.Itoa(half) {
			t.Fatalf("alice's offset after attacks: %q, want %d", off, half)
		}
		if p := do(t, "PATCH", loc, with(alice, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.Itoa(half)), bytes.NewReader(data[half:])); p.Status != 204 {
			t.Fatalf("alice's resume: %d %s", p.Status, p.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
		// Alice can concatenate her own partial.
		if r := do(t, "POST", a.g.URL+"/files/", with(alice, "Upload-Concat", "final;"+partial), nil); r.Status != http.StatusCreated {
			t.Fatalf("alice's concatenation: %d %s", r.Status, r.Body)
		}
	})
}

func TestAuthIssuerUnavailable(t *testing.T) {
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	iss.SetDown(true)
	g := startGate(t, nil, "--data-dir", t.TempDir(), "--oidc-issuer", iss.URL, "--oidc-audience", audience, "--cors-origins", "https://app.example")
	if r := do(t, "GET", g.URL+"/readyz", nil, nil); r.Status != 503 || r.Body != "oidc: unavailable\n" {
		t.Fatalf("readyz with the issuer down: %d %q", r.Status, r.Body)
	}
	tok := bearer(iss.Sign(t, "rsa1", iss.Claims("erin", audience)))
	if r := do(t, "HEAD", g.URL+"/files/x/y", with(tok, "Origin", "https://app.example"), nil); r.Status != http.StatusLocked || r.Header.Get("Retry-After") == "" || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("HEAD without keys: %d Retry-After %q ACAO %q", r.Status, r.Header.Get("Retry-After"), r.Header.Get("Access-Control-Allow-Origin"))
	}
	if r := do(t, "POST", g.URL+"/files/", with(tok, "Upload-Length", "1"), nil); r.Status != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("POST without keys: %d", r.Status)
	}
	iss.SetDown(false)
	deadline := time.Now().Add(40 * time.Second)
	for {
		r := do(t, "POST", g.URL+"/files/", with(tok, "Upload-Length", "1"), nil)
		if r.Status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuer back, still %d", r.Status)
		}
		time.Sleep(200 * time.Millisecond) // polling a condition with a deadline
	}
	if r := do(t, "GET", g.URL+"/readyz", nil, nil); r.Status != 200 {
		t.Fatalf("readyz after the issuer came back: %d %q", r.Status, r.Body)
	}
	// CORS headers on 401 too.
	if r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Origin", "https://app.example", "Upload-Length", "1"), nil); r.Status != 401 || r.Header.Get("Access-Control-Allow-Origin") == "" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Fatalf("401 without CORS: %d %v", r.Status, r.Header)
	}
}

func TestAuthStartupChecks(t *testing.T) {
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	iss.Announce(iss.URL + "/") // as Auth0 does
	code, out := runGate(t, nil, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--oidc-issuer", iss.URL, "--oidc-audience", audience)
	if code != 2 || !strings.Contains(out, "trailing slash") {
		t.Fatalf("issuer differing by a trailing slash: exit %d\n%s", code, out)
	}
	code, out = runGate(t, nil, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(out, "no authentication configured") {
		t.Fatalf("no auth: exit %d\n%s", code, out)
	}
	code, out = runGate(t, nil, "--listen", "0.0.0.0:0", "--dev", "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(out, "--dev-allow-remote") {
		t.Fatalf("--dev on all interfaces: exit %d\n%s", code, out)
	}
}

// devToken asks the development issuer for a token.
func devToken(t *testing.T, g *gate, user string) string {
	t.Helper()
	resp, err := http.PostForm(g.URL+"/dev/oidc/token", map[string][]string{"username": {user}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body.AccessToken == "" {
		t.Fatalf("dev token: %d %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

func TestDevIssuer(t *testing.T) {
	b := diskBackend(t)
	g := b.start(t, "--dev")
	tok := devToken(t, g, "alice")
	data, sum := payload(MiB, 42)
	r := do(t, "POST", g.URL+"/files/", with(bearer(tok), "Upload-Length", strconv.Itoa(len(data))), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("POST with a dev token: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	// The signing key lives in the data dir: the token works after a restart.
	g.Restart()
	p := do(t, "PATCH", loc, with(bearer(tok), "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data))
	if p.Status != http.StatusNoContent {
		t.Fatalf("PATCH after restart with the old token: %d %s", p.Status, p.Body)
	}
	b.assertStored(t, loc, sum, int64(len(data)))
	if r := do(t, "HEAD", loc, bearer(devToken(t, g, "mallory")), nil); r.Status != 404 {
		t.Fatalf("another dev user's HEAD: %d", r.Status)
	}
	if !strings.Contains(g.Log(), "DEVELOPMENT MODE") {
		t.Fatalf("no development banner in the log")
	}
	_ = fmt.Sprint
}
