// Package hooks authenticates every upload request and binds each upload to
// its owner.
//
// tusd lets a hook look at the creation request only, so anyone who learns
// an upload URL could resume, read or delete it (tus/tusd#669). tusgate
// closes that gap in two places:
//
//   - Middleware checks the bearer token of every request that reaches the
//     upload handler (OPTIONS excepted) and puts the caller's Principal into
//     the request context;
//   - Authorize runs where tusd resolves upload IDs, in the store's
//     GetUpload (see internal/safestore), for the URL of HEAD, PATCH, GET and
//     DELETE and for every partial named in a concatenation. However tusd
//     reads a request, no ID reaches the store unless its owner folder is the
//     caller's.
//
// The owner folder is derived from issuer and subject (OwnerFolder), and
// the pre-create hook makes it the first segment of every new upload ID. The
// check therefore needs no storage round trip, and S3 keys group by owner
// (<prefix>/<owner folder>/<random id>), so a bucket policy or lifecycle
// rule can target one user's objects.
package hooks

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/hooks/oidc"
)

type principalKey struct{}

// WithPrincipal returns ctx carrying the authenticated caller.
func WithPrincipal(ctx context.Context, p *oidc.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the authenticated caller, or nil.
func PrincipalFrom(ctx context.Context) *oidc.Principal {
	p, _ := ctx.Value(principalKey{}).(*oidc.Principal)
	return p
}

var folderEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// OwnerFolder is the first segment of the IDs (and S3 keys) of p's uploads:
// the first 128 bits of SHA-256(issuer "\n" subject) in lower-case base32,
// 26 characters. Subjects may contain any character (Auth0's contain "|"),
// and no client value ever becomes part of a key.
func OwnerFolder(p *oidc.Principal) string {
	sum := sha256.Sum256([]byte(p.Issuer + "\n" + p.Subject))
	return strings.ToLower(folderEncoding.EncodeToString(sum[:16]))
}

// Reserved metadata keys: set by tusgate, never taken from clients.
const (
	MetaOwner  = "tusgate-owner"
	MetaIssuer = "tusgate-issuer"
)

// reservedPrefix marks metadata keys clients may not set.
const reservedPrefix = "tusgate-"

// NewUploadID returns a fresh ID for an upload of p: its owner folder, a
// slash and 128 random bits in hex.
func NewUploadID(p *oidc.Principal) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return OwnerFolder(p) + "/" + hex.EncodeToString(b[:])
}

// BindOwner returns the changes that bind a new upload to the caller in
// ctx: an ID under the caller's owner folder and server-set owner metadata
// that replaces anything the client sent under reserved keys. meta is the
// validated client metadata.
func BindOwner(ctx context.Context, meta handler.MetaData) (handler.FileInfoChanges, error) {
	p := PrincipalFrom(ctx)
	if p == nil {
		return handler.FileInfoChanges{}, errUnauthenticated
	}
	out := StripReserved(meta)
	out[MetaOwner] = p.Subject
	out[MetaIssuer] = p.Issuer
	return handler.FileInfoChanges{ID: NewUploadID(p), MetaData: out}, nil
}

// StripReserved returns meta without the keys only tusgate may set.
func StripReserved(meta handler.MetaData) handler.MetaData {
	out := make(handler.MetaData, len(meta)+2)
	for k, v := range meta {
		if !strings.HasPrefix(strings.ToLower(k), reservedPrefix) {
			out[k] = v
		}
	}
	return out
}

// Authorize allows the caller in ctx to reach upload id only if the ID lies
// in the caller's owner folder. Anything else is "not found", so that an
// upload's existence is not revealed to others.
func Authorize(ctx context.Context, id string) error {
	p := PrincipalFrom(ctx)
	if p == nil {
		return handler.ErrNotFound
	}
	folder, _, ok := strings.Cut(id, "/")
	if !ok || folder != OwnerFolder(p) {
		return handler.ErrNotFound
	}
	return nil
}

// errUnauthenticated is returned by hooks that find no caller in the
// context; the middleware makes that impossible for upload requests.
var errUnauthenticated = handler.NewError("ERR_UNAUTHENTICATED", "authentication required", 401)
