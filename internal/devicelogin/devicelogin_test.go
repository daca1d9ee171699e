package devicelogin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tusgate/tusgate/hooks/devissuer"
)

// devIssuer serves the development issuer over HTTP.
func devIssuer(t *testing.T) (string, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss, err := devissuer.New(devissuer.Options{IssuerURL: srv.URL + "/dev/oidc", Audience: "tusgate", TokenTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", iss.Handler()))
	return srv.URL + "/dev/oidc", srv
}

func TestLoginWithDeviceFlow(t *testing.T) {
	issuer, _ := devIssuer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var shown string
	tok, err := Login(ctx, Request{
		Issuer: issuer, ClientID: "tusgate-cli", Scopes: []string{"offline_access"},
		Prompt: func(uri, code, complete string) {
			shown = uri + " " + code
			// The person approves in a browser.
			go func() {
				resp, err := http.PostForm(uri, url.Values{"user_code": {code}, "username": {"alice"}})
				if err == nil {
					resp.Body.Close()
				}
			}()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(shown, issuer+"/device ") {
		t.Fatalf("prompt %q", shown)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenEndpoint != issuer+"/token" || tok.Expiry.IsZero() || tok.Scope != "offline_access" {
		t.Fatalf("tokens %+v", tok)
	}
}

func TestDiscoverErrors(t *testing.T) {
	issuer, srv := devIssuer(t)
	ctx := context.Background()
	if _, err := Discover(ctx, srv.Client(), "http://example.com/"); err == nil || !strings.Contains(err.Error(), "must be an https URL") {
		t.Fatalf("plain http elsewhere than loopback: %v", err)
	}
	if _, err := Discover(ctx, srv.Client(), srv.URL+"/nothing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("no discovery document: %v", err)
	}
	if ep, err := Discover(ctx, srv.Client(), issuer+"/"); err != nil || ep.DeviceAuthorization != issuer+"/device/code" {
		t.Fatalf("trailing slash: %+v %v", ep, err)
	}
	// An issuer without device flow.
	noDevice := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"issuer":"http://` + r.Host + `","token_endpoint":"http://` + r.Host + `/token"}`))
	}))
	defer noDevice.Close()
	if _, err := Discover(ctx, noDevice.Client(), noDevice.URL); err == nil || !strings.Contains(err.Error(), "offers no device authorization") {
		t.Fatalf("no device endpoint: %v", err)
	}
}

func TestStorePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permissions")
	}
	path := filepath.Join(t.TempDir(), "config", "tusgate", "token.json")
	if _, err := Load(path); err != ErrNotLoggedIn {
		t.Fatalf("Load without a file: %v", err)
	}
	tok := &Tokens{Issuer: "i", ClientID: "c", TokenEndpoint: "http://127.0.0.1/token", AccessToken: "secret", RefreshToken: "r"}
	if err := Save(path, tok); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, want %v (%v)", p, fi.Mode().Perm(), want, err)
		}
	}
	// A file someone made readable to others is made private when read.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil || got.AccessToken != "secret" {
		t.Fatalf("Load: %+v %v", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after Load %v", fi.Mode().Perm())
	}
	// The folder and the file too, when saving again.
	_ = os.Chmod(filepath.Dir(path), 0o755)
	_ = os.Chmod(path, 0o644)
	if err := Save(path, tok); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("folder mode after Save %v", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode after Save over a 0644 file %v", fi.Mode().Perm())
	}
	if removed, err := Remove(path); !removed || err != nil {
		t.Fatalf("Remove: %t %v", removed, err)
	}
	if removed, err := Remove(path); removed || err != nil {
		t.Fatalf("Remove again: %t %v", removed, err)
	}
}

func TestSourceRefreshesBeforeExpiry(t *testing.T) {
	issuer, srv := devIssuer(t)
	ctx := context.Background()
	ep, err := Discover(ctx, srv.Client(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	// A login's tokens, from the issuer's refresh grant.
	path := filepath.Join(t.TempDir(), "token.json")
	cfgTok := &Tokens{Issuer: issuer, ClientID: "cli", TokenEndpoint: ep.Token, AccessToken: "old", RefreshToken: refreshTokenFor(t, issuer)}
	t0 := time.Now()
	cfgTok.Obtained, cfgTok.Expiry = t0, t0.Add(time.Hour)
	if err := Save(path, cfgTok); err != nil {
		t.Fatal(err)
	}
	s, err := NewSource(path, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	s.now = func() time.Time { return now }

	if tok, _ := s.Token(ctx); tok != "old" {
		t.Fatalf("fresh token replaced: %q", tok)
	}
	// Within the last minute (a quarter of an hour's lifetime is more), refresh.
	now = t0.Add(59*time.Minute + time.Second)
	tok, err := s.Token(ctx)
	if err != nil || tok == "old" {
		t.Fatalf("token near expiry: %q %v", tok, err)
	}
	stored, _ := Load(path)
	if stored.AccessToken != tok || stored.RefreshToken == "" {
		t.Fatal("refreshed token not written back")
	}
	// A 401 for an older token returns the current one without asking again.
	if again, _ := s.Refresh(ctx, "old"); again != tok {
		t.Fatalf("Refresh for a stale rejection: %q", again)
	}
	// A 401 for the current one refreshes.
	if again, err := s.Refresh(ctx, tok); err != nil || again == tok {
		t.Fatalf("Refresh after 401: %q %v", again, err)
	}

	// No refresh token: a clear error once expired.
	noRefresh := &Tokens{TokenEndpoint: ep.Token, AccessToken: "x", Obtained: t0, Expiry: t0.Add(time.Minute)}
	_ = Save(path, noRefresh)
	s, _ = NewSource(path, srv.Client())
	s.now = func() time.Time { return t0.Add(2 * time.Minute) }
	if _, err := s.Token(ctx); err == nil || !strings.Contains(err.Error(), "run tusgate login again") {
		t.Fatalf("expired without refresh token: %v", err)
	}
}

func TestRefreshMargin(t *testing.T) {
	t0 := time.Now()
	for lifetime, want := range map[time.Duration]time.Duration{time.Hour: time.Minute, 20 * time.Second: 5 * time.Second, 0: time.Minute} {
		if got := refreshMargin(&Tokens{Obtained: t0, Expiry: t0.Add(lifetime)}); got != want {
			t.Errorf("lifetime %v: margin %v, want %v", lifetime, got, want)
		}
	}
}

// refreshTokenFor logs alice in through the device flow and returns the
// refresh token.
func refreshTokenFor(t *testing.T, issuer string) string {
	t.Helper()
	tok, err := Login(context.Background(), Request{Issuer: issuer, ClientID: "cli", Prompt: func(uri, code, _ string) {
		go func() {
			if resp, err := http.PostForm(uri, url.Values{"user_code": {code}, "username": {"alice"}}); err == nil {
				resp.Body.Close()
			}
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.RefreshToken
}
