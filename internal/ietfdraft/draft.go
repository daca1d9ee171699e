// Package ietfdraft serves interop versions 7 and 8 of the IETF
// resumable-upload draft (draft-ietf-httpbis-resumable-upload -06 to -08,
// and -09 onward), which tusd's handler does not know: it serves versions
// 3 to 6 and treats any other request as tus 1.0.
//
// The handler speaks the draft over the same store tusd uses: the
// composer safestore wraps (ownership on every upload ID, size limits on
// every write, lifecycle events, error mapping) and its locker, with the
// same contexts and body handling as tusd's handler (call.go), and the
// server's pre-create hook (metadata, owner binding, quotas). So a draft
// upload is a tus upload: either protocol can resume it.
//
// Served, with the draft's names:
//
//   - upload creation: POST to the base path with Upload-Complete, an
//     optional Upload-Length; a 104 (Upload Resumption Supported) with
//     Location and Upload-Limit before the body is read; 201 with
//     Location, Upload-Limit, Upload-Offset and Upload-Complete;
//   - offset retrieval: HEAD (or GET, with the interop version) of the
//     upload: 204 with Upload-Offset, Upload-Complete, Upload-Length if
//     known, Upload-Limit, Cache-Control: no-store;
//   - upload append: PATCH with Content-Type: application/partial-upload,
//     Upload-Offset and Upload-Complete; 204 with Upload-Offset and
//     Upload-Complete;
//   - upload cancellation: DELETE, 204;
//   - OPTIONS: Upload-Limit;
//   - integrity digests (RFC 9530): Content-Digest on creations and
//     appends, Repr-Digest at creation and on HEAD of finished uploads
//     (digest.go).
//
// Mismatching offsets answer 409 with the problem type
// mismatching-upload-offset, inconsistent lengths 400 with
// inconsistent-upload-length (RFC 9457). docs/protocol.md lists every
// requirement of the draft and how it is met.
package ietfdraft

import (
	"context"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/objsha"
)

// Versions are the interop versions this package serves.
var Versions = []string{"7", "8"}

// Version returns the interop version r asks for if this package serves
// it, and "" otherwise.
func Version(r *http.Request) string {
	v, ok := item(r.Header, "Upload-Draft-Interop-Version")
	if !ok {
		return ""
	}
	for _, s := range Versions {
		if v == s {
			return v
		}
	}
	return ""
}

// Route sends the requests Version accepts to draft, and the rest to next
// (tusd's handler).
func Route(draft, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Version(r) != "" {
			draft.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Config configures a Handler.
type Config struct {
	// Composer is the store as tusd sees it (safestore's), with a locker.
	Composer *handler.StoreComposer
	// BasePath is the URL path of uploads, with leading and trailing
	// slashes; requests reach the handler with it stripped.
	BasePath string
	// MaxSize is the largest upload (--max-size).
	MaxSize int64
	// BehindProxy trusts X-Forwarded-Host, X-Forwarded-Proto and Forwarded
	// for the upload URLs (--behind-proxy).
	BehindProxy bool
	// NetworkTimeout is how long a request body may stall.
	NetworkTimeout time.Duration
	// SaveReserve is how long a store may go on after its request ended,
	// to save what it received.
	SaveReserve time.Duration
	// PreCreate is tusd's pre-create hook, called as tusd calls it.
	PreCreate func(handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error)
	// TTL is the idle time after which an unfinished upload expires (0:
	// never); ExpiresAt tells when one does (see lifecycle.ExpiresAt).
	TTL       time.Duration
	ExpiresAt func(ctx context.Context, id string) (time.Time, bool, error)
	Log       *slog.Logger
}

// Handler serves the draft's interop versions 7 and 8.
type Handler struct{ cfg Config }

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.NetworkTimeout <= 0 {
		cfg.NetworkTimeout = time.Minute
	}
	return &Handler{cfg: cfg}
}

// ServeHTTP answers a request whose interop version Version accepts. The
// path is the upload ID, or empty for the base path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Upload-Draft-Interop-Version", Version(r))
	hd.Set("X-Content-Type-Options", "nosniff")
	id := strings.Trim(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodOptions:
		h.options(w)
	case id == "" && r.Method == http.MethodPost:
		h.create(w, r)
	case id == "":
		hd.Set("Allow", "POST, OPTIONS")
		h.fail(w, r, handler.NewError("ERR_METHOD_NOT_ALLOWED", "create uploads with POST", http.StatusMethodNotAllowed))
	case r.Method == http.MethodHead || r.Method == http.MethodGet:
		h.offset(w, r, id)
	case r.Method == http.MethodPatch:
		h.append(w, r, id)
	case r.Method == http.MethodDelete:
		h.cancel(w, r, id)
	default:
		hd.Set("Allow", "HEAD, GET, PATCH, DELETE, OPTIONS")
		h.fail(w, r, handler.NewError("ERR_METHOD_NOT_ALLOWED", "an upload takes HEAD, PATCH and DELETE", http.StatusMethodNotAllowed))
	}
}

// options announces the limits of uploads created here.
func (h *Handler) options(w http.ResponseWriter) {
	w.Header().Set("Upload-Limit", h.limits(nil, time.Time{}))
	w.Header().Set("Accept-Patch", partialUpload)
	w.WriteHeader(http.StatusNoContent)
}

// partialUpload is the media type of an append's content.
const partialUpload = "application/partial-upload"

// limits is the Upload-Limit value: min-size=0 (any upload may be
// resumed), max-size (--max-size), the append limits (a request may carry
// any part of an upload: from nothing to all of --max-size) and max-age,
// the lifetime left: the TTL for a new upload (info nil), the time until
// expires for an unfinished one.
func (h *Handler) limits(info *handler.FileInfo, expires time.Time) string {
	l := "min-size=0"
	if h.cfg.MaxSize > 0 {
		l += ",max-size=" + strconv.FormatInt(h.cfg.MaxSize, 10)
	}
	l += ",min-append-size=0"
	if h.cfg.MaxSize > 0 {
		l += ",max-append-size=" + strconv.FormatInt(h.cfg.MaxSize, 10)
	}
	switch {
	case info == nil && h.cfg.TTL > 0:
		l += ",max-age=" + strconv.FormatInt(int64(h.cfg.TTL/time.Second), 10)
	case info != nil && !expires.IsZero():
		l += ",max-age=" + strconv.FormatInt(max(int64(time.Until(expires)/time.Second), 0), 10)
	}
	return l
}

// expires is when the unfinished upload id expires, or zero.
func (h *Handler) expires(ctx context.Context, id string, info handler.FileInfo) time.Time {
	if h.cfg.ExpiresAt == nil || finished(info) {
		return time.Time{}
	}
	at, ok, err := h.cfg.ExpiresAt(ctx, id)
	if err != nil {
		h.cfg.Log.DebugContext(ctx, "cannot tell when an upload expires", "id", id, "error", err.Error())
	}
	if !ok || err != nil {
		return time.Time{}
	}
	return at
}

// finished reports whether all of info's bytes are stored: tusgate
// completes an upload when its offset reaches its length.
func finished(info handler.FileInfo) bool {
	return !info.SizeIsDeferred && info.Offset == info.Size
}

// fail answers with a store's or the handler's error (tusd's format for
// handler.Error, as the tus answers are).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Method != http.MethodHead && (errors.Is(err, objsha.ErrReprMismatch) || errors.Is(err, objsha.ErrReprUnverified)) {
		// A complete upload that is not finished (see digest.go).
		reprDigestProblem(w, err)
		return
	}
	var e handler.Error
	if !errors.As(err, &e) {
		h.cfg.Log.ErrorContext(r.Context(), "IETF-draft request failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
		e = handler.NewError("ERR_INTERNAL_SERVER_ERROR", err.Error(), http.StatusInternalServerError)
	}
	hd := w.Header()
	for k, v := range e.HTTPResponse.Header {
		hd.Set(k, v)
	}
	if (r.Method == http.MethodPost || r.Method == http.MethodPatch) && hd.Get("Upload-Complete") == "" {
		// This answer does not come from processing a complete upload.
		hd.Set("Upload-Complete", "?0")
	}
	if e.HTTPResponse.StatusCode == http.StatusRequestEntityTooLarge && hd.Get("Upload-Limit") == "" {
		hd.Set("Upload-Limit", h.limits(nil, time.Time{}))
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(e.HTTPResponse.StatusCode)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(e.HTTPResponse.Body)))
	w.WriteHeader(e.HTTPResponse.StatusCode)
	_, _ = w.Write([]byte(e.HTTPResponse.Body))
}

// fileMeta is what tusd's version-6 handling takes from a creation's
// headers: the media type as filetype, Content-Disposition's filename.
func fileMeta(r *http.Request) (handler.MetaData, error) {
	meta := handler.MetaData{}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return nil, handler.NewError("ERR_INVALID_HEADER", "Content-Type is malformed", http.StatusBadRequest)
		}
		meta["filetype"] = mt
	}
	if cd := r.Header.Get("Content-Disposition"); cd != "" {
		_, params, err := mime.ParseMediaType(cd)
		if err != nil {
			return nil, handler.NewError("ERR_INVALID_HEADER", "Content-Disposition is malformed", http.StatusBadRequest)
		}
		if params["filename"] != "" {
			meta["filename"] = params["filename"]
		}
	}
	return meta, nil
}

var (
	reForwardedHost  = regexp.MustCompile(`host="?([^;"]+)`)
	reForwardedProto = regexp.MustCompile(`proto=(https?)`)
)

// url is the upload's absolute URL, built as tusd builds it.
func (h *Handler) url(r *http.Request, id string) string {
	proto, host := "http", r.Host
	if r.TLS != nil {
		proto = "https"
	}
	if h.cfg.BehindProxy {
		if v := r.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
		if v := r.Header.Get("X-Forwarded-Proto"); v == "http" || v == "https" {
			proto = v
		}
		if v := r.Header.Get("Forwarded"); v != "" {
			if m := reForwardedHost.FindStringSubmatch(v); len(m) == 2 {
				host = m[1]
			}
			if m := reForwardedProto.FindStringSubmatch(v); len(m) == 2 {
				proto = m[1]
			}
		}
	}
	host = strings.TrimSuffix(host, map[string]string{"http": ":80", "https": ":443"}[proto])
	return proto + "://" + host + h.cfg.BasePath + id
}
