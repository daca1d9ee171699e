package safestore

import (
	"context"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// An upload created with the IETF draft's Repr-Digest states the SHA-256
// of all its bytes (objsha.Expected). finish compares it with the SHA-256
// the store kept while the bytes arrived (objsha.Digester) before anything
// else: a mismatch leaves the upload complete but not assembled, the
// application is not asked about it (pre-finish) and hears of nothing
// (upload.finished), and every request that would finish it answers
// objsha.ErrReprMismatch; the client can delete it. Only an S3 upload whose
// running state was lost (a process killed while it was written) cannot
// tell before it is assembled: it is checked right after, and deleted if
// it does not match, or if its SHA-256 could not be computed.

// checkRepr compares the upload's SHA-256 with want before it is
// assembled, and reports whether the store could tell.
func (u *upload) checkRepr(ctx context.Context, want []byte) (bool, error) {
	d, ok := u.inner.(objsha.Digester)
	if !ok {
		return false, nil
	}
	sum, known, err := d.SHA256(ctx)
	if err != nil {
		return false, u.s.fail(ctx, "compute SHA-256", u.id, err)
	}
	if !known {
		return false, nil
	}
	if !objsha.Equal(sum, want) {
		u.s.opt.Log.InfoContext(ctx, "the upload's SHA-256 does not match the Repr-Digest stated at its creation; not finishing it",
			"id", u.id, "sha256", objsha.Encode(sum), "stated", objsha.Encode(want))
		return true, objsha.ErrReprMismatch
	}
	return true, nil
}

// checkReprAssembled compares the SHA-256 the store computed from the
// assembled object (it could not before) with want, and deletes the upload
// if it does not match or is unknown: an object is never left that does
// not have the stated SHA-256.
func (u *upload) checkReprAssembled(ctx context.Context, info handler.FileInfo, want []byte) error {
	after, err := u.inner.GetInfo(ctx)
	sum, known := objsha.Sum(after)
	if err == nil && known && objsha.Equal(sum, want) {
		return nil
	}
	answer := objsha.ErrReprMismatch
	if !known {
		answer = objsha.ErrReprUnverified
	}
	u.s.opt.Log.WarnContext(ctx, "deleting an upload assembled before its SHA-256 could be compared with its Repr-Digest: it does not match, or could not be computed",
		"id", u.id, "known", known)
	if u.s.inner.UsesTerminater {
		if err := u.s.inner.Terminater.AsTerminatableUpload(u.inner).Terminate(ctx); err != nil {
			return u.s.fail(ctx, "delete an unverified upload", u.id, storeerr.Permanent(err))
		}
		u.forget(ctx, info)
	}
	return answer
}

// recheckRepr computes the SHA-256 of an assembled upload that has none
// recorded (the process died while it read the object) and compares it
// with want as checkReprAssembled does.
func (u *upload) recheckRepr(ctx context.Context, info handler.FileInfo, want []byte) error {
	if d, ok := u.inner.(objsha.Digester); ok {
		if _, _, err := d.SHA256(ctx); err != nil {
			return u.s.fail(ctx, "compute SHA-256", u.id, err)
		}
	}
	return u.checkReprAssembled(ctx, info, want)
}
