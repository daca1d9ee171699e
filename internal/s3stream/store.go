// Package s3stream writes tus request bodies into S3 parts without tusd's
// detour through temp files.
//
// tusd's s3store copies every byte of a PATCH into a temp file and reads it
// back to send it to S3: two extra kernel copies and page-cache churn that
// took about 40 % of the gateway's CPU in profiles (docs/benchmarks.md). This
// store takes over WriteChunk and FinishUpload and hands everything else to
// s3store, with the same objects: <key> multipart upload, <key>.info and the
// <key>.part tail, so either store can continue an upload the other began.
//
// The request body is read into part-sized buffers, and each part goes to
// S3 while it fills: over HTTPS its UploadPart streams the buffer as it
// fills, as an unseekable body with a CRC32 trailer that S3 checks. Nothing
// is lost when a stream stops short: if the client disconnects mid-part, S3
// has rejected the truncated part, and the bytes received are stored from
// the buffer (as a part, or as the .part tail when too small); if S3 fails
// mid-part, the part is sent again from the buffer once it is complete,
// with the SDK's retries. Over plain HTTP the request must be signed with
// the payload's SHA-256, so each part is sent once it is complete, with the
// SHA-256 and CRC32 summed while it filled (partSums). Either way a part's
// last byte waits until the part before is stored. While the budget has room, up to Parallel parts of a write are on their
// way at once, so that a single S3 connection does not cap an upload's
// speed.
//
// Memory is bounded by Buffers: a write that cannot get its first buffer
// (after waiting at most a second for other writes' extra buffers) falls
// back to s3store's temp files.
package s3stream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// API is the part of the S3 client the store uses.
type API interface {
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
}

// PartUploader sends parts.
type PartUploader interface {
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
}

// Store is a tusd data store: s3store with this package's write path.
type Store struct {
	// Inner does everything but writing and completing.
	Inner s3store.S3Store
	// Objects lists parts (with s3backend's repairs), stores .part tails
	// (with the configured encryption) and completes uploads.
	Objects API
	// Parts sends parts. It should not be s3backend's guarded client: a
	// streamed attempt that fails when the client disconnects must not
	// count as a failed part there (the salvage after it is fine).
	Parts PartUploader
	// Stream sends parts while they arrive (S3 over HTTPS). Otherwise each
	// part is read into memory first (plain HTTP: the request is signed
	// with the payload's SHA-256).
	Stream bool
	// Parallel is the most parts of one write on their way to S3 at once,
	// each in its own buffer (at least 1).
	Parallel int
	Buffers  *Buffers
	Metrics  *Metrics // may be nil
	Log      *slog.Logger
}

// UseIn sets the store as the core of composer with all of s3store's
// extensions.
func (s *Store) UseIn(c *handler.StoreComposer) {
	c.UseCore(s)
	c.UseTerminater(s)
	c.UseConcater(s)
	c.UseLengthDeferrer(s)
	c.UseContentServer(s)
}

// NewUpload creates the upload with s3store.
func (s *Store) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	inner, err := s.Inner.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	return &upload{s: s, inner: inner}, nil
}

// GetUpload returns the upload; nothing is read from S3 yet.
func (s *Store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	inner, err := s.Inner.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return &upload{s: s, inner: inner}, nil
}

// AsTerminatableUpload implements handler.TerminaterDataStore.
func (s *Store) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return u.(*upload)
}

// AsLengthDeclarableUpload implements handler.LengthDeferrerDataStore.
func (s *Store) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return u.(*upload)
}

// AsConcatableUpload implements handler.ConcaterDataStore.
func (s *Store) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return u.(*upload)
}

// AsServableUpload implements handler.ContentServerDataStore.
func (s *Store) AsServableUpload(u handler.Upload) handler.ServableUpload {
	return u.(*upload)
}

// upload is an s3store upload whose writes and completion this package does.
type upload struct {
	s     *Store
	inner handler.Upload
	// stored is what this package wrote and knows to be in S3, once it has
	// written; s3store's cached view of the upload is stale from then on,
	// so inner is replaced by a fresh one.
	stored *state
}

// state is an upload as stored in S3.
type state struct {
	info       handler.FileInfo
	parts      []types.CompletedPart
	partsSize  int64
	incomplete int64 // size of the .part tail
}

func (u *upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	if u.stored != nil {
		return u.stored.info, nil
	}
	return u.inner.GetInfo(ctx)
}

func (u *upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	return u.inner.GetReader(ctx)
}

func (u *upload) ServeContent(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	return u.s.Inner.AsServableUpload(u.inner).ServeContent(ctx, w, r)
}

func (u *upload) Terminate(ctx context.Context) error {
	return u.s.Inner.AsTerminatableUpload(u.inner).Terminate(ctx)
}

func (u *upload) DeclareLength(ctx context.Context, length int64) error {
	if err := u.forgetState(ctx); err != nil {
		return err
	}
	return u.s.Inner.AsLengthDeclarableUpload(u.inner).DeclareLength(ctx, length)
}

func (u *upload) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	inner := make([]handler.Upload, len(partials))
	for i, p := range partials {
		w, ok := p.(*upload)
		if !ok {
			return fmt.Errorf("s3stream: concatenating an upload of another store (%T)", p)
		}
		if err := w.forgetState(ctx); err != nil {
			return err
		}
		inner[i] = w.inner
	}
	if err := u.forgetState(ctx); err != nil {
		return err
	}
	return u.s.Inner.AsConcatableUpload(u.inner).ConcatUploads(ctx, inner)
}

// forgetState hands the upload back to s3store, which reads it from S3 anew.
func (u *upload) forgetState(ctx context.Context) error {
	if u.stored == nil {
		return nil
	}
	fresh, err := u.s.Inner.GetUpload(ctx, u.stored.info.ID)
	if err != nil {
		return err
	}
	u.inner, u.stored = fresh, nil
	return nil
}

// FinishUpload completes the multipart upload. A .part tail left by the
// last write becomes the last part first: with a length declared after
// the bytes (Upload-Defer-Length, or the IETF draft's Upload-Complete), the
// last bytes may sit there, and s3store would complete without them.
func (u *upload) FinishUpload(ctx context.Context) error {
	info, err := u.GetInfo(ctx)
	if err != nil {
		return err
	}
	st, err := u.current(ctx, info)
	if err != nil {
		return err
	}
	if len(st.parts) == 0 && st.incomplete == 0 {
		// An empty upload: s3store stores an empty part.
		if err := u.forgetState(ctx); err != nil {
			return err
		}
		return u.inner.FinishUpload(ctx)
	}
	objectID, multipartID := splitID(info.ID)
	if st.incomplete > 0 {
		buf := make([]byte, st.incomplete)
		w := &writer{s: u.s, st: &st, key: u.s.key(objectID), multipartID: multipartID}
		if !w.isPart(st.partsSize, st.incomplete) {
			return fmt.Errorf("s3stream: finishing %s at offset %d of %d", objectID, info.Offset, info.Size)
		}
		// Deleted before it is sent as a part, so that the offset never
		// counts it twice (as in WriteChunk).
		if err := w.readTail(ctx, buf); err != nil {
			return err
		}
		n := st.incomplete
		st.incomplete = 0
		// S3 changes under s3store's view and ours.
		fresh, err := u.s.Inner.GetUpload(ctx, info.ID)
		if err != nil {
			return err
		}
		u.inner, u.stored = fresh, nil
		if err := w.store(ctx, st.partsSize, buf[:n], "buffered"); err != nil {
			return err
		}
	}
	_, err = u.s.Objects.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(u.s.Inner.Bucket),
		Key:             aws.String(u.s.key(objectID)),
		UploadId:        aws.String(multipartID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: st.parts},
	})
	if err != nil {
		return fmt.Errorf("s3stream: completing %s: %w", objectID, err)
	}
	return nil
}

// key is the object key of an upload's objectID (metadata objects share the
// prefix: tusgate does not set s3store's MetadataObjectPrefix).
func (s *Store) key(objectID string) string {
	p := strings.Trim(s.Inner.ObjectPrefix, "/")
	if p == "" {
		return objectID
	}
	return p + "/" + objectID
}

// splitID splits an s3store upload ID into object ID and multipart ID.
func splitID(id string) (objectID, multipartID string) {
	i := strings.LastIndex(id, "+")
	if i < 0 {
		return id, ""
	}
	return id[:i], id[i+1:]
}
