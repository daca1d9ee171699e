// Package devicelogin signs the tusgate command line in with the OAuth 2.0
// Device Authorization Grant (RFC 8628) against an OpenID issuer, keeps the
// tokens in a file only the user can read, and hands out access tokens,
// refreshed before they expire.
package devicelogin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/tusgate/tusgate/internal/privatefile"
)

// Tokens is what a login keeps: where the tokens come from and the tokens.
type Tokens struct {
	Issuer        string    `json:"issuer"`
	ClientID      string    `json:"client_id"`
	Audience      string    `json:"audience,omitempty"`
	Scope         string    `json:"scope,omitempty"`
	TokenEndpoint string    `json:"token_endpoint"`
	AccessToken   string    `json:"access_token"`
	RefreshToken  string    `json:"refresh_token,omitempty"`
	TokenType     string    `json:"token_type,omitempty"`
	Expiry        time.Time `json:"expiry,omitzero"`
	Obtained      time.Time `json:"obtained"`
}

// ErrNotLoggedIn: no tokens are stored.
var ErrNotLoggedIn = errors.New("not logged in (run tusgate login)")

// DefaultPath is where tokens are kept: tusgate/token.json in the user's
// config directory ($XDG_CONFIG_HOME, by default ~/.config, on Linux).
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a place for tokens: %w", err)
	}
	return filepath.Join(dir, "tusgate", "token.json"), nil
}

// Load reads the tokens kept at path. A file others could read is made
// private first.
func Load(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotLoggedIn
	}
	if err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			_ = os.Chmod(path, 0o600)
		}
	}
	var t Tokens
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("the token file %s is damaged (%v); run tusgate login again", path, err)
	}
	if t.AccessToken == "" || t.TokenEndpoint == "" {
		return nil, fmt.Errorf("the token file %s is incomplete; run tusgate login again", path)
	}
	return &t, nil
}

// Save writes the tokens to path, readable only by the user (0600, in a
// 0700 folder), replacing the file atomically.
func Save(path string, t *Tokens) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("saving tokens: %w", err)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 && filepath.Base(dir) == "tusgate" {
			_ = os.Chmod(dir, 0o700) // our own folder
		}
	}
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	if err := privatefile.Write(path, append(data, '\n')); err != nil {
		return fmt.Errorf("saving tokens: %w", err)
	}
	return nil
}

// Remove deletes the tokens at path; removed is false if there were none.
func Remove(path string) (removed bool, err error) {
	err = os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
