package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tusgate/tusgate/internal/bodylen"
	"github.com/tusgate/tusgate/internal/ietfdraft"
	"github.com/tusgate/tusgate/internal/lockscope"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/tuserror"
)

// CORS lists, on top of tusd's, the headers a browser page must be able to
// send and read: auth errors, retry hints, expiry, digests and the
// finished object's checksums.
const (
	corsAllowMethods  = "POST, HEAD, PATCH, OPTIONS, GET, DELETE"
	corsAllowHeaders  = "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, Content-Type, Content-Disposition, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Incomplete, Upload-Complete, Upload-Draft-Interop-Version, Upload-Checksum, Content-Digest, Repr-Digest, Want-Repr-Digest"
	corsExposeHeaders = "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, Tus-Extension, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Incomplete, Upload-Complete, Upload-Draft-Interop-Version, Upload-Limit, Upload-Expires, Tus-Checksum-Algorithm, WWW-Authenticate, Retry-After, Upload-Object-Checksum, Upload-Object-SHA256, Repr-Digest"
)

// cors answers cross-origin requests for the upload routes. It runs before
// authentication so that every answer, errors included, carries the CORS
// headers a page needs to read it. tusd's own CORS handling is switched off
// because it would only cover the answers tusd itself writes.
func cors(origins []string, behindProxy bool, next http.Handler) http.Handler {
	any := slices.Contains(origins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !any && !slices.Contains(origins, origin) {
			if origin == requestOrigin(r, behindProxy) {
				next.ServeHTTP(w, r)
				return
			}
			tuserror.Write(w, r, http.StatusForbidden, "ERR_ORIGIN_NOT_ALLOWED",
				"this origin may not upload here; the operator can allow it with --cors-origins")
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", "86400")
		} else {
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		next.ServeHTTP(w, r)
	})
}

// requestOrigin is the origin the request was addressed to.
func requestOrigin(r *http.Request, behindProxy bool) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if behindProxy {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
		if h := r.Header.Get("X-Forwarded-Host"); h != "" {
			host = h
		}
	}
	host = strings.TrimSuffix(host, map[string]string{"http": ":80", "https": ":443"}[scheme])
	return scheme + "://" + host
}

// maxConcatParts bounds the uploads one Upload-Concat may name: tusd
// accepts any number, duplicates included, which turns one small request
// into thousands of store calls and writes up to --max-size.
const maxConcatParts = 100

// isDraft reports whether r is an IETF-draft request: one of the interop
// versions tusd knows (3 to 6) or internal/ietfdraft serves (7 and 8).
func isDraft(enabled bool, r *http.Request) bool {
	switch r.Header.Get("Upload-Draft-Interop-Version") {
	case "3", "4", "5", "6":
		return enabled
	}
	return enabled && ietfdraft.Version(r) != ""
}

// checkRequestHeaders refuses, before tusd sees them:
//   - IETF-draft creation requests whose Content-Type or
//     Content-Disposition tusd could not parse (tusd answers those with a
//     500 carrying the parser's message);
//   - Upload-Metadata sent more than once;
//   - Upload-Concat naming more than maxConcatParts uploads, or one upload
//     twice (compared as the upload IDs tusd resolves under basePath).
func checkRequestHeaders(draftEnabled bool, basePath string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && isDraft(draftEnabled, r) {
			for _, name := range []string{"Content-Type", "Content-Disposition"} {
				if v := r.Header.Get(name); v != "" {
					if _, _, err := mime.ParseMediaType(v); err != nil {
						tuserror.Write(w, r, http.StatusBadRequest, "ERR_INVALID_HEADER", name+" is malformed")
						return
					}
				}
			}
		}
		if len(r.Header.Values("Upload-Metadata")) > 1 {
			tuserror.Write(w, r, http.StatusBadRequest, "ERR_INVALID_METADATA", "send Upload-Metadata once")
			return
		}
		if list, ok := strings.CutPrefix(r.Header.Get("Upload-Concat"), "final;"); ok {
			ids := concatIDs(list, basePath)
			if len(ids) > maxConcatParts {
				tuserror.Write(w, r, http.StatusBadRequest, "ERR_INVALID_CONCAT", fmt.Sprintf("Upload-Concat may name at most %d uploads", maxConcatParts))
				return
			}
			seen := make(map[string]bool, len(ids))
			for _, id := range ids {
				if id == "" {
					continue // tusd answers 404 for the whole list
				}
				if seen[id] {
					tuserror.Write(w, r, http.StatusBadRequest, "ERR_INVALID_CONCAT", "Upload-Concat names an upload twice")
					return
				}
				seen[id] = true
			}
		}
		next.ServeHTTP(w, r)
	})
}

// concatIDs resolves the list of an "Upload-Concat: final;<list>" header to
// upload IDs the way tusd does (parseConcat and extractIDFromURL in its
// pkg/handler/unrouted_handler.go): the list is split at spaces and empty
// names are skipped; a name's ID is what follows the first occurrence of
// basePath, without leading or trailing slashes. So scheme, host and
// whatever precedes the base path do not matter: https://a.example/files/x/,
// /files/x and /files//x all name x. A name without the base path, which
// tusd answers with 404, gives "".
func concatIDs(list, basePath string) []string {
	var ids []string
	for name := range strings.SplitSeq(list, " ") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		_, id, ok := strings.Cut(name, basePath)
		if !ok {
			ids = append(ids, "")
			continue
		}
		ids = append(ids, strings.Trim(id, "/"))
	}
	return ids
}

// recoverPanics turns a panic in a handler into a 500 (423 on HEAD, by the
// guard) and logs it, so one bad request never takes the server down.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic while handling request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				tuserror.Write(w, r, http.StatusInternalServerError, "ERR_INTERNAL_SERVER_ERROR", "internal error; retry later")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// guard rewrites server errors on their way out:
//   - HEAD never answers 5xx but 423 Locked with Retry-After: tus-js-client
//     treats any other failed resume HEAD as "upload gone" and starts over
//     from byte 0. The exception is a storage failure that retrying cannot
//     clear (safestore.ErrStorageFailed, marked by safestore.PermanentHeader,
//     which the guard removes): it stays a 500 without Retry-After, since
//     resuming cannot help;
//   - 503 and 423 always carry Retry-After;
//   - tusd's catch-all 500 body, which carries the raw error text, is
//     replaced by a generic message (the raw error is in the log);
//   - tusd's 400 ERR_UPLOAD_INTERRUPTED (another request took the upload's
//     lock, or the lock's lease was lost) becomes 503 with Retry-After:
//     nothing is wrong with the request, and tus-js-client does not retry
//     a 400.
func guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := &guardWriter{ResponseWriter: w, head: r.Method == http.MethodHead}
		next.ServeHTTP(g, r)
		if g.pending != 0 {
			g.flush(nil)
		}
	})
}

type guardWriter struct {
	http.ResponseWriter
	head    bool
	pending int  // a 5xx status held back until its body is known
	written bool // the final status line went out
	swallow bool // the original body of a rewritten answer is dropped
}

var (
	internalErrPrefix    = []byte("ERR_INTERNAL_SERVER_ERROR")
	interruptedErrPrefix = []byte("ERR_UPLOAD_INTERRUPTED")
)

func (g *guardWriter) WriteHeader(code int) {
	switch {
	case code < 200:
		g.ResponseWriter.WriteHeader(code)
	case g.written || g.pending != 0:
	case code >= 500 || code == http.StatusBadRequest:
		g.pending = code
	default:
		g.written = true
		g.ResponseWriter.WriteHeader(code)
	}
}

func (g *guardWriter) Write(p []byte) (int, error) {
	if g.pending != 0 {
		g.flush(p)
		return len(p), nil
	}
	if g.swallow {
		return len(p), nil
	}
	g.written = true
	return g.ResponseWriter.Write(p)
}

func (g *guardWriter) flush(body []byte) {
	code := g.pending
	g.pending = 0
	g.written = true
	h := g.Header()
	permanent := code == http.StatusInternalServerError && h.Get(safestore.PermanentHeader) != ""
	h.Del(safestore.PermanentHeader)
	if code == http.StatusBadRequest {
		if !bytes.HasPrefix(body, interruptedErrPrefix) {
			g.ResponseWriter.WriteHeader(code)
			if len(body) > 0 {
				_, _ = g.ResponseWriter.Write(body)
			}
			return
		}
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusInternalServerError && (len(body) == 0 || bytes.HasPrefix(body, internalErrPrefix)) {
		body = []byte("ERR_INTERNAL_SERVER_ERROR: internal error; retry later\n")
		g.swallow = true
	}
	if g.head {
		if !permanent {
			code = http.StatusLocked
		}
		body = nil
		g.swallow = true
	}
	if (code == http.StatusServiceUnavailable || code == http.StatusLocked) && h.Get("Retry-After") == "" {
		h.Set("Retry-After", tuserror.RetryAfter)
	}
	if g.swallow {
		h.Del("Content-Length")
		if len(body) > 0 {
			h.Set("Content-Length", strconv.Itoa(len(body)))
		}
	}
	g.ResponseWriter.WriteHeader(code)
	if len(body) > 0 {
		_, _ = g.ResponseWriter.Write(body)
	}
}

// Flush sends buffered data (download streaming).
func (g *guardWriter) Flush() {
	if f, ok := g.ResponseWriter.(http.Flusher); ok && g.pending == 0 {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController (used by tusd for read deadlines)
// reach the connection.
func (g *guardWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// accessLog logs one line per request: never headers or query strings, which
// may carry credentials.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		level := slog.LevelInfo
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
			level = slog.LevelDebug
		}
		log.Log(r.Context(), level, "request",
			"method", r.Method, "path", r.URL.Path, "status", rec.status,
			"bytes_in", r.ContentLength, "duration", time.Since(start).Round(time.Microsecond),
			"remote", r.RemoteAddr, "request_id", truncate(r.Header.Get("X-Request-ID"), 64))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// inflight counts requests being handled, so shutdown can wait for them after
// interrupting them.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{}
}

func (f *inflight) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.n++
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			f.n--
			if f.n == 0 && f.idle != nil {
				close(f.idle)
				f.idle = nil
			}
			f.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// wait returns a channel closed when no request is in flight.
func (f *inflight) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	return f.idle
}

// lockScope gives each upload request a lockscope, in which the store
// records the upload locks the request holds.
func lockScope(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(lockscope.New(r.Context())))
	})
}

// bodyLength passes the length of upload bodies (bodylen) to the store
// wrapper, which refuses a body that would take an upload past its size
// limit before reading it, and to the S3 write path, which sizes its parts
// by it.
func bodyLength(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength >= 0 && (r.Method == http.MethodPatch || r.Method == http.MethodPost) {
			r = r.WithContext(bodylen.With(r.Context(), r.ContentLength))
		}
		next.ServeHTTP(w, r)
	})
}
