package devicelogin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A token endpoint that fails without an OAuth error code (a proxy's
// error page, one that echoes the request) must give a one-line error
// that repeats neither the page nor the refresh token it may echo.
func TestRefreshErrorIsOneLineWithoutSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html>\n<body>Bad gateway. Your request was:\n"+string(body)+"\n</body></html>")
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	t0 := time.Now()
	if err := Save(path, &Tokens{ClientID: "cli", TokenEndpoint: srv.URL + "/token", AccessToken: "acc-SECRET",
		RefreshToken: "ref-SECRET", Obtained: t0.Add(-time.Hour), Expiry: t0.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	s, err := NewSource(path, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Token(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	if msg := err.Error(); strings.Contains(msg, "SECRET") || strings.Contains(msg, "\n") || strings.Contains(msg, "<html>") {
		t.Fatalf("error %q", msg)
	}
}
