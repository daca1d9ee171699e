package direct

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/internal/metadata"
)

// params presigns a single PUT of a small file (GET /s3/params): the URL
// binds the Content-Length given as ?size= (required), and the headers
// that give the object its type, disposition, owner metadata, storage
// class and encryption, which the browser must send as they are.
//
// tusgate never sees the PUT itself. Its record (for quotas while the URL
// is valid), upload.created and upload.finished are stored at signing;
// upload.finished is delivered once the object exists, and dropped if it
// never does. The pre-finish URL cannot be asked before S3 stores the
// object, so with --pre-finish-url single PUTs are refused.
func (s *Service) params(w http.ResponseWriter, r *http.Request) {
	p, err := caller(r)
	if err != nil {
		s.fail(w, r, "params", err)
		return
	}
	if s.o.PreFinish {
		s.fail(w, r, "params", errorf(http.StatusForbidden, "ERR_MULTIPART_REQUIRED", "uploads on this server need the application's approval before they are stored; use multipart uploads (POST /s3/multipart)"))
		return
	}
	q := r.URL.Query()
	v := q.Get("size")
	if v == "" {
		s.fail(w, r, "params", errorf(http.StatusBadRequest, "ERR_SIZE_REQUIRED", "send the file's size in bytes as ?size=; the URL binds it"))
		return
	}
	size, err := strconv.ParseInt(v, 10, 64)
	if err != nil || size < 0 {
		s.fail(w, r, "params", errorf(http.StatusBadRequest, "ERR_INVALID_SIZE", "size must be a whole number of bytes, 0 or more"))
		return
	}
	if size > MaxPartSize {
		s.fail(w, r, "params", errorf(http.StatusRequestEntityTooLarge, "ERR_USE_MULTIPART", "a single PUT holds at most %d bytes; use a multipart upload", int64(MaxPartSize)))
		return
	}
	client := map[string]any{}
	for k, vs := range q {
		if name, ok := strings.CutPrefix(k, "metadata["); ok && strings.HasSuffix(name, "]") && len(vs) > 0 {
			client[strings.TrimSuffix(name, "]")] = vs[0]
		}
	}
	meta, err := s.cleanMeta(p, q.Get("filename"), q.Get("type"), client)
	if err != nil {
		s.fail(w, r, "params", err)
		return
	}
	owner := hooks.OwnerFolder(p)
	if err := s.checkNew(size); err != nil {
		s.fail(w, r, "params", err)
		return
	}
	rel := owner + "/" + newName()
	key := s.o.Prefix + rel
	in := s.putInput(key, size, meta)
	signed, err := s.o.Presign.PresignPutObject(r.Context(), in, s.presignOptions)
	if err != nil {
		s.fail(w, r, "PresignPutObject", err)
		return
	}
	err = s.o.Quota.Admit(r.Context(), owner, size, func() error {
		return s.startPut(context.WithoutCancel(r.Context()), rel, key, size, meta)
	})
	if err != nil {
		s.fail(w, r, "params", err)
		return
	}
	s.m.signed.WithLabelValues("put").Inc()
	s.m.uploads.WithLabelValues("created").Inc()
	writeJSON(w, http.StatusOK, signature{
		Method: http.MethodPut, URL: signed.URL, Expires: int64(s.o.URLExpiry / time.Second),
		Fields: map[string]string{}, Headers: browserHeaders(signed), Key: key, Bucket: s.o.Bucket,
	})
}

// startPut records a new single-PUT upload and reports its creation and
// (a single PUT cannot be approved later) its finishing; if either event
// fails, the record is deleted.
func (s *Service) startPut(ctx context.Context, rel, key string, size int64, meta map[string]string) error {
	now := s.clock.Now().UTC()
	rec := &record{Version: 1, Kind: kindPut, Key: key, Size: size, Meta: meta, Created: now, Expires: now.Add(s.o.URLExpiry)}
	if err := s.writeRecord(ctx, rel, rec); err != nil {
		return err
	}
	if s.o.Lifecycle == nil {
		return nil
	}
	info := s.info(rel, rec, size)
	err := s.o.Lifecycle.Created(ctx, info)
	if err == nil {
		info.Offset = size
		err = s.o.Lifecycle.Finishing(ctx, info)
	}
	if err != nil {
		_ = s.deleteRecord(ctx, rel)
	}
	return err
}

// putInput is the PutObject a single PUT's URL is signed for.
func (s *Service) putInput(key string, size int64, meta map[string]string) *s3.PutObjectInput {
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.o.Bucket), Key: aws.String(key), ContentLength: aws.Int64(size),
		Metadata: metadata.ForS3(meta),
	}
	// The URL stores the object once: replayed until it expires, it must
	// not replace bytes that upload.finished reported (S3: 412).
	in.IfNoneMatch = aws.String("*")
	if size == 0 {
		in.ChecksumSHA256 = aws.String(emptySHA256)
	}
	if ft := meta["filetype"]; ft != "" {
		in.ContentType = aws.String(ft)
	}
	if cd := metadata.ContentDisposition(meta); cd != "" {
		in.ContentDisposition = aws.String(cd)
	}
	if s.o.StorageClass != "" {
		in.StorageClass = types.StorageClass(s.o.StorageClass)
	}
	if s.o.SSE != "" {
		in.ServerSideEncryption = types.ServerSideEncryption(s.o.SSE)
		if s.o.SSEKMSKeyID != "" {
			in.SSEKMSKeyId = aws.String(s.o.SSEKMSKeyID)
		}
	}
	return in
}
