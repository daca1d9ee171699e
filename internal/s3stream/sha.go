package s3stream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// The SHA-256 of a whole upload (internal/objsha), kept while the bytes
// arrive: by every upload with ObjectSHA256, by those that stated a
// Repr-Digest otherwise.
//
// Bytes in parts cannot be read before CompleteMultipartUpload, the tail
// can. So the state kept is the one at the end of the parts, where the tail
// starts (state.sha), in the .info, tied to the parts it covers (their
// number and the last one's ETag). A write resumes it, hashes the tail's
// bytes as it reads them into its first part and the body's as they
// arrive, keeps the state at the end of each part it cuts (writer.sha), and
// stores the state at the end of its last stored part in the .info when it
// ends (saveSHA; a checked write only once its body checked out, with the
// .info that commits its parts, so that a 460 leaves the state before it).
// FinishUpload records the SHA-256 in the .info before it completes the
// upload. A state that does not fit the parts (a process killed between
// storing parts and the .info) is lost: the SHA-256 is then read from the
// finished object (computeSHA), and so it is for concatenations.

// resumeSHA sets st.hashing and st.sha from st.info and the parts listed:
// the .info's state if it ends where the parts end, covers as many parts
// and the last of them has the same ETag; the state of nothing if there
// are no parts; else none (lost).
func (s *Store) resumeSHA(st *state) {
	st.hashing, st.sha = objsha.Wanted(s.ObjectSHA256, st.info), nil
	if !st.hashing || st.completed {
		return
	}
	if _, done := objsha.Sum(st.info); done {
		return // recorded before a completion that failed
	}
	snap, ok, _ := objsha.State(st.info)
	if ok && snap.Offset == st.partsSize && snap.Parts == len(st.parts) &&
		(len(st.parts) == 0 || snap.ETag == objsha.TrimETag(aws.ToString(st.parts[len(st.parts)-1].ETag))) {
		st.sha = &snap
		return
	}
	if len(st.parts) == 0 {
		fresh := objsha.Fresh()
		st.sha = &fresh
	}
}

// withSHA is info carrying st's state (unchanged if it has none).
func withSHA(st *state, info handler.FileInfo) handler.FileInfo {
	if !st.hashing || st.sha == nil {
		return info
	}
	return objsha.WithState(info, st.sha)
}

// saveSHA stores st's state in the .info if it is not there yet. A failure
// is only logged: the state is then lost, and the SHA-256 computed from the
// finished object.
func (s *Store) saveSHA(ctx context.Context, st *state) {
	if !st.hashing || st.sha == nil {
		return
	}
	if !st.info.SizeIsDeferred && st.sha.Offset == st.info.Size {
		// Complete: record the SHA-256 now, in the one write FinishUpload
		// would make. Finishing may be put off (a pre-finish approval
		// failing, the lock lost): the next request finishes the upload
		// with it instead of reading the object back. (Should the process
		// die before, it is read from the object.)
		sum, ok := finalSHA(st)
		if !ok {
			return
		}
		if old, ok := objsha.Sum(st.info); ok && objsha.Equal(old, sum) {
			return
		}
		info := objsha.WithSum(st.info, sum)
		if err := s.writeInfo(context.WithoutCancel(ctx), info); err != nil {
			s.Log.WarnContext(ctx, "could not store the SHA-256 of a complete upload; FinishUpload records it", "id", st.info.ID, "error", err.Error())
			return
		}
		st.info = info
		return
	}
	if saved, ok, _ := objsha.State(st.info); ok && saved.Offset == st.sha.Offset && saved.Parts == st.sha.Parts {
		return
	}
	info := withSHA(st, st.info)
	if err := s.writeInfo(context.WithoutCancel(ctx), info); err != nil {
		s.Log.WarnContext(ctx, "could not store the running SHA-256 of an upload; it will be computed from the finished object", "id", st.info.ID, "error", err.Error())
		return
	}
	st.info = info
}

// startSHA gives the writer the running hash of the upload, if it keeps
// one and it is known.
func (w *writer) startSHA() {
	if !w.st.hashing || w.st.sha == nil {
		return
	}
	h, err := objsha.Resume(*w.st.sha)
	if err != nil {
		w.st.sha = nil
		return
	}
	w.sha = h
	w.src.r = h.Reader(w.src.r)
}

// hashed is r (the tail, read ahead of the body) through the running hash.
func (w *writer) hashed(r io.Reader) io.Reader {
	if w.sha == nil || w.tailHashed {
		return r
	}
	return w.sha.Reader(r)
}

// markPart keeps the running state at the end of a part, before its bytes
// are read.
func (w *writer) markPart(end int64) {
	if w.sha != nil {
		w.sha.Mark(end)
	}
}

// shaAt moves st.sha to the end of the parts, just stored: the state the
// hash kept there, or none.
func (w *writer) shaAt(etag *string) {
	w.st.sha = nil
	if w.sha == nil {
		return
	}
	if snap, ok := w.sha.At(w.st.partsSize); ok {
		snap.Parts, snap.ETag = len(w.st.parts), objsha.TrimETag(aws.ToString(etag))
		w.st.sha = &snap
	}
}

// finalSHA is the SHA-256 of the upload in st, whose bytes are all in
// parts, if known: recorded in the .info, or from the state at its end.
func finalSHA(st *state) ([]byte, bool) {
	if sum, ok := objsha.Sum(st.info); ok {
		return sum, true
	}
	if st.sha == nil || st.sha.Offset != st.info.Size || st.info.SizeIsDeferred {
		return nil, false
	}
	h, err := objsha.Resume(*st.sha)
	if err != nil {
		return nil, false
	}
	return h.Sum(), true
}

// SHA256 implements objsha.Digester: the SHA-256 of the upload once all
// its bytes are stored, from the state at the end of its parts and the
// tail's bytes, read from S3. It records it in the .info, so that a later
// look (an upload refused for a Repr-Digest that does not match is looked
// at again) needs neither. It is not known for an upload whose state was
// lost until it is finished.
func (u *upload) SHA256(ctx context.Context) ([]byte, bool, error) {
	st, err := u.state(ctx)
	if err != nil {
		return nil, false, err
	}
	if sum, ok := objsha.Sum(st.info); ok {
		return sum, true, nil
	}
	if _, pending := objsha.Pending(st.info); st.completed && pending {
		// Completed, and the process that read the object for its
		// SHA-256 died (the caller holds the lock): read it again.
		objectID, _ := layout.SplitID(u.id)
		u.st = nil
		key := u.s.key(objectID)
		sum, ok := u.s.computeSHA(ctx, key, st.info)
		if ok {
			u.s.tagSHA(ctx, key, sum)
		}
		return sum, ok, nil
	}
	if st.completed || st.sha == nil || st.info.SizeIsDeferred || st.offset() != st.info.Size {
		return nil, false, nil
	}
	sum, ok := finalSHA(&st)
	objectID, multipartID := layout.SplitID(u.id)
	if !ok {
		// The last bytes are in the tail.
		w := u.s.newWriter(&st, objectID, multipartID, bytesReaderOf(nil))
		body, err := w.openTail(ctx)
		if err != nil {
			return nil, false, err
		}
		var n int64
		sum, n, err = objsha.Of(*st.sha, body)
		body.Close()
		if err == nil && n != st.tail {
			err = fmt.Errorf("%d bytes, not %d", n, st.tail)
		}
		if err != nil {
			return nil, false, fmt.Errorf("s3stream: reading the tail of %s: %w", objectID, err)
		}
	}
	info := objsha.WithSum(st.info, sum)
	if err := u.s.writeInfo(ctx, info); err != nil {
		u.st = nil
		return nil, false, fmt.Errorf("s3stream: recording the SHA-256 of %s: %w", objectID, err)
	}
	u.st.info = info
	return sum, true, nil
}

// beforeCompletion records in the .info, before the upload of st is
// completed, its SHA-256 if known, or else that it is being computed from
// the object (objsha.Pending: webhooks wait for it). It returns the
// SHA-256 and the .info written.
func (s *Store) beforeCompletion(ctx context.Context, st *state) ([]byte, bool, error) {
	if !st.hashing {
		return nil, false, nil
	}
	sum, known := finalSHA(st)
	info := objsha.WithPending(st.info, time.Now())
	if known {
		info = objsha.WithSum(st.info, sum)
		if old, ok := objsha.Sum(st.info); ok && objsha.Equal(old, sum) {
			return sum, true, nil
		}
	}
	if err := s.writeInfo(ctx, info); err != nil {
		return nil, false, fmt.Errorf("s3stream: recording the SHA-256 of %s: %w", info.ID, err)
	}
	st.info = info
	return sum, known, nil
}

// afterCompletion computes the SHA-256 of the finished object key from the
// object if it was not known before (info is its .info), and tags the
// object with it.
func (s *Store) afterCompletion(ctx context.Context, key string, info handler.FileInfo, sum []byte, known bool) {
	if !known {
		if sum, known = s.computeSHA(ctx, key, info); !known {
			return
		}
	}
	s.tagSHA(ctx, key, sum)
}

// computeSHA reads the finished object key to compute its SHA-256, and
// records it in its .info (info, marked pending). It logs why, once per
// upload. A failure is logged: the upload then has no SHA-256.
func (s *Store) computeSHA(ctx context.Context, key string, info handler.FileInfo) ([]byte, bool) {
	ctx = context.WithoutCancel(ctx)
	s.Log.InfoContext(ctx, "computing the SHA-256 of a finished upload from its object: its running state was lost (a process killed during a write, a concatenation, or an upload begun before --object-sha256)",
		"key", key, "size", info.Size)
	out, err := s.Objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Inner.Bucket), Key: aws.String(key)})
	var sum []byte
	if err == nil {
		var n int64
		sum, n, err = objsha.Of(objsha.Fresh(), out.Body)
		out.Body.Close()
		if err == nil && n != info.Size {
			err = fmt.Errorf("the object holds %d bytes, the upload %d", n, info.Size)
		}
	}
	if err == nil {
		err = s.writeInfo(ctx, objsha.WithSum(info, sum))
	}
	if err != nil {
		s.Log.WarnContext(ctx, "could not compute the SHA-256 of a finished upload; it has none", "key", key, "error", err.Error())
		return nil, false
	}
	return sum, true
}

// shaTag is the object tag that carries a finished object's SHA-256.
const shaTag = "tusgate-sha256"

// tagSHA tags the finished object key with its SHA-256 (shaTag): S3 cannot
// add user metadata to an object after CompleteMultipartUpload without
// copying it, a tag it can. Best effort: the SHA-256 is in the .info
// already. An S3 that refuses tagging (no s3:PutObjectTagging, or no
// tagging at all) is not asked again until restart, and that is logged
// once.
func (s *Store) tagSHA(ctx context.Context, key string, sum []byte) {
	if s.tagsOff.Load() {
		return
	}
	_, err := s.Objects.PutObjectTagging(context.WithoutCancel(ctx), &s3.PutObjectTaggingInput{
		Bucket: aws.String(s.Inner.Bucket), Key: aws.String(key),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String(shaTag), Value: aws.String(objsha.Encode(sum))}}},
	})
	switch status := storeerr.HTTPStatus(err); {
	case err == nil:
	case status == http.StatusForbidden || status == http.StatusNotImplemented || status == http.StatusMethodNotAllowed || status == http.StatusBadRequest,
		hasCode(err, "AccessDenied", "NotImplemented", "MethodNotAllowed", "InvalidRequest", "InvalidArgument"):
		if s.tagsOff.CompareAndSwap(false, true) {
			s.Log.WarnContext(ctx, "S3 refused to tag a finished object with its SHA-256; objects get no "+shaTag+" tag until restart (the SHA-256 is in the .info, the webhook and HEAD answers)",
				"key", key, "error", err.Error())
		}
	default:
		s.Log.DebugContext(ctx, "could not tag a finished object with its SHA-256", "key", key, "error", err.Error())
	}
}

// beforeConcat marks a final upload's SHA-256 as being computed, with
// ObjectSHA256: it can only be read from the assembled object. It returns
// the .info written, for afterConcat (nil without ObjectSHA256).
func (u *upload) beforeConcat(ctx context.Context) (*handler.FileInfo, error) {
	if !u.s.ObjectSHA256 {
		return nil, nil
	}
	st, err := u.state(ctx)
	if err != nil {
		return nil, err
	}
	info := objsha.WithPending(st.info, time.Now())
	if err := u.s.writeInfo(ctx, info); err != nil {
		return nil, fmt.Errorf("s3stream: marking the SHA-256 of %s: %w", u.id, err)
	}
	return &info, nil
}

// afterConcat computes the SHA-256 of a final upload from its object.
func (u *upload) afterConcat(ctx context.Context, info *handler.FileInfo) {
	if info == nil {
		return
	}
	objectID, _ := layout.SplitID(u.id)
	u.s.afterCompletion(ctx, u.s.key(objectID), *info, nil, false)
}
