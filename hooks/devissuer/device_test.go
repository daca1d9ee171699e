package devissuer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

const form = "application/x-www-form-urlencoded"

type deviceResp struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

func startDevice(t *testing.T, iss *Issuer, scope string) deviceResp {
	t.Helper()
	rec := do(t, iss, http.MethodPost, "/device/code", form, url.Values{"client_id": {"cli"}, "scope": {scope}}.Encode())
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /device/code: %d %s", rec.Code, rec.Body)
	}
	var d deviceResp
	decodeJSON(t, rec, &d)
	return d
}

func pollDevice(t *testing.T, iss *Issuer, deviceCode string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, iss, http.MethodPost, "/token", form, url.Values{"grant_type": {DeviceCodeGrant}, "device_code": {deviceCode}, "client_id": {"cli"}}.Encode())
}

func approve(t *testing.T, iss *Issuer, userCode, user string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, iss, http.MethodPost, "/device", form, url.Values{"user_code": {userCode}, "username": {user}}.Encode())
}

func TestDeviceFlow(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	d := startDevice(t, iss, "upload offline_access")
	if d.DeviceCode == "" || len(d.UserCode) != 9 || d.UserCode[4] != '-' ||
		d.VerificationURI != testIssuer+"/device" || d.VerificationURIComplete != testIssuer+"/device?user_code="+d.UserCode ||
		d.ExpiresIn != 600 || d.Interval != 1 {
		t.Fatalf("device authorization response %+v", d)
	}

	// RFC 8628 §3.5: pending is a 400 with authorization_pending.
	rec := pollDevice(t, iss, d.DeviceCode)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"authorization_pending"`) {
		t.Fatalf("poll before approval: %d %s", rec.Code, rec.Body)
	}

	// The page shows the form with the code filled in.
	page := do(t, iss, http.MethodGet, "/device?user_code="+d.UserCode, "", "")
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `value="`+d.UserCode+`"`) ||
		!strings.HasPrefix(page.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("verification page: %d %s", page.Code, page.Body)
	}
	// A bad user name or an unknown code is refused with the reason.
	if rec := approve(t, iss, d.UserCode, "<script>"); rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "<script>") {
		t.Fatalf("approval with a bad user name: %d %s", rec.Code, rec.Body)
	}
	if rec := approve(t, iss, "BBBB-BBBB", "alice"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "unknown or expired code") {
		t.Fatalf("approval of an unknown code: %d %s", rec.Code, rec.Body)
	}
	// What a person types: lower case, no dash.
	typed := strings.ToLower(strings.ReplaceAll(d.UserCode, "-", ""))
	if rec := approve(t, iss, typed, "alice"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "signed in as alice") {
		t.Fatalf("approval: %d %s", rec.Code, rec.Body)
	}
	if rec := approve(t, iss, d.UserCode, "mallory"); rec.Code != http.StatusBadRequest {
		t.Fatalf("second approval: %d %s", rec.Code, rec.Body)
	}

	rec = pollDevice(t, iss, d.DeviceCode)
	if rec.Code != http.StatusOK {
		t.Fatalf("poll after approval: %d %s", rec.Code, rec.Body)
	}
	var tr tokenResponse
	decodeJSON(t, rec, &tr)
	pub, kid := publicKeyFromJWKS(t, iss)
	verify(t, tr.AccessToken, pub, kid, t0.Add(time.Second))
	if c := rawClaims(t, tr.AccessToken); c["sub"] != "alice" || c["aud"] != testAudience || c["scope"] != "upload offline_access" {
		t.Fatalf("access token claims %v", c)
	}
	if tr.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	// The refresh token is not an access token for the API.
	if c := rawClaims(t, tr.RefreshToken); c["aud"] == testAudience || c["token_use"] != "refresh" {
		t.Fatalf("refresh token claims %v", c)
	}

	// A device code gives tokens once.
	if rec := pollDevice(t, iss, d.DeviceCode); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_grant"`) {
		t.Fatalf("second poll: %d %s", rec.Code, rec.Body)
	}

	// Refresh: a new access token for the same user and scope.
	iss.now = func() time.Time { return t0.Add(time.Hour) }
	rec = do(t, iss, http.MethodPost, "/token", form, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}.Encode())
	if rec.Code != http.StatusOK {
		t.Fatalf("refresh: %d %s", rec.Code, rec.Body)
	}
	var tr2 tokenResponse
	decodeJSON(t, rec, &tr2)
	if c := rawClaims(t, tr2.AccessToken); c["sub"] != "alice" || c["scope"] != "upload offline_access" || c["iat"] != float64(t0.Add(time.Hour).Unix()) {
		t.Fatalf("refreshed claims %v", c)
	}
	if tr2.RefreshToken == "" {
		t.Fatal("refresh answered no refresh token")
	}
}

func TestDeviceCodeExpires(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	d := startDevice(t, iss, "")
	iss.now = func() time.Time { return t0.Add(deviceCodeTTL) }
	if rec := approve(t, iss, d.UserCode, "alice"); rec.Code != http.StatusBadRequest {
		t.Fatalf("approval after expiry: %d", rec.Code)
	}
	d = startDevice(t, iss, "")
	iss.now = func() time.Time { return t0.Add(2 * deviceCodeTTL) }
	if rec := pollDevice(t, iss, d.DeviceCode); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"expired_token"`) {
		t.Fatalf("poll after expiry: %d %s", rec.Code, rec.Body)
	}
}

func TestRefreshTokenRejected(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	access, _, err := iss.Mint("alice", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestIssuer(t, Options{})
	foreign, err := other.mintRefresh("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	good, err := iss.mintRefresh("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	iss.now = func() time.Time { return t0.Add(RefreshTokenTTL + time.Second) }
	for name, tok := range map[string]string{"access token": access, "another issuer's key": foreign, "expired": good, "garbage": "x.y.z", "empty": ""} {
		rec := do(t, iss, http.MethodPost, "/token", form, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}}.Encode())
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_grant"`) {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
}

func TestDeviceEndpointsMethods(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	if rec := do(t, iss, http.MethodGet, "/device/code", "", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /device/code: %d", rec.Code)
	}
	if rec := do(t, iss, http.MethodPut, "/device", "", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT /device: %d", rec.Code)
	}
}

// TestDeviceFlowWithOAuth2 runs golang.org/x/oauth2's device flow client
// against the handler over HTTP, approving the code while it polls.
func TestDeviceFlowWithOAuth2(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	iss, err := New(Options{IssuerURL: srv.URL + "/dev/oidc", Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", iss.Handler()))

	cfg := &oauth2.Config{ClientID: "cli", Scopes: []string{"offline_access"}, Endpoint: oauth2.Endpoint{
		DeviceAuthURL: srv.URL + "/dev/oidc/device/code", TokenURL: srv.URL + "/dev/oidc/token", AuthStyle: oauth2.AuthStyleInParams,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		resp, err := http.PostForm(da.VerificationURI, url.Values{"user_code": {da.UserCode}, "username": {"bob"}})
		if err == nil {
			resp.Body.Close()
		}
	}()
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatal(err)
	}
	if c := rawClaims(t, tok.AccessToken); c["sub"] != "bob" || tok.RefreshToken == "" {
		t.Fatalf("claims %v, refresh token %t", c, tok.RefreshToken != "")
	}
	// And oauth2 refreshes with it.
	fresh, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || fresh.AccessToken == "" {
		t.Fatalf("refresh: %v", err)
	}
}
