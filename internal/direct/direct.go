// Package direct lets browsers upload straight to S3 with presigned URLs
// that tusgate signs after checking the caller's token: the routes that
// Companion serves under /s3/ (so that @uppy/aws-s3 works unchanged), with
// the key chosen by tusgate, ownership checked on every request, the same
// size limits and quotas as tus uploads, and the same lifecycle events.
//
// S3 carries the bytes; tusgate only signs. What tusgate must know about an
// upload it keeps in S3 too, so that any instance can answer: a small
// record per upload under <prefix>/.tusgate/direct/<owner>/<name>, written
// at creation and deleted when the upload is completed or aborted. The
// object key is <prefix>/<owner>/<name>, <name> being "d-" and 128 random
// bits in hex, so that a direct upload is told from a tus upload by its key
// alone (tus uploads' names are 32 hex digits).
//
// A request naming an upload (?key= and the uploadId in the path) is served
// only if the key lies in the caller's owner folder, has the form tusgate
// gives keys, and its record names that uploadId. Anything else answers
// 404, so that other users' uploads are not revealed.
package direct

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/hooks/oidc"
	"github.com/tusgate/tusgate/internal/clock"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/internal/tuserror"
)

// S3's limits on multipart uploads.
const (
	MaxParts    = 10000
	MaxPartSize = 5 << 30 // also the largest single PUT
	MinPartSize = 5 << 20 // every part but the last
)

// S3API is what the routes and the janitor ask S3 directly.
type S3API interface {
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// Writer creates multipart uploads and writes records. The S3 backend's
// guarded client is one: it adds the object's metadata, Content-Disposition,
// storage class and encryption as for tus uploads.
type Writer interface {
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Lifecycle reports events and asks for approval, as for tus uploads;
// *lifecycle.Lifecycle is one. Finishing may return a *safestore.Rejection.
type Lifecycle interface {
	Created(ctx context.Context, info handler.FileInfo) error
	Finishing(ctx context.Context, info handler.FileInfo) error
	Terminating(ctx context.Context, info handler.FileInfo) error
}

// Options configure New.
type Options struct {
	S3      S3API
	Writer  Writer
	Presign *s3.PresignClient
	Bucket  string
	// Prefix is the object prefix, "" or ending in "/".
	Prefix string
	// URLExpiry is how long presigned URLs are valid.
	URLExpiry time.Duration
	// MaxSize is the largest upload (--max-size).
	MaxSize int64
	// MaxMetadataSize bounds the metadata of an upload (keys plus values).
	MaxMetadataSize int
	// Limits are the per-owner quotas; TusUsage counts the owner's tus
	// uploads (direct uploads are counted here and added).
	Limits   quota.Limits
	TusUsage quota.Counter
	// Quota admits new uploads under Limits (nil: no quota check). Its
	// Counter is Service.Usage, and it is shared with the tus uploads'
	// creations, so that the two take turns per owner.
	Quota *quota.Gate
	// Object settings for single PUTs, whose headers the browser sends:
	// storage class and server-side encryption (as --s3-*).
	StorageClass, SSE, SSEKMSKeyID string
	// PreFinish tells that uploads must be approved before they are
	// finished: single PUTs cannot be, so /s3/params is refused.
	PreFinish  bool
	Lifecycle  Lifecycle // nil: no events
	Clock      clock.Clock
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Service serves the direct-upload routes and answers for direct uploads
// to the lifecycle (events, expiry) and to quotas.
type Service struct {
	o       Options
	log     *slog.Logger
	clock   clock.Clock
	records *recordCache
	m       metrics
}

// New checks o and builds the service.
func New(o Options) (*Service, error) {
	if o.S3 == nil || o.Writer == nil || o.Presign == nil || o.Bucket == "" {
		return nil, errors.New("direct: S3, Writer, Presign and Bucket are required")
	}
	if o.URLExpiry <= 0 {
		return nil, errors.New("direct: URLExpiry must be positive")
	}
	if o.Limits.Enabled() && o.Quota == nil {
		return nil, errors.New("direct: Limits need a Quota gate to check them at creation")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{o: o, log: o.Log.With("component", "direct"), clock: o.Clock, records: newRecordCache(4096), m: m}, nil
}

// Handler serves the routes under /s3/. It expects the caller in the
// request context (hooks.Middleware runs before it) and answers OPTIONS
// itself.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /s3/multipart", s.create)
	mux.HandleFunc("GET /s3/multipart/{uploadId}/{partNumber}", s.signPart)
	mux.HandleFunc("GET /s3/multipart/{uploadId}/batch", s.signBatch)
	mux.HandleFunc("GET /s3/multipart/{uploadId}", s.listParts)
	mux.HandleFunc("POST /s3/multipart/{uploadId}/complete", s.complete)
	mux.HandleFunc("DELETE /s3/multipart/{uploadId}", s.abort)
	mux.HandleFunc("GET /s3/params", s.params)
	mux.HandleFunc("/s3/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeError(w, r, http.StatusNotFound, "ERR_NOT_FOUND", "no such route; see docs/direct-uploads.md")
	})
	return mux
}

// apiError is an answer to a client mistake or a refusal.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// errNotFound answers every request for an upload the caller may not see.
var errNotFound = errorf(http.StatusNotFound, "ERR_UPLOAD_NOT_FOUND", "no such upload")

// writeError answers with a JSON body {"error": code, "message": msg},
// which @uppy/aws-s3 shows.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", tuserror.RetryAfter)
	}
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // URLs keep their "&"
	_ = enc.Encode(v)
	b := buf.Bytes()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// fail answers err: an *apiError as it is, a *safestore.Rejection with the
// application's message, a handler.Error with its status, anything else as
// a storage failure (503 with Retry-After, or 500 when retrying cannot
// help), logged.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	var (
		ae  *apiError
		rej *safestore.Rejection
		he  handler.Error
	)
	switch {
	case errors.As(err, &ae):
		writeError(w, r, ae.status, ae.code, ae.message)
	case errors.As(err, &rej):
		writeError(w, r, rej.Err.HTTPResponse.StatusCode, rej.Err.ErrorCode, rej.Err.Message)
	case errors.As(err, &he):
		for k, v := range he.HTTPResponse.Header {
			if k == "Retry-After" {
				w.Header().Set(k, v)
			}
		}
		writeError(w, r, he.HTTPResponse.StatusCode, he.ErrorCode, he.Message)
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		writeError(w, r, http.StatusServiceUnavailable, "ERR_CANCELLED", "the request was cancelled")
	default:
		permanent := storeerr.IsPermanent(err)
		s.log.ErrorContext(r.Context(), "direct upload: storage failed", "op", op, "permanent", permanent, "error", err.Error())
		if permanent {
			writeError(w, r, http.StatusInternalServerError, "ERR_STORAGE_FAILED", "the storage refused this request; the operator has to look at the log")
			return
		}
		writeError(w, r, http.StatusServiceUnavailable, "ERR_STORAGE_UNAVAILABLE", "the storage is unavailable; retry later")
	}
}

// caller returns the authenticated caller; the middleware guarantees one.
func caller(r *http.Request) (*oidc.Principal, error) {
	p := hooks.PrincipalFrom(r.Context())
	if p == nil {
		return nil, errorf(http.StatusUnauthorized, "ERR_UNAUTHENTICATED", "authentication required")
	}
	return p, nil
}

// nameRE matches the names tusgate gives direct uploads.
var nameRE = regexp.MustCompile(`^d-[0-9a-f]{32}$`)

// newName returns a fresh upload name.
func newName() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "d-" + hex.EncodeToString(b[:])
}

// IsDirectID reports whether a tus-style upload ID (<owner>/<name>+<upload
// id>, as events carry it) names a direct upload.
func IsDirectID(id string) bool {
	objectID, _, _ := strings.Cut(id, "+")
	_, name, ok := strings.Cut(objectID, "/")
	return ok && nameRE.MatchString(name)
}

// eventID is the upload ID events carry: as for tus uploads in S3, the key
// below the prefix, "+" and the multipart upload ID ("" for a single PUT).
func eventID(rel, uploadID string) string {
	if uploadID == "" {
		return rel
	}
	return rel + "+" + uploadID
}

// upload is a direct upload a request names, after the ownership check.
type upload struct {
	owner string // owner folder
	rel   string // key below the prefix: <owner>/<name>
	key   string // object key
	rec   *record
}

// resolve checks that the caller owns the upload named by key and
// uploadID: the key must be <prefix><caller's folder>/<name>, and the
// upload's record must name uploadID. Anything else is errNotFound.
func (s *Service) resolve(ctx context.Context, p *oidc.Principal, key, uploadID string) (*upload, error) {
	rel, ok := s.ownKey(p, key)
	if !ok || uploadID == "" {
		return nil, errNotFound
	}
	owner, _, _ := strings.Cut(rel, "/")
	rec, err := s.readRecord(ctx, rel)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.Kind != kindMultipart || rec.UploadID != uploadID || rec.Key != key {
		return nil, errNotFound
	}
	return &upload{owner: owner, rel: rel, key: key, rec: rec}, nil
}

// ownKey returns key below the prefix if it is a direct upload's key in
// the caller's folder.
func (s *Service) ownKey(p *oidc.Principal, key string) (rel string, ok bool) {
	rel, ok = strings.CutPrefix(key, s.o.Prefix)
	if !ok {
		return "", false
	}
	owner, name, ok := strings.Cut(rel, "/")
	if !ok || owner != hooks.OwnerFolder(p) || !nameRE.MatchString(name) {
		return "", false
	}
	return rel, true
}

// info describes an upload for the lifecycle, as tusd would a tus upload.
func (s *Service) info(rel string, rec *record, size int64) handler.FileInfo {
	info := handler.FileInfo{
		ID:       eventID(rel, rec.UploadID),
		Size:     size,
		MetaData: handler.MetaData(rec.Meta),
		Storage:  map[string]string{"Type": "s3store", "Bucket": s.o.Bucket, "Key": rec.Key},
	}
	if size < 0 {
		info.Size, info.SizeIsDeferred = 0, true
	}
	return info
}

// UseLifecycle sets where events go and approvals come from; call it
// before serving.
func (s *Service) UseLifecycle(l Lifecycle) { s.o.Lifecycle = l }
