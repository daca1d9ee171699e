package devicelogin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Source hands out the stored access token and refreshes it, with the
// stored refresh token, shortly before it expires (and when the server
// refuses it). Refreshed tokens are written back to the file, so other
// runs use them too. Safe for concurrent use.
type Source struct {
	path string
	hc   *http.Client
	now  func() time.Time

	mu  sync.Mutex
	tok *Tokens
}

// NewSource reads the tokens at path. hc sends refresh requests (nil:
// http.DefaultClient).
func NewSource(path string, hc *http.Client) (*Source, error) {
	tok, err := Load(path)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Source{path: path, hc: hc, now: time.Now, tok: tok}, nil
}

// refreshMargin is how long before its expiry a token is refreshed: a
// quarter of its lifetime, at most a minute.
func refreshMargin(t *Tokens) time.Duration {
	if t.Obtained.IsZero() || !t.Expiry.After(t.Obtained) {
		return time.Minute
	}
	return min(time.Minute, t.Expiry.Sub(t.Obtained)/4)
}

// due reports whether t should be refreshed now.
func (s *Source) due(t *Tokens) bool {
	return !t.Expiry.IsZero() && !s.now().Before(t.Expiry.Add(-refreshMargin(t)))
}

// Token returns an access token, refreshed first if it expires soon.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.due(s.tok) {
		return s.tok.AccessToken, nil
	}
	if err := s.refresh(ctx); err != nil {
		if s.now().Before(s.tok.Expiry) {
			return s.tok.AccessToken, nil // still valid; try again next time
		}
		return "", err
	}
	return s.tok.AccessToken, nil
}

// Refresh returns a new access token after the server refused rejected.
// If another request refreshed it meanwhile, that token is returned.
func (s *Source) Refresh(ctx context.Context, rejected string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.AccessToken != rejected {
		return s.tok.AccessToken, nil
	}
	if err := s.refresh(ctx); err != nil {
		return "", err
	}
	return s.tok.AccessToken, nil
}

// refresh gets a new access token. Called with s.mu held.
func (s *Source) refresh(ctx context.Context) error {
	// Another run may have refreshed already (and, with refresh token
	// rotation, spent the refresh token this one holds).
	if stored, err := Load(s.path); err == nil && stored.AccessToken != s.tok.AccessToken && !s.due(stored) {
		s.tok = stored
		return nil
	}
	if s.tok.RefreshToken == "" {
		return errors.New("the token expired and there is no refresh token; run tusgate login again")
	}
	cfg := &oauth2.Config{ClientID: s.tok.ClientID, Endpoint: oauth2.Endpoint{TokenURL: s.tok.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.hc)
	fresh, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: s.tok.RefreshToken}).Token()
	if err != nil {
		return fmt.Errorf("refreshing the token: %w; run tusgate login again", describe(err))
	}
	t := *s.tok
	t.AccessToken, t.RefreshToken, t.TokenType = fresh.AccessToken, fresh.RefreshToken, fresh.TokenType
	t.Expiry, t.Obtained = fresh.Expiry, s.now()
	s.tok = &t
	// A token that cannot be saved still serves this run.
	_ = Save(s.path, &t)
	return nil
}
