// Package s3stream is tusgate's S3 data store: tusd's s3store with its own
// write path, offset and completion.
//
// tusd's s3store copies every byte of a PATCH into a temp file and reads it
// back to send it to S3: two extra kernel copies and page-cache churn that
// took about 40 % of the gateway's CPU in profiles (docs/benchmarks.md). And
// it reads and deletes the .part tail before its bytes are stored again, so
// a failure in between loses bytes a client was told are stored. This store
// takes over GetInfo, WriteChunk, DeclareLength, FinishUpload and the
// concatenation of large partials, and hands everything else to s3store,
// with the same objects: <key> multipart upload, <key>.info and the
// <key>.part tail.
//
// Completion. Every multipart upload is completed here (see complete), with
// the checksums its creation asked for: s3backend asks for a FULL_OBJECT
// CRC32, and the completion carries each part's CRC32 and the CRC32 of the
// whole object, combined from the parts' as S3 lists them, which S3
// validates and keeps with the object.
//
// SHA-256. With ObjectSHA256 (and for uploads that stated a Repr-Digest)
// the SHA-256 of the whole upload is computed as its bytes arrive, and
// recorded in the .info before the upload is completed (see sha.go).
//
// Offsets. An upload's offset is the size of its parts plus its tail. A
// tail records where it starts and is kept until a part holds its bytes;
// from then on it is stale and does not count (see state). Every byte a
// write acknowledged is therefore in a part or in a counting tail, whatever
// request fails and wherever the process dies, and none counts twice.
//
// Part sizes come from one plan (see plan) that fits every upload up to
// MaxSize into S3's 10,000 parts, whether its length is known at creation,
// declared late, or never until the end.
//
// Writes. A write whose first part fits into the buffer budget (Buffers)
// reads the request body into part-sized buffers, and each part goes to S3
// while it fills: over HTTPS its UploadPart streams the buffer as it fills,
// as an unseekable body with a CRC32 trailer that S3 checks; over plain
// HTTP the request is signed with the payload's SHA-256, so each part is
// sent once it is complete, with the SHA-256 and CRC32 summed while it
// filled (partSums). The buffer keeps what a client sent: if the client
// disconnects mid-part, S3 has rejected the truncated part, and the bytes
// received are stored from the buffer (as a part, or as the tail); if S3
// fails mid-part, the part is sent again from the buffer. A part's last
// byte waits until the part before is stored, so up to Parallel parts of a
// write travel side by side without S3 ever holding a part past a gap.
//
// A write that finds the budget spent, or parts larger than it, streams
// each part from the request body through a small window (see writeWindow):
// one part at a time, with the same CRC32 trailer, and memory per write of
// one window. A client that disconnects mid-part, or an S3 failure mid-part,
// then costs that part: the offset stays at the last stored part and the
// client sends those bytes again. A body of unknown length (chunked) needs
// a part buffer, and waits for one.
package s3stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// API is the part of the S3 client the store uses.
type API interface {
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	PutObjectTagging(ctx context.Context, in *s3.PutObjectTaggingInput, opts ...func(*s3.Options)) (*s3.PutObjectTaggingOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

// PartUploader sends parts.
type PartUploader interface {
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
}

// Store is a tusd data store: s3store with this package's offsets, writes
// and completion.
type Store struct {
	// Inner creates, terminates, concatenates small partials and serves
	// uploads. Its part sizes (PreferredPartSize, MinPartSize,
	// MaxPartSize, MaxMultipartParts, MaxObjectSize) are this store's too.
	Inner s3store.S3Store
	// Objects reads uploads (listing parts with s3backend's repairs),
	// stores tails (with the configured encryption) and completes uploads.
	Objects API
	// Parts sends parts. It should not be s3backend's guarded client: a
	// streamed attempt that fails when the client disconnects must not
	// count as a failed part there (the salvage after it is fine).
	Parts PartUploader
	// Stream sends buffered parts while they arrive (S3 over HTTPS).
	// Otherwise each buffered part is read into memory first (plain HTTP:
	// the request is signed with the payload's SHA-256).
	Stream bool
	// Parallel is the most parts of one buffered write on their way to S3
	// at once, each in its own buffer (at least 1).
	Parallel int
	// MaxSize is the most bytes an upload may hold (the server's
	// --max-size); 0: s3store's MaxObjectSize. Uploads of unknown length
	// are planned to reach it.
	MaxSize int64
	// ObjectSHA256 keeps the SHA-256 of every upload while its bytes
	// arrive (see sha.go); without it only uploads that stated a
	// Repr-Digest keep one.
	ObjectSHA256 bool
	Buffers      *Buffers
	Metrics      *Metrics // may be nil
	Log          *slog.Logger

	bandOnce      sync.Once
	bandBaseValue int64
	tagsOff       atomic.Bool // S3 refused object tagging (see tagSHA)
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
	created, err := inner.GetInfo(ctx)
	if err != nil {
		return nil, err
	}
	st := &state{info: created}
	s.resumeSHA(st)
	return &upload{s: s, id: created.ID, st: st}, nil
}

// GetUpload returns the upload; nothing is read from S3 yet.
func (s *Store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	// s3store checks the ID's form.
	if _, err := s.Inner.GetUpload(ctx, id); err != nil {
		return nil, err
	}
	return &upload{s: s, id: id}, nil
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

// upload is one upload of the store.
type upload struct {
	s  *Store
	id string
	// st is the upload as stored, once read or written; nil: read it from
	// S3 on next use.
	st *state
}

// state returns the upload as stored, reading it from S3 if not known.
func (u *upload) state(ctx context.Context) (state, error) {
	if u.st == nil {
		st, err := u.s.fetchState(ctx, u.id)
		if err != nil {
			return st, err
		}
		u.st = &st
	}
	return u.st.clone(), nil
}

// inner is s3store's view of the upload, read anew from S3 when it needs to.
func (u *upload) inner(ctx context.Context) (handler.Upload, error) {
	return u.s.Inner.GetUpload(ctx, u.id)
}

func (u *upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	st, err := u.state(ctx)
	st.info.Offset = st.offset()
	return st.info, err
}

func (u *upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	inner, err := u.inner(ctx)
	if err != nil {
		return nil, err
	}
	return inner.GetReader(ctx)
}

func (u *upload) ServeContent(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	inner, err := u.inner(ctx)
	if err != nil {
		return err
	}
	return u.s.Inner.AsServableUpload(inner).ServeContent(ctx, w, r)
}

func (u *upload) Terminate(ctx context.Context) error {
	inner, err := u.inner(ctx)
	if err != nil {
		return err
	}
	u.st = nil
	return u.s.Inner.AsTerminatableUpload(inner).Terminate(ctx)
}

// DeclareLength records the upload's length in its .info, as s3store does
// (without s3store's reading of the whole upload first).
func (u *upload) DeclareLength(ctx context.Context, length int64) error {
	st, err := u.state(ctx)
	if err != nil {
		return err
	}
	info := st.info
	info.Size, info.SizeIsDeferred = length, false
	if err := u.s.writeInfo(ctx, info); err != nil {
		u.st = nil
		return fmt.Errorf("s3stream: declaring the length: %w", err)
	}
	u.st.info = info
	return nil
}

// writeInfo stores info as the upload's .info, as s3store does.
func (s *Store) writeInfo(ctx context.Context, info handler.FileInfo) error {
	info.Offset = 0 // read from the parts, never from here
	body, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encoding the info of %s: %w", info.ID, err)
	}
	objectID, _ := layout.SplitID(info.ID)
	_, err = s.Objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Inner.Bucket), Key: aws.String(s.key(objectID) + ".info"),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		return fmt.Errorf("storing the info of %s: %w", objectID, err)
	}
	return nil
}

// FinishUpload completes the multipart upload, with the checksums its
// creation asked for (see complete). A tail left by the last write becomes
// the last part first: with a length declared after the bytes
// (Upload-Defer-Length, or the IETF draft's Upload-Complete), the last
// bytes may sit there, and s3store would complete without them. An empty
// upload gets one empty part, as s3store gives it (S3 completes nothing
// without a part).
func (u *upload) FinishUpload(ctx context.Context) error {
	st, err := u.state(ctx)
	if err != nil {
		return err
	}
	if st.completed {
		return nil
	}
	objectID, multipartID := layout.SplitID(u.id)
	key := u.s.key(objectID)
	if st.info.SizeIsDeferred || st.offset() != st.info.Size {
		return storeerr.Permanent(fmt.Errorf("s3stream: finishing %s at offset %d of %d", objectID, st.offset(), st.info.Size))
	}
	if len(st.parts) == 0 && st.tail == 0 {
		out, err := u.s.Parts.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(u.s.Inner.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID),
			PartNumber: aws.Int32(1), Body: bytes.NewReader(nil), ContentLength: aws.Int64(0),
		})
		if err != nil {
			u.st = nil
			return fmt.Errorf("s3stream: storing the empty part of %s: %w", objectID, err)
		}
		st.parts = []types.CompletedPart{{ETag: out.ETag, PartNumber: aws.Int32(1)}}
	}
	if st.tail > 0 || len(st.stale) > 0 || st.pending {
		w := u.s.newWriter(&st, objectID, multipartID, bytesReaderOf(nil))
		err := w.prepare(ctx)
		if err == nil && st.tail > 0 {
			err = w.writeWindow(ctx, st.offset())
		}
		w.release()
		if err == nil && st.tail > 0 {
			err = storeerr.Permanent(fmt.Errorf("s3stream: the tail of %s was not stored as its last part", objectID))
		}
		if err != nil {
			u.st = nil
			return err
		}
		u.st = &st
	}
	if st.staleTail {
		// Its bytes are in the parts: it counts for nothing, and once the
		// upload is complete nothing would delete it.
		u.s.deleteTail(ctx, key)
	}
	sum, known, err := u.s.beforeCompletion(ctx, &st)
	if err != nil {
		u.st = nil
		return err
	}
	err = u.s.complete(ctx, key, multipartID, st.parts)
	u.st = nil
	if err == nil && st.hashing {
		u.s.afterCompletion(ctx, key, st.info, sum, known)
	}
	return err
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
