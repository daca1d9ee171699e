package oidc

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyAccepts(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	for _, k := range []testKey{idp.RS, idp.ES} {
		t.Run(k.alg, func(t *testing.T) {
			c := idp.claims()
			p, err := v.Verify(context.Background(), idp.sign(k, c))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != "auth0|user-1" || p.Issuer != idp.issuer {
				t.Errorf("principal %+v", p)
			}
			if want := time.Unix(c["exp"].(int64), 0); !p.Expiry.Equal(want) {
				t.Errorf("Expiry %v, want %v", p.Expiry, want)
			}
			if !slices.Equal(p.Scopes, []string{"openid", "profile"}) {
				t.Errorf("Scopes %q", p.Scopes)
			}
		})
	}
	if n := idp.discoveryHits.Load(); n != 1 {
		t.Errorf("discovery fetched %d times, want 1", n)
	}
}

func TestVerifyAudienceForms(t *testing.T) {
	idp := newIdP(t)
	cfg := idp.config()
	cfg.Audiences = []string{"other", "https://api.tusgate.test"}
	v := idp.verifier(cfg)
	for name, aud := range map[string]any{
		"string":         "https://api.tusgate.test",
		"array":          []string{"x", "https://api.tusgate.test", "y"},
		"second of both": []string{"other"},
	} {
		t.Run(name, func(t *testing.T) {
			c := idp.claims()
			c["aud"] = aud
			if _, err := v.Verify(context.Background(), idp.sign(idp.RS, c)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	now := time.Now()
	with := func(change func(jwt.MapClaims)) string {
		c := idp.claims()
		change(c)
		return idp.sign(idp.RS, c)
	}
	good := idp.sign(idp.RS, idp.claims())
	parts := strings.Split(good, ".")
	tampered := func() string {
		c := idp.claims()
		c["sub"] = "auth0|admin"
		other := strings.Split(idp.sign(idp.RS2, c), ".")
		return parts[0] + "." + other[1] + "." + parts[2]
	}()
	none := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, idp.claims())
		tok.Header["kid"] = idp.RS.kid
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		idp.remember(s)
		return s
	}()
	esWithRSAKid := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, idp.claims())
		tok.Header["kid"] = idp.RS.kid
		s, err := tok.SignedString(idp.ES.signer)
		if err != nil {
			t.Fatal(err)
		}
		idp.remember(s)
		return s
	}()
	unknownAlg := b64([]byte(`{"alg":"XS256","kid":"rsa-1"}`)) + "." + parts[1] + "." + parts[2]
	noAlg := b64([]byte(`{"kid":"rsa-1"}`)) + "." + parts[1] + "." + parts[2]

	cases := []struct {
		name, token, desc string
	}{
		{"alg none", none, descAlgorithm},
		{"alg unknown", unknownAlg, descAlgorithm},
		{"alg missing", noAlg, descAlgorithm},
		{"ES256 token naming an RSA key", esWithRSAKid, descKeyMismatch},
		{"tampered payload", tampered, descSignature},
		{"signature of another key", parts[0] + "." + parts[1] + "." + strings.Split(idp.sign(idp.RS2, idp.claims()), ".")[2], descSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", descSignature},
		{"wrong issuer", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" }), descWrongIssuer},
		{"issuer missing", with(func(c jwt.MapClaims) { delete(c, "iss") }), descNoIssuer},
		{"issuer not a string", with(func(c jwt.MapClaims) { c["iss"] = 7 }), descWrongIssuer},
		{"issuer without trailing slash", with(func(c jwt.MapClaims) { c["iss"] = strings.TrimSuffix(idp.issuer, "/") }), descWrongIssuer},
		{"wrong audience", with(func(c jwt.MapClaims) { c["aud"] = "https://other.example" }), descWrongAudience},
		{"wrong audience array", with(func(c jwt.MapClaims) { c["aud"] = []string{"a", "b"} }), descWrongAudience},
		{"audience missing", with(func(c jwt.MapClaims) { delete(c, "aud") }), descNoAudience},
		{"audience not strings", with(func(c jwt.MapClaims) { c["aud"] = []any{1, 2} }), descWrongAudience},
		{"expired", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), descExpired},
		{"expired beyond leeway", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() }), descExpired},
		{"no exp", with(func(c jwt.MapClaims) { delete(c, "exp") }), descNoExpiry},
		{"exp not a number", with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), descBadClaim},
		{"nbf in the future", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), descNotYetValid},
		{"iat in the future", with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), descFutureIssued},
		{"sub missing", with(func(c jwt.MapClaims) { delete(c, "sub") }), descNoSubject},
		{"sub empty", with(func(c jwt.MapClaims) { c["sub"] = "" }), descNoSubject},
		{"sub not a string", with(func(c jwt.MapClaims) { c["sub"] = 42 }), descNoSubject},
		{"kid not a string", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, idp.claims())
			tok.Header["kid"] = 1
			s, _ := tok.SignedString(idp.RS.signer)
			return s
		}(), descMalformed},
		{"garbage", "garbage", descMalformed},
		{"two dots", "..", descMalformed},
		{"three dots", "a.b.c.d", descMalformed},
		{"four segments of a good token", good + ".x", descMalformed},
		{"non-base64", "!!!.@@@.###", descMalformed},
		{"header not JSON", b64([]byte("hello")) + "." + parts[1] + "." + parts[2], descMalformed},
		{"claims not JSON", parts[0] + "." + b64([]byte("[1,2")) + "." + parts[2], descMalformed},
		{"9 KiB", parts[0] + "." + strings.Repeat("A", 9<<10) + "." + parts[2], descTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tc.token)
			if p != nil {
				t.Fatalf("accepted: %+v", p)
			}
			wantTokenError(t, err, tc.desc)
		})
	}

	t.Run("empty", func(t *testing.T) {
		_, err := v.Verify(context.Background(), "")
		var te *TokenError
		if !errors.As(err, &te) || !te.Missing {
			t.Fatalf("got %v, want *TokenError with Missing", err)
		}
	})
}

func TestVerifyLeeway(t *testing.T) {
	idp := newIdP(t)
	cfg := idp.config()
	cfg.Leeway = DefaultLeeway
	v := idp.verifier(cfg)
	now := time.Now()
	c := idp.claims()
	c["exp"] = now.Add(-10 * time.Second).Unix()
	c["nbf"] = now.Add(10 * time.Second).Unix()
	c["iat"] = now.Add(10 * time.Second).Unix()
	if _, err := v.Verify(context.Background(), idp.sign(idp.ES, c)); err != nil {
		t.Fatalf("token within the 30s leeway: %v", err)
	}
	// Zero leeway is zero: the same token is refused.
	strict := idp.verifier(idp.config())
	if _, err := strict.Verify(context.Background(), idp.sign(idp.ES, c)); err == nil {
		t.Fatal("expired token accepted with zero leeway")
	}
}

// TestHMACConfusion: an HS256 token whose secret is the RSA public key (the
// classic key-confusion attack) is refused in every encoding, even when the
// configuration lists HS256.
func TestHMACConfusion(t *testing.T) {
	idp := newIdP(t)
	pub := idp.RS.signer.Public().(*rsa.PublicKey)
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)
	secrets := map[string][]byte{
		"PKIX PEM":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"PKIX DER":  pkix,
		"PKCS1 PEM": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1}),
		"PKCS1 DER": pkcs1,
		"modulus":   pub.N.Bytes(),
	}
	cfg := idp.config()
	cfg.Algorithms = []string{"RS256", "HS256", "HS384", "HS512", "none"}
	v := idp.verifier(cfg)
	for name, secret := range secrets {
		for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
			for _, kid := range []string{idp.RS.kid, ""} {
				t.Run(name+" "+m.Alg()+" kid="+kid, func(t *testing.T) {
					tok := jwt.NewWithClaims(m, idp.claims())
					if kid != "" {
						tok.Header["kid"] = kid
					}
					s, err := tok.SignedString(secret)
					if err != nil {
						t.Fatal(err)
					}
					idp.remember(s)
					_, err = v.Verify(context.Background(), s)
					wantTokenError(t, err, descAlgorithm)
				})
			}
		}
	}
	// The keyfunc itself never hands a key to an HMAC method.
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, idp.claims())
	tok.Header["kid"] = idp.RS.kid
	if k, err := v.key(context.Background(), tok); err == nil || k != nil {
		t.Fatalf("key() for HS256 returned %T, %v", k, err)
	}
}

func TestVerifyWithoutKID(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	for _, k := range []testKey{idp.RS, idp.ES} {
		tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.alg), idp.claims())
		s, err := tok.SignedString(k.signer)
		if err != nil {
			t.Fatal(err)
		}
		idp.remember(s)
		if _, err := v.Verify(context.Background(), s); err != nil {
			t.Errorf("%s without kid: %v", k.alg, err)
		}
	}
	// Signed by a key that is not published.
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, idp.claims())
	s, _ := tok.SignedString(idp.RS2.signer)
	_, err := v.Verify(context.Background(), s)
	wantTokenError(t, err, descSignature)
}

func TestJWKWithoutAlgStillTypeChecked(t *testing.T) {
	idp := newIdP(t)
	idp.noAlg = true
	v := idp.verifier(idp.config())
	if _, err := v.Verify(context.Background(), idp.sign(idp.RS, idp.claims())); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	// ES256 token naming the RSA key: keyfunc has no JWK alg to compare, the
	// key type check refuses.
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, idp.claims())
	tok.Header["kid"] = idp.RS.kid
	s, _ := tok.SignedString(idp.ES.signer)
	_, err := v.Verify(context.Background(), s)
	wantTokenError(t, err, descKeyMismatch)
	// RS256 token naming the EC key.
	tok = jwt.NewWithClaims(jwt.SigningMethodRS256, idp.claims())
	tok.Header["kid"] = idp.ES.kid
	s, _ = tok.SignedString(idp.RS.signer)
	_, err = v.Verify(context.Background(), s)
	wantTokenError(t, err, descKeyMismatch)

	// ES384 token naming the P-256 key.
	cfg := idp.config()
	cfg.Algorithms = []string{"ES256", "ES384"}
	v = idp.verifier(cfg)
	payload := strings.Split(idp.sign(idp.ES, idp.claims()), ".")[1]
	s = b64([]byte(`{"alg":"ES384","kid":"ec-1","typ":"JWT"}`)) + "." + payload + "." + b64(make([]byte, 96))
	_, err = v.Verify(context.Background(), s)
	wantTokenError(t, err, descKeyMismatch)
}

func TestEncryptionKeyRefused(t *testing.T) {
	idp := newIdP(t)
	idp.use = "enc"
	v := idp.verifier(idp.config())
	_, err := v.Verify(context.Background(), idp.sign(idp.RS, idp.claims()))
	wantTokenError(t, err, descKeyMismatch)
}

func TestCriticalHeaderRefused(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, idp.claims())
	tok.Header["kid"] = idp.RS.kid
	tok.Header["crit"] = []string{"exp"}
	s, err := tok.SignedString(idp.RS.signer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), s)
	wantTokenError(t, err, descCritical)
}

func TestConfiguredIssuerWithoutTrailingSlash(t *testing.T) {
	idp := newIdP(t)
	cfg := idp.config()
	cfg.Issuer = strings.TrimSuffix(idp.issuer, "/")
	cfg.JWKSURL = idp.jwks // no discovery, which would refuse this at start
	v := idp.verifier(cfg)
	_, err := v.Verify(context.Background(), idp.sign(idp.RS, idp.claims()))
	wantTokenError(t, err, descWrongIssuer)
	if logs := idp.logBuf.String(); !strings.Contains(logs, "only by the trailing slash") {
		t.Errorf("no trailing-slash hint in the logs:\n%s", logs)
	}
}

func TestSubjectClaim(t *testing.T) {
	idp := newIdP(t)
	cfg := idp.config()
	cfg.SubjectClaim = "https://tusgate.test/uid"
	v := idp.verifier(cfg)
	c := idp.claims()
	c["https://tusgate.test/uid"] = "u-42"
	p, err := v.Verify(context.Background(), idp.sign(idp.RS, c))
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "u-42" {
		t.Errorf("Subject %q", p.Subject)
	}
	// sub alone does not do.
	_, err = v.Verify(context.Background(), idp.sign(idp.RS, idp.claims()))
	wantTokenError(t, err, descNoSubject)
	c["https://tusgate.test/uid"] = []string{"u-42"}
	_, err = v.Verify(context.Background(), idp.sign(idp.RS, c))
	wantTokenError(t, err, descNoSubject)
}

func TestScopes(t *testing.T) {
	idp := newIdP(t)
	cfg := idp.config()
	cfg.RequiredScopes = []string{"upload:write", "upload:read"}
	v := idp.verifier(cfg)
	cases := []struct {
		name    string
		scope   any
		perms   any
		missing []string
	}{
		{"scope", "openid upload:read upload:write", nil, nil},
		{"permissions", "openid", []string{"upload:write", "upload:read"}, nil},
		{"both", "upload:read", []string{"upload:write"}, nil},
		{"missing one", "openid upload:read", []string{"other"}, []string{"upload:write"}},
		{"missing all", nil, nil, []string{"upload:write", "upload:read"}},
		{"prefix is not enough", "upload:writer upload", []string{"upload:rea"}, []string{"upload:write", "upload:read"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := idp.claims()
			delete(c, "scope")
			if tc.scope != nil {
				c["scope"] = tc.scope
			}
			if tc.perms != nil {
				c["permissions"] = tc.perms
			}
			p, err := v.Verify(context.Background(), idp.sign(idp.RS, c))
			if tc.missing == nil {
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range cfg.RequiredScopes {
					if !slices.Contains(p.Scopes, s) {
						t.Errorf("Scopes %q lack %q", p.Scopes, s)
					}
				}
				return
			}
			var se *ScopeError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want *ScopeError", err)
			}
			if !slices.Equal(se.Missing, tc.missing) {
				t.Errorf("Missing %q, want %q", se.Missing, tc.missing)
			}
		})
	}
}

func TestUnknownKIDRefetchesOnce(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	before := idp.jwksHits.Load()
	_, err := v.Verify(context.Background(), idp.sign(idp.RS2, idp.claims()))
	wantTokenError(t, err, descUnknownKey)
	if n := idp.jwksHits.Load() - before; n != 1 {
		t.Fatalf("%d key set fetches for an unknown kid, want exactly 1", n)
	}
	// Right after, another unknown kid does not refetch (rate limit).
	_, err = v.Verify(context.Background(), idp.sign(idp.RS2, idp.claims()))
	wantTokenError(t, err, descUnknownKey)
	if n := idp.jwksHits.Load() - before; n != 1 {
		t.Fatalf("%d key set fetches after two unknown kids, want 1", n)
	}
	// Known keys keep working.
	if _, err := v.Verify(context.Background(), idp.sign(idp.RS, idp.claims())); err != nil {
		t.Fatal(err)
	}
}

// burst verifies tokens concurrently and returns the errors and the longest
// call.
func burst(v *Verifier, tokens []string) ([]error, time.Duration) {
	errs := make([]error, len(tokens))
	took := make([]time.Duration, len(tokens))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, tok := range tokens {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			_, errs[i] = v.Verify(context.Background(), tok)
			took[i] = time.Since(t0)
		})
	}
	close(start)
	wg.Wait()
	return errs, slices.Max(took)
}

func TestUnknownKIDBurst(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	var tokens []string
	for i := range 50 {
		k := idp.RS2
		k.kid = "attacker-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		tokens = append(tokens, idp.sign(k, idp.claims()))
	}
	before := idp.jwksHits.Load()
	errs, longest := burst(v, tokens)
	for _, err := range errs {
		wantTokenError(t, err, descUnknownKey)
	}
	if n := idp.jwksHits.Load() - before; n < 1 || n > 2 {
		t.Errorf("%d key set fetches for a burst of 50 unknown kids, want 1-2", n)
	}
	if longest > 5*time.Second {
		t.Errorf("slowest Verify took %v", longest)
	}
	t.Logf("fetches %d, slowest Verify %v", idp.jwksHits.Load()-before, longest)
}

// TestRotationBurst: a burst of tokens signed by a key published after
// start is accepted in full by one refetch.
func TestRotationBurst(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	idp.publish(idp.RS, idp.ES, idp.RS2)
	var tokens []string
	for range 50 {
		tokens = append(tokens, idp.sign(idp.RS2, idp.claims()))
	}
	// The refresh may take at most unknownKIDWaitMax (1 s), which a loaded
	// machine can exceed even for a local fetch: then the whole burst is
	// answered "retry later", and a new burst, once the limiter allows
	// another refresh, must be accepted in full.
	for attempt := 1; ; attempt++ {
		before := idp.jwksHits.Load()
		errs, longest := burst(v, tokens)
		if n := idp.jwksHits.Load() - before; n < 1 || n > 2 {
			t.Errorf("%d key set fetches, want 1-2", n)
		}
		if longest > 5*time.Second {
			t.Errorf("slowest Verify took %v", longest)
		}
		timedOut := longest >= unknownKIDWaitMax && !slices.ContainsFunc(errs, func(err error) bool {
			return !errors.Is(err, ErrKeysUnavailable)
		})
		if timedOut && attempt < 3 {
			t.Logf("burst %d: the refresh used up unknownKIDWaitMax (slowest Verify %v, %v); retrying", attempt, longest, errs[0])
			eventually(t, 2*unknownKIDInterval, "the limiter to allow another refresh", func() bool { return v.limiter.Tokens() >= 1 })
			continue
		}
		for _, err := range errs {
			if err != nil {
				t.Fatalf("token of the new key: %v", err)
			}
		}
		return
	}
}

func TestKeyRotation(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	newTok := idp.sign(idp.RS2, idp.claims())

	// A new key is published: accepted without restart.
	idp.publish(idp.RS2, idp.ES)
	if _, err := v.Verify(context.Background(), newTok); err != nil {
		t.Fatalf("token of the rotated-in key: %v", err)
	}
	// The old key is gone from the refreshed set.
	_, err := v.Verify(context.Background(), idp.sign(idp.RS, idp.claims()))
	wantTokenError(t, err, descUnknownKey)
}

func TestKeysUnavailableAtStart(t *testing.T) {
	for _, mode := range []int32{modeDrop, mode503} {
		t.Run(map[int32]string{modeDrop: "connection dropped", mode503: "503"}[mode], func(t *testing.T) {
			idp := newIdP(t)
			idp.mode.Store(mode)
			t0 := time.Now()
			v, err := New(context.Background(), idp.config(), 5*time.Second)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(v.Close)
			if d := time.Since(t0); d > 3*time.Second {
				t.Errorf("New took %v for a fast failure", d)
			}
			if err := v.Ready(); err == nil {
				t.Fatal("Ready() == nil without keys")
			} else if strings.Contains(err.Error(), "\n") {
				t.Errorf("Ready() is not one line: %q", err)
			} else {
				t.Logf("Ready: %v", err)
			}
			tok := idp.sign(idp.RS, idp.claims())
			if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("Verify: %v, want ErrKeysUnavailable", err)
			}
			// Garbage is still a 401, not a 503.
			_, err = v.Verify(context.Background(), "garbage")
			wantTokenError(t, err, descMalformed)

			idp.mode.Store(modeUp)
			eventually(t, 5*time.Second, "Ready after the issuer came back", func() bool { return v.Ready() == nil })
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("Verify after recovery: %v", err)
			}
		})
	}
}

func TestJWKSDownAtStartWithExplicitURL(t *testing.T) {
	idp := newIdP(t)
	idp.mode.Store(mode503)
	cfg := idp.config()
	cfg.JWKSURL = idp.jwks
	v, err := New(context.Background(), cfg, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	if v.Ready() == nil {
		t.Fatal("Ready() == nil")
	}
	idp.mode.Store(modeUp)
	eventually(t, 5*time.Second, "Ready", func() bool { return v.Ready() == nil })
	if n := idp.discoveryHits.Load(); n != 0 {
		t.Errorf("discovery fetched %d times with an explicit key set URL", n)
	}
}

func TestUnknownKIDWhileJWKSDown(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	idp.mode.Store(modeDrop)
	_, err := v.Verify(context.Background(), idp.sign(idp.RS2, idp.claims()))
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("unknown kid while the key set is unreachable: %v, want ErrKeysUnavailable", err)
	}
	var te *TokenError
	if errors.As(err, &te) {
		t.Fatalf("also a TokenError: %v", err)
	}
	// Cached keys keep working.
	if _, err := v.Verify(context.Background(), idp.sign(idp.ES, idp.claims())); err != nil {
		t.Fatal(err)
	}
	if v.Ready() != nil {
		t.Errorf("Ready: %v", v.Ready())
	}
}

func TestUnknownKIDSlowJWKS(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	idp.publish(idp.RS, idp.ES, idp.RS2)
	// The key set answers after 10 s (as late as httpTimeout); Verify
	// gives up after unknownKIDWaitMax (1 s), well within 5 s.
	idp.jwksDelay.Store(int64(10 * time.Second))
	t0 := time.Now()
	_, err := v.Verify(context.Background(), idp.sign(idp.RS2, idp.claims()))
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Verify took %v with a key set answering after 10s: the wait for it is not capped", d)
	}
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("got %v, want ErrKeysUnavailable", err)
	}
	idp.jwksDelay.Store(0)
}

func TestDiscoveryProblems(t *testing.T) {
	t.Run("trailing slash", func(t *testing.T) {
		idp := newIdP(t)
		cfg := idp.config()
		cfg.Issuer = strings.TrimSuffix(idp.issuer, "/")
		_, err := New(context.Background(), cfg, 5*time.Second)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("got %v, want *ConfigError", err)
		}
		want := `--oidc-issuer "` + cfg.Issuer + `" differs from the issuer the provider announces, "` + idp.issuer +
			`", only by the trailing slash: configure it exactly as announced (Auth0 issuers end in "/")`
		if ce.Msg != want {
			t.Errorf("message\n%s\nwant\n%s", ce.Msg, want)
		}
	})
	t.Run("announced without, configured with", func(t *testing.T) {
		idp := newIdP(t)
		idp.announce = strings.TrimSuffix(idp.issuer, "/")
		_, err := New(context.Background(), idp.config(), 5*time.Second)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "only by the trailing slash") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("other issuer", func(t *testing.T) {
		idp := newIdP(t)
		idp.announce = "https://someone-else.example/"
		_, err := New(context.Background(), idp.config(), 5*time.Second)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("got %v, want *ConfigError", err)
		}
		if strings.Contains(ce.Msg, "trailing slash") || !strings.Contains(ce.Msg, "https://someone-else.example/") || !strings.Contains(ce.Msg, "--oidc-issuer") {
			t.Errorf("message %q", ce.Msg)
		}
	})
	t.Run("no discovery document", func(t *testing.T) {
		idp := newIdP(t)
		cfg := idp.config()
		cfg.Issuer = idp.srv.URL + "/wrong-tenant/"
		_, err := New(context.Background(), cfg, 5*time.Second)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "--oidc-issuer") {
			t.Fatalf("got %v, want *ConfigError naming --oidc-issuer", err)
		}
	})
	t.Run("wait elapses", func(t *testing.T) {
		idp := newIdP(t)
		// The key set answers only once the delay is lifted below.
		idp.jwksDelay.Store(int64(time.Minute))
		t0 := time.Now()
		v, err := New(context.Background(), idp.config(), 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if d := time.Since(t0); d > 3*time.Second {
			t.Errorf("New took %v with wait 100ms", d)
		}
		if v.Ready() == nil {
			t.Error("Ready() == nil before the keys arrived")
		}
		idp.jwksDelay.Store(0) // the pending fetch now completes
		eventually(t, 5*time.Second, "Ready", func() bool { return v.Ready() == nil })
	})
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Issuer: "https://x.auth0.com/", Audiences: []string{"api"}, Log: slog.New(slog.DiscardHandler)}
	cases := []struct {
		name   string
		change func(*Config)
		want   string // substring of the ConfigError; "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"loopback http", func(c *Config) { c.Issuer = "http://127.0.0.1:9/" }, ""},
		{"localhost http", func(c *Config) { c.Issuer = "http://localhost:9/" }, ""},
		{"no issuer", func(c *Config) { c.Issuer = "" }, "--oidc-issuer"},
		{"http issuer", func(c *Config) { c.Issuer = "http://x.auth0.com/" }, "--oidc-issuer"},
		{"relative issuer", func(c *Config) { c.Issuer = "x.auth0.com" }, "--oidc-issuer"},
		{"http key set", func(c *Config) { c.JWKSURL = "http://x.example/jwks" }, "--oidc-jwks-url"},
		{"no audience", func(c *Config) { c.Audiences = nil }, "--oidc-audience"},
		{"blank audience", func(c *Config) { c.Audiences = []string{" "} }, "--oidc-audience"},
		{"bad algorithm", func(c *Config) { c.Algorithms = []string{"RS256", "XX1"} }, `"XX1"`},
		{"lower-case algorithm", func(c *Config) { c.Algorithms = []string{"rs256"} }, "did you mean RS256"},
		{"only refused algorithms", func(c *Config) { c.Algorithms = []string{"HS256", "none"} }, "--oidc-algorithms"},
		{"refused algorithms dropped", func(c *Config) { c.Algorithms = []string{"HS256", "ES256"} }, ""},
		{"negative leeway", func(c *Config) { c.Leeway = -time.Second }, "--oidc-leeway"},
		{"tiny refresh", func(c *Config) { c.Refresh = time.Millisecond }, "--oidc-jwks-refresh"},
		{"several", func(c *Config) { c.Issuer = ""; c.Audiences = nil }, "--oidc-audience"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			s, err := c.settings()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if slices.ContainsFunc(s.algorithms, func(a string) bool { return strings.HasPrefix(a, "HS") || a == "none" }) {
					t.Errorf("algorithms %q", s.algorithms)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(ce.Msg, tc.want) {
				t.Fatalf("got %v, want *ConfigError containing %q", err, tc.want)
			}
			// New reports the same without starting anything.
			if _, err := New(context.Background(), c, time.Second); !errors.As(err, &ce) {
				t.Fatalf("New: %v", err)
			}
		})
	}
	s, err := ok.settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.refresh != time.Hour || s.leeway != 0 || s.subjectClaim != "sub" ||
		!slices.Equal(s.algorithms, []string{"RS256", "ES256"}) || s.client.Timeout != 10*time.Second {
		t.Errorf("defaults: %+v", s)
	}
}

func TestBearerToken(t *testing.T) {
	cases := []struct {
		header, token string
		missing, bad  bool
	}{
		{"", "", true, false},
		{"Bearer abc.def.ghi", "abc.def.ghi", false, false},
		{"bearer abc.def.ghi", "abc.def.ghi", false, false},
		{"BEARER abc-_~+/=", "abc-_~+/=", false, false},
		{"Bearer a==", "a==", false, false},
		{"Bearer", "", false, true},
		{"Bearer ", "", false, true},
		{"Bearer a b", "", false, true},
		{"Bearer a=b", "", false, true},
		{"Bearer =", "", false, true},
		{"Bearer a\"b", "", false, true},
		{"Basic dXNlcjpwYXNz", "", false, true},
		{"Token abc", "", false, true},
		{"abc.def.ghi", "", false, true},
		{"   ", "", false, true},
		{"Bearerabc", "", false, true},
		{"Bearer\tabc", "", false, true},
		{"Bearer abc\x00", "", false, true},
		{"Bearer abc ", "", false, true},
		{"Bearer  abc", "abc", false, false},
	}
	for _, tc := range cases {
		got, err := BearerToken(tc.header)
		var te *TokenError
		switch {
		case tc.missing:
			if !errors.As(err, &te) || !te.Missing {
				t.Errorf("%q: got %q, %v; want missing", tc.header, got, err)
			}
		case tc.bad:
			if !errors.As(err, &te) || te.Missing || got != "" {
				t.Errorf("%q: got %q, %v; want a TokenError", tc.header, got, err)
			}
		default:
			if err != nil || got != tc.token {
				t.Errorf("%q: got %q, %v; want %q", tc.header, got, err, tc.token)
			}
		}
	}
}

func TestErrorsMessages(t *testing.T) {
	if s := (&TokenError{Desc: "token expired"}).Error(); !strings.Contains(s, "token expired") {
		t.Error(s)
	}
	if s := (&ScopeError{Missing: []string{"a", "b"}}).Error(); !strings.Contains(s, "a b") {
		t.Error(s)
	}
	if s := (&ConfigError{Msg: "m"}).Error(); s != "m" {
		t.Error(s)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	idp := newIdP(t)
	idp.mode.Store(modeDrop)
	v, err := New(context.Background(), idp.config(), 0)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v.Close()
}

func TestNewContextCanceled(t *testing.T) {
	idp := newIdP(t)
	idp.jwksDelay.Store(int64(500 * time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The key set answers late, so the canceled context ends the wait.
	if _, err := New(ctx, idp.config(), 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

var benchSink *Principal

func benchmarkVerify(b *testing.B, pick func(*testIdP) testKey) {
	idp := newIdP(b)
	v := idp.verifier(idp.config())
	tok := idp.sign(pick(idp), idp.claims())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := v.Verify(ctx, tok)
		if err != nil {
			b.Fatal(err)
		}
		benchSink = p
	}
}

func BenchmarkVerifyRS256(b *testing.B) { benchmarkVerify(b, func(i *testIdP) testKey { return i.RS }) }

func BenchmarkVerifyES256(b *testing.B) { benchmarkVerify(b, func(i *testIdP) testKey { return i.ES }) }

func BenchmarkVerifyRS256Parallel(b *testing.B) {
	idp := newIdP(b)
	v := idp.verifier(idp.config())
	tok := idp.sign(idp.RS, idp.claims())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Huge date claims overflow golang-jwt's int64 conversion into the past;
// they must be refused, not pass the nbf/iat checks.
func TestAbsurdDatesRefused(t *testing.T) {
	idp := newIdP(t)
	v := idp.verifier(idp.config())
	for _, name := range []string{"nbf", "iat"} {
		for _, value := range []float64{9.3e18, 1e300} {
			c := idp.claims()
			c[name] = value
			if _, err := v.Verify(context.Background(), idp.sign(idp.ES, c)); err == nil {
				t.Errorf("%s=%g accepted", name, value)
			}
		}
	}
}
