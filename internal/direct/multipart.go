package direct

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/hooks/oidc"
	"github.com/tusgate/tusgate/internal/metadata"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// createRequest is the body of POST /s3/multipart. Size is tusgate's
// addition (also read from metadata.size, which @uppy/aws-s3 sends
// unchanged when the page sets it): with it, limits apply at creation and
// bind every part.
type createRequest struct {
	Filename string         `json:"filename"`
	Type     string         `json:"type"`
	Metadata map[string]any `json:"metadata"`
	Size     *int64         `json:"size"`
}

// create starts a multipart upload under a key tusgate chooses.
func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	p, err := caller(r)
	if err != nil {
		s.fail(w, r, "create", err)
		return
	}
	var req createRequest
	if err := decodeBody(r, int64(s.o.MaxMetadataSize)+64<<10, &req); err != nil {
		s.fail(w, r, "create", err)
		return
	}
	size := int64(-1)
	if req.Size != nil {
		if size = *req.Size; size < 0 {
			s.fail(w, r, "create", errorf(http.StatusBadRequest, "ERR_INVALID_SIZE", "size must be a whole number of bytes, 0 or more"))
			return
		}
	} else if v, ok := req.Metadata["size"]; ok {
		if size, err = sizeOf(v); err != nil {
			s.fail(w, r, "create", err)
			return
		}
	}
	meta, err := s.cleanMeta(p, req.Filename, req.Type, req.Metadata)
	if err != nil {
		s.fail(w, r, "create", err)
		return
	}
	owner := hooks.OwnerFolder(p)
	if err := s.checkNew(size); err != nil {
		s.fail(w, r, "create", err)
		return
	}
	var rec *record
	err = s.o.Quota.Admit(r.Context(), owner, max(size, 0), func() (err error) {
		rec, err = s.startMultipart(context.WithoutCancel(r.Context()), owner, size, meta)
		return err
	})
	if err != nil {
		s.fail(w, r, "create", err)
		return
	}
	s.m.uploads.WithLabelValues("created").Inc()
	writeJSON(w, http.StatusOK, map[string]string{"key": rec.Key, "uploadId": rec.UploadID, "bucket": s.o.Bucket})
}

// startMultipart creates the multipart upload of a new direct upload, its
// record and its creation event; if a step fails, the upload is aborted.
func (s *Service) startMultipart(ctx context.Context, owner string, size int64, meta map[string]string) (*record, error) {
	rel := owner + "/" + newName()
	key := s.o.Prefix + rel
	contentType := meta["filetype"]
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	out, err := s.o.Writer.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(s.o.Bucket), Key: aws.String(key), ContentType: aws.String(contentType), Metadata: meta,
	})
	if err != nil {
		return nil, fmt.Errorf("CreateMultipartUpload: %w", err)
	}
	rec := &record{Version: 1, Kind: kindMultipart, Key: key, UploadID: aws.ToString(out.UploadId), Size: size, Meta: meta, Created: s.clock.Now().UTC()}
	u := &upload{owner: owner, rel: rel, key: key, rec: rec}
	if err := s.writeRecord(ctx, rel, rec); err != nil {
		s.abortQuietly(ctx, u)
		return nil, err
	}
	if s.o.Lifecycle != nil {
		if err := s.o.Lifecycle.Created(ctx, s.info(rel, rec, size)); err != nil {
			s.abortQuietly(ctx, u)
			return nil, err
		}
	}
	return rec, nil
}

// checkNew applies --max-size to a new upload of size bytes (-1: not
// declared), and refuses an undeclared size under a byte quota. The quota
// itself is checked by Options.Quota, as the upload is created.
func (s *Service) checkNew(size int64) error {
	if size > s.o.MaxSize {
		return errorf(http.StatusRequestEntityTooLarge, "ERR_MAX_SIZE_EXCEEDED", "the upload is %d bytes; this server accepts at most %d", size, s.o.MaxSize)
	}
	if size < 0 && s.o.Limits.Bytes > 0 {
		return errorf(http.StatusBadRequest, "ERR_QUOTA_NEEDS_LENGTH", "this server limits the bytes each user may have in flight; declare the upload's size (size, or metadata.size)")
	}
	return nil
}

// cleanMeta validates the client's file name, type and metadata as
// Upload-Metadata is validated, and adds the owner.
func (s *Service) cleanMeta(p *oidc.Principal, filename, typ string, client map[string]any) (map[string]string, error) {
	meta := handler.MetaData{}
	for k, v := range client {
		if str, ok := v.(string); ok {
			meta[k] = str
		}
	}
	if filename != "" {
		meta["filename"] = filename
	}
	if typ != "" {
		meta["filetype"] = typ
	}
	cleaned, err := metadata.Clean(meta, s.o.MaxMetadataSize)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "ERR_INVALID_METADATA", "%s", strings.Replace(err.Error(), "Upload-Metadata", "metadata", 1))
	}
	out := hooks.StripReserved(cleaned)
	out[hooks.MetaOwner] = p.Subject
	out[hooks.MetaIssuer] = p.Issuer
	return out, nil
}

// sizeOf reads a declared size: a JSON number or a decimal string.
func sizeOf(v any) (int64, error) {
	bad := errorf(http.StatusBadRequest, "ERR_INVALID_SIZE", "size must be a whole number of bytes, 0 or more")
	switch x := v.(type) {
	case float64:
		if x < 0 || x != math.Trunc(x) || x > math.MaxInt64/2 {
			return 0, bad
		}
		return int64(x), nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil || n < 0 {
			return 0, bad
		}
		return n, nil
	}
	return 0, bad
}

// part is one entry of GET /s3/multipart/:uploadId, as Companion lists it.
type part struct {
	PartNumber   int32     `json:"PartNumber"`
	Size         int64     `json:"Size"`
	ETag         string    `json:"ETag"`
	LastModified time.Time `json:"LastModified,omitzero"`
}

// listParts lists every part stored, across all ListParts pages.
func (s *Service) listParts(w http.ResponseWriter, r *http.Request) {
	p, err := caller(r)
	if err != nil {
		s.fail(w, r, "list", err)
		return
	}
	u, err := s.resolve(r.Context(), p, r.URL.Query().Get("key"), r.PathValue("uploadId"))
	if err != nil {
		s.fail(w, r, "list", err)
		return
	}
	parts, err := s.allParts(r.Context(), u.key, u.rec.UploadID)
	if err != nil {
		s.fail(w, r, "ListParts", err)
		return
	}
	writeJSON(w, http.StatusOK, parts)
}

// allParts lists an upload's parts; a gone upload is errNotFound.
func (s *Service) allParts(ctx context.Context, key, uploadID string) ([]part, error) {
	parts := []part{}
	in := &s3.ListPartsInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(key), UploadId: aws.String(uploadID)}
	for {
		out, err := s.o.S3.ListParts(ctx, in)
		if err != nil {
			if storeerr.HTTPStatus(err) == http.StatusNotFound {
				return nil, errNotFound
			}
			return nil, err
		}
		for _, p := range out.Parts {
			parts = append(parts, part{PartNumber: aws.ToInt32(p.PartNumber), Size: aws.ToInt64(p.Size), ETag: aws.ToString(p.ETag), LastModified: aws.ToTime(p.LastModified)})
		}
		next := aws.ToString(out.NextPartNumberMarker)
		if !aws.ToBool(out.IsTruncated) {
			return parts, nil
		}
		if next == "" || next == aws.ToString(in.PartNumberMarker) {
			return nil, errors.New("listing parts: truncated answer without a new marker")
		}
		in.PartNumberMarker = aws.String(next)
	}
}

// completeRequest is the body of POST .../complete.
type completeRequest struct {
	Parts []struct {
		PartNumber int32  `json:"PartNumber"`
		ETag       string `json:"ETag"`
	} `json:"parts"`
}

// complete checks the parts against S3's listing and the limits, asks the
// pre-finish URL, and completes the multipart upload.
func (s *Service) complete(w http.ResponseWriter, r *http.Request) {
	p, err := caller(r)
	if err != nil {
		s.fail(w, r, "complete", err)
		return
	}
	key := r.URL.Query().Get("key")
	ctx := context.WithoutCancel(r.Context())
	u, err := s.resolve(r.Context(), p, key, r.PathValue("uploadId"))
	if err == errNotFound {
		// A retry after a completion whose answer was lost: the record
		// went with the completion.
		s.answerCompleted(w, r, p, key, nil)
		return
	}
	if err != nil {
		s.fail(w, r, "complete", err)
		return
	}
	var req completeRequest
	if err := decodeBody(r, 2<<20, &req); err != nil {
		s.fail(w, r, "complete", err)
		return
	}
	listed, err := s.allParts(ctx, u.key, u.rec.UploadID)
	if err == errNotFound {
		// Completed, with S3's answer lost, or aborted.
		s.answerCompleted(w, r, p, key, u)
		return
	}
	if err != nil {
		s.fail(w, r, "ListParts", err)
		return
	}
	completed, total, err := checkParts(req, listed)
	if err != nil {
		s.fail(w, r, "complete", err)
		return
	}
	if err := s.checkTotal(ctx, u, total); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusRequestEntityTooLarge {
			if terr := s.terminate(ctx, u); terr != nil {
				s.log.WarnContext(ctx, "direct upload: aborting an upload over its limits failed", "key", u.key, "error", terr.Error())
			}
		}
		s.fail(w, r, "complete", err)
		return
	}

	info := s.info(u.rel, u.rec, total)
	info.Offset = total
	if s.o.Lifecycle != nil {
		if err := s.o.Lifecycle.Finishing(ctx, info); err != nil {
			var rej *safestore.Rejection
			if errors.As(err, &rej) {
				s.m.uploads.WithLabelValues("rejected").Inc()
				s.abortQuietly(ctx, u)
			}
			s.fail(w, r, "pre-finish", err)
			return
		}
	}
	out, err := s.o.S3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.o.Bucket), Key: aws.String(u.key), UploadId: aws.String(u.rec.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err != nil {
		if storeerr.HTTPStatus(err) == http.StatusNotFound {
			s.answerCompleted(w, r, p, key, u)
			return
		}
		if code := apiErrorCode(err); code == "InvalidPart" || code == "InvalidPartOrder" || code == "EntityTooSmall" {
			err = errorf(http.StatusBadRequest, "ERR_INVALID_PART", "S3 refused the parts: %s", code)
		}
		s.fail(w, r, "CompleteMultipartUpload", err)
		return
	}
	s.finished(ctx, u, total)
	writeJSON(w, http.StatusOK, completedAnswer(aws.ToString(out.Location), u.key, s.o.Bucket, aws.ToString(out.ETag), total))
}

// finished forgets a completed upload's record and counts it.
func (s *Service) finished(ctx context.Context, u *upload, size int64) {
	if err := s.deleteRecord(ctx, u.rel); err != nil {
		// The janitor removes records of uploads that are gone.
		s.log.WarnContext(ctx, "direct upload: record not deleted", "key", u.key, "error", err.Error())
	}
	s.m.uploads.WithLabelValues("finished").Inc()
	s.m.bytes.Add(float64(size))
}

// completedAnswer is the answer to a completion, as @uppy/aws-s3 reads it.
func completedAnswer(location, key, bucket, etag string, size int64) map[string]any {
	return map[string]any{"location": location, "key": key, "bucket": bucket, "etag": etag, "size": size}
}

// answerCompleted answers a completion of the caller's upload key whose
// multipart upload S3 no longer has: if the object is there, an earlier
// completion stored it and this is the client's (or tusgate's) retry after
// its answer was lost, which gets the answer again; u, the upload's record
// if it is still there, is then forgotten. Otherwise the upload was
// cancelled or expired: 404. The key is unique to one direct upload (a
// random name under the owner's folder), so its object is this upload's.
func (s *Service) answerCompleted(w http.ResponseWriter, r *http.Request, p *oidc.Principal, key string, u *upload) {
	ctx := context.WithoutCancel(r.Context())
	if _, ok := s.ownKey(p, key); !ok {
		s.fail(w, r, "complete", errNotFound)
		return
	}
	head, err := s.o.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(key)})
	if storeerr.HTTPStatus(err) == http.StatusNotFound {
		s.fail(w, r, "complete", errNotFound)
		return
	}
	if err != nil {
		s.fail(w, r, "HeadObject", err)
		return
	}
	size := aws.ToInt64(head.ContentLength)
	if u != nil {
		// Counted once: unless the completion that stored the object (on
		// this instance or another) has forgotten the record already.
		s.records.drop(u.rel)
		if rec, err := s.readRecord(ctx, u.rel); err == nil && rec != nil {
			s.finished(ctx, u, size)
		}
	}
	location, err := s.objectURL(ctx, key)
	if err != nil {
		s.fail(w, r, "complete", err)
		return
	}
	writeJSON(w, http.StatusOK, completedAnswer(location, key, s.o.Bucket, aws.ToString(head.ETag), size))
}

// objectURL is the object's URL as S3 gives it for a completed upload: a
// presigned GET's URL without its signature.
func (s *Service) objectURL(ctx context.Context, key string) (string, error) {
	signed, err := s.o.Presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(key)})
	if err != nil {
		return "", fmt.Errorf("the object's URL: %w", err)
	}
	u, err := url.Parse(signed.URL)
	if err != nil {
		return "", fmt.Errorf("the object's URL: %w", err)
	}
	u.RawQuery = ""
	return u.String(), nil
}

// checkParts checks the parts a client wants completed against the parts
// S3 lists: numbers from 1 to MaxParts in ascending order, each stored,
// with the ETag S3 has, every part but the last at least MinPartSize. It
// returns them for CompleteMultipartUpload, and their total size.
func checkParts(req completeRequest, listed []part) ([]types.CompletedPart, int64, error) {
	if len(req.Parts) == 0 || len(req.Parts) > MaxParts {
		return nil, 0, errorf(http.StatusBadRequest, "ERR_INVALID_PARTS", "name 1 to %d parts", MaxParts)
	}
	stored := make(map[int32]part, len(listed))
	for _, p := range listed {
		stored[p.PartNumber] = p
	}
	out := make([]types.CompletedPart, 0, len(req.Parts))
	var total int64
	prev := int32(0)
	for i, rp := range req.Parts {
		if rp.PartNumber <= prev || rp.PartNumber > MaxParts {
			return nil, 0, errorf(http.StatusBadRequest, "ERR_INVALID_PARTS", "part numbers must go up, from 1 to %d", MaxParts)
		}
		prev = rp.PartNumber
		sp, ok := stored[rp.PartNumber]
		if !ok {
			return nil, 0, errorf(http.StatusBadRequest, "ERR_INVALID_PART", "part %d was not uploaded", rp.PartNumber)
		}
		if strings.Trim(rp.ETag, `"`) != strings.Trim(sp.ETag, `"`) {
			return nil, 0, errorf(http.StatusBadRequest, "ERR_INVALID_PART", "part %d: the ETag is not the stored part's", rp.PartNumber)
		}
		if i < len(req.Parts)-1 && sp.Size < MinPartSize {
			return nil, 0, errorf(http.StatusBadRequest, "ERR_PART_TOO_SMALL", "part %d is %d bytes; every part but the last must be at least %d", rp.PartNumber, sp.Size, MinPartSize)
		}
		total += sp.Size
		out = append(out, types.CompletedPart{PartNumber: aws.Int32(rp.PartNumber), ETag: aws.String(sp.ETag)})
	}
	return out, total, nil
}

// checkTotal checks the size of a finished upload against --max-size, its
// declared size and the byte quota. Too many bytes is a 413 (the caller
// aborts the upload); fewer than declared a 400 (the client may upload the
// missing parts).
func (s *Service) checkTotal(ctx context.Context, u *upload, total int64) error {
	if total > s.o.MaxSize {
		return errorf(http.StatusRequestEntityTooLarge, "ERR_MAX_SIZE_EXCEEDED", "the parts hold %d bytes; this server accepts at most %d per upload; the upload was aborted", total, s.o.MaxSize)
	}
	if d := u.rec.Size; d >= 0 && total != d {
		if total > d {
			return errorf(http.StatusRequestEntityTooLarge, "ERR_SIZE_EXCEEDED", "the parts hold %d bytes, more than the %d declared; the upload was aborted", total, d)
		}
		return errorf(http.StatusBadRequest, "ERR_SIZE_MISMATCH", "the parts hold %d bytes, less than the %d declared", total, d)
	}
	if s.o.Limits.Bytes > 0 {
		use, err := s.Usage().Usage(ctx, u.owner)
		if err != nil {
			return fmt.Errorf("reading quota usage: %w", err)
		}
		others := use.Bytes - max(u.rec.Size, 0) // this upload counts with its declared size
		if others+total > s.o.Limits.Bytes {
			return errorf(http.StatusRequestEntityTooLarge, "ERR_QUOTA_BYTES", "your other unfinished uploads hold %d bytes; %d more exceed your limit of %d bytes; the upload was aborted", others, total, s.o.Limits.Bytes)
		}
	}
	return nil
}

// abort cancels an upload: its parts are deleted.
func (s *Service) abort(w http.ResponseWriter, r *http.Request) {
	p, err := caller(r)
	if err != nil {
		s.fail(w, r, "abort", err)
		return
	}
	u, err := s.resolve(r.Context(), p, r.URL.Query().Get("key"), r.PathValue("uploadId"))
	if err != nil {
		s.fail(w, r, "abort", err)
		return
	}
	if err := s.terminate(context.WithoutCancel(r.Context()), u); err != nil {
		s.fail(w, r, "AbortMultipartUpload", err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// terminate reports upload.terminated, aborts the multipart upload and
// deletes the record.
func (s *Service) terminate(ctx context.Context, u *upload) error {
	if s.o.Lifecycle != nil {
		if err := s.o.Lifecycle.Terminating(ctx, s.info(u.rel, u.rec, u.rec.Size)); err != nil {
			return err
		}
	}
	_, err := s.o.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(u.key), UploadId: aws.String(u.rec.UploadID)})
	if err != nil && storeerr.HTTPStatus(err) != http.StatusNotFound {
		return err
	}
	// Gone (S3: 404) or aborted, the upload may have been completed (on
	// another instance, whose record this one had cached; MinIO answers
	// the abort of a completed upload with success). A completed upload's
	// object stays (the key is this upload's alone), and the caller must
	// not be told it was cancelled.
	_, herr := s.o.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(u.key)})
	if herr == nil {
		if derr := s.deleteRecord(ctx, u.rel); derr != nil {
			s.log.WarnContext(ctx, "direct upload: record not deleted", "key", u.key, "error", derr.Error())
		}
		return errorf(http.StatusConflict, "ERR_UPLOAD_FINISHED", "the upload was completed; it can no longer be cancelled")
	}
	if storeerr.HTTPStatus(herr) != http.StatusNotFound {
		return herr
	}
	s.m.uploads.WithLabelValues("aborted").Inc()
	return s.deleteRecord(ctx, u.rel)
}

// abortQuietly undoes a creation that failed halfway, or an upload the
// application rejected; the janitor removes what it leaves.
func (s *Service) abortQuietly(ctx context.Context, u *upload) {
	if _, err := s.o.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(u.key), UploadId: aws.String(u.rec.UploadID)}); err != nil && storeerr.HTTPStatus(err) != http.StatusNotFound {
		s.log.WarnContext(ctx, "direct upload: abort failed; the janitor retries", "key", u.key, "error", err.Error())
		return
	}
	if err := s.deleteRecord(ctx, u.rel); err != nil {
		s.log.WarnContext(ctx, "direct upload: record not deleted", "key", u.key, "error", err.Error())
	}
}

// decodeBody reads a JSON body of at most limit bytes into v.
func decodeBody(r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "ERR_INVALID_BODY", "reading the body: %v", err)
	}
	if int64(len(body)) > limit {
		return errorf(http.StatusRequestEntityTooLarge, "ERR_BODY_TOO_LARGE", "the body may be at most %d bytes", limit)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(http.StatusBadRequest, "ERR_INVALID_BODY", "the body is not the expected JSON: %v", err)
	}
	return nil
}
