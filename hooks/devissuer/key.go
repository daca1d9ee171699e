package devissuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
)

// p256CoordSize is the size in bytes of a P-256 field element (x or y coordinate).
const p256CoordSize = 32

// loadOrCreateKey returns the P-256 signing key kept in path. If the file does not exist a new key is generated
// and written there with mode 0600 (the parent directory is created with mode 0700 if needed). If path is empty an
// ephemeral key is generated and not persisted.
func loadOrCreateKey(path string, log *slog.Logger) (*ecdsa.PrivateKey, error) {
	if path == "" {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("devissuer: generate signing key: %w", err)
		}
		log.Warn("dev issuer: no key file configured; using an ephemeral signing key, tokens will not survive a restart")
		return key, nil
	}

	key, err := loadKey(path, log)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	key, created, err := createKey(path)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("dev issuer: created new signing key", "path", path)
	}
	return key, nil
}

// loadKey reads and parses the key file. A missing file is reported with an error wrapping fs.ErrNotExist; any
// other problem yields an error that names the file and tells the operator what to do.
func loadKey(path string, log *slog.Logger) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("devissuer: cannot read signing key file %q: %w (check the path and its permissions; if the file is damaged, delete it to make a new one)", path, err)
	}
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("devissuer: signing key file %q is unusable: %w; delete it to make a new one", path, err)
	}
	tightenPermissions(path, log)
	return key, nil
}

// tightenPermissions makes sure an existing key file is not readable by group or others.
func tightenPermissions(path string, log *slog.Logger) {
	if runtime.GOOS == "windows" {
		return // Unix permission bits are not meaningful there.
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm()&0o077 == 0 {
		return
	}
	if err := os.Chmod(path, 0o600); err != nil {
		log.Warn("dev issuer: signing key file is accessible by other users and its mode could not be changed to 0600",
			"path", path, "mode", info.Mode().Perm().String(), "error", err)
		return
	}
	log.Warn("dev issuer: signing key file was accessible by other users; changed its mode to 0600",
		"path", path, "old_mode", info.Mode().Perm().String())
}

// parseKeyPEM parses a PEM encoded PKCS #8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY") P-256 private key.
func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var (
		parsed any
		err    error
	)
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block type %q (want \"PRIVATE KEY\")", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse private key: %w", err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is a %T, want an ECDSA P-256 key", parsed)
	}
	if key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key uses curve %s, want P-256", key.Curve.Params().Name)
	}
	return key, nil
}

// createKey generates a key and stores it in path without ever exposing a partially written file: the PEM is
// written to a temporary file (mode 0600) in the same directory and then hard-linked into place, which fails if
// another process created the file first; in that case the other process's key is loaded and used instead.
// created reports whether this call wrote the file.
func createKey(path string) (key *ecdsa.PrivateKey, created bool, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("devissuer: generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("devissuer: encode signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	fail := func(err error) (*ecdsa.PrivateKey, bool, error) {
		return nil, false, fmt.Errorf("devissuer: cannot create signing key file %q: %w (check that its directory is writable)", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	tmp, err := os.CreateTemp(dir, ".dev-issuer-key-*.tmp") // created with mode 0600
	if err != nil {
		return fail(err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // best effort; after a successful rename it is already gone
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}

	switch err := os.Link(tmpName, path); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		// Someone else created the key file in the meantime: use theirs.
		existing, err := loadKey(path, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, false, err
		}
		return existing, false, nil
	default:
		// The file system may not support hard links; fall back to an atomic rename.
		if err := os.Rename(tmpName, path); err != nil {
			return fail(err)
		}
	}
	return key, true, nil
}

// ecPoint returns the fixed-size big-endian x and y coordinates of a P-256 public key.
func ecPoint(pub *ecdsa.PublicKey) (x, y []byte, err error) {
	b, err := pub.Bytes() // 0x04 || x || y
	if err != nil {
		return nil, nil, err
	}
	if len(b) != 1+2*p256CoordSize || b[0] != 4 {
		return nil, nil, errors.New("devissuer: unexpected public key encoding")
	}
	return b[1 : 1+p256CoordSize], b[1+p256CoordSize:], nil
}

// thumbprint computes the RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of an EC P-256 public key.
func thumbprint(x, y []byte) string {
	// RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
	canonical, _ := json.Marshal(struct {
		Crv string `json:"crv"`
		Kty string `json:"kty"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}{"P-256", "EC", b64(x), b64(y)})
	sum := sha256.Sum256(canonical)
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
