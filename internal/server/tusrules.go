package server

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/tusgate/tusgate/internal/lastinfo"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/tuserror"
)

// tusVersion is the one tus version tusgate speaks.
const tusVersion = "1.0.0"

// offsetOctetStream is the media type of tus 1.0 upload data.
const offsetOctetStream = "application/offset+octet-stream"

// tusRules enforces the rules of the tus 1.0 core protocol and its
// creation extensions that tusd's handler does not
// (https://tus.io/protocols/resumable-upload), before tusd sees a request:
//
//   - HEAD, PATCH, POST and DELETE without "Tus-Resumable: 1.0.0" answer 412
//     with Tus-Version and are not processed. tusd checks every method but
//     GET and HEAD. OPTIONS (where the client should not send the header),
//     GET (downloads, which browsers open without it) and IETF-draft
//     requests keep their own rules;
//   - PATCH with any Content-Type but application/offset+octet-stream, or
//     none, answers 415 (tusd: 400), and so does a creation whose body has
//     another type (tusd ignores such a body and answers 201);
//   - a final upload (Upload-Concat: final;…) with Upload-Length answers
//     400: its length is the sum of its partial uploads' (tusd ignores it).
//
// On the way out, every 412 carries Tus-Version, and a 409 for a PATCH
// whose Upload-Offset does not match carries the upload's offset in
// Upload-Offset (tusd's carry neither).
//
// With concatUnfinished (the store keeps final uploads waiting for partial
// uploads, safestore.Options.Waiting), OPTIONS lists
// concatenation-unfinished, a creation of a final upload may name
// unfinished partial uploads, and HEAD of a final upload not assembled yet
// answers without Upload-Offset (the tus concatenation extension: its
// value is not defined until then).
//
// The method is the one tusd acts on, so X-HTTP-Method-Override counts.
func tusRules(draftEnabled, concatUnfinished bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isDraft(draftEnabled, r) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodOptions {
			if concatUnfinished {
				w = &headerHook{ResponseWriter: w, before: func(_ int, h http.Header) {
					if ext := h.Get("Tus-Extension"); ext != "" {
						h.Set("Tus-Extension", withExtension(ext, "concatenation", "concatenation-unfinished"))
					}
				}}
			}
			next.ServeHTTP(w, r)
			return
		}
		method := effectiveMethod(r)
		ctx := lastinfo.New(r.Context())
		if method == http.MethodPost && strings.HasPrefix(r.Header.Get("Upload-Concat"), "final;") {
			ctx = safestore.AllowUnfinishedPartials(ctx)
		}
		r = r.WithContext(ctx)
		w = &headerHook{ResponseWriter: w, before: func(status int, h http.Header) {
			switch {
			case status == http.StatusPreconditionFailed:
				h.Set("Tus-Version", tusVersion)
			case status == http.StatusConflict && method == http.MethodPatch:
				// tusd compared the request's offset with what the store
				// read under the upload's lock.
				if info, ok := lastinfo.Get(r.Context(), strings.Trim(r.URL.Path, "/")); ok {
					h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
				}
			case method == http.MethodHead && strings.HasPrefix(h.Get("Upload-Concat"), "final;") && h.Get("Upload-Offset") != h.Get("Upload-Length"):
				// A final upload waiting for partial uploads: its offset is
				// not defined until it is assembled.
				h.Del("Upload-Offset")
			}
		}}
		switch method {
		case http.MethodHead, http.MethodPatch, http.MethodPost, http.MethodDelete:
			if r.Header.Get("Tus-Resumable") != tusVersion {
				tuserror.Write(w, r, http.StatusPreconditionFailed, "ERR_UNSUPPORTED_VERSION",
					"this server speaks tus "+tusVersion+": send Tus-Resumable: "+tusVersion)
				return
			}
		}
		switch {
		case method == http.MethodPatch && !isOffsetOctetStream(r):
			tuserror.Write(w, r, http.StatusUnsupportedMediaType, "ERR_INVALID_CONTENT_TYPE",
				"upload data must be sent with Content-Type: "+offsetOctetStream)
			return
		case method == http.MethodPost && hasBody(r) && !isOffsetOctetStream(r):
			tuserror.Write(w, r, http.StatusUnsupportedMediaType, "ERR_INVALID_CONTENT_TYPE",
				"a creation request may carry upload data only with Content-Type: "+offsetOctetStream)
			return
		case method == http.MethodPost && strings.HasPrefix(r.Header.Get("Upload-Concat"), "final;") && r.Header.Get("Upload-Length") != "":
			tuserror.Write(w, r, http.StatusBadRequest, "ERR_INVALID_CONCAT",
				"a final upload's length is the sum of its partial uploads' lengths: send no Upload-Length with Upload-Concat: final")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withExtension returns the Tus-Extension list ext with add inserted
// after after (or at the end).
func withExtension(ext, after, add string) string {
	var out []string
	added := false
	for e := range strings.SplitSeq(ext, ",") {
		e = strings.TrimSpace(e)
		if e == add {
			return ext
		}
		out = append(out, e)
		if e == after {
			out = append(out, add)
			added = true
		}
	}
	if !added {
		out = append(out, add)
	}
	return strings.Join(out, ",")
}

// effectiveMethod is the method tusd acts on: a POST may name another one in
// X-HTTP-Method-Override.
func effectiveMethod(r *http.Request) string {
	if m := r.Header.Get("X-HTTP-Method-Override"); r.Method == http.MethodPost && m != "" {
		return m
	}
	return r.Method
}

// isOffsetOctetStream reports whether r's Content-Type is
// application/offset+octet-stream. Parameters and letter case are
// tolerated, and dropped for tusd, which compares the header verbatim.
func isOffsetOctetStream(r *http.Request) bool {
	v := r.Header.Get("Content-Type")
	if v == offsetOctetStream {
		return true
	}
	mt, _, err := mime.ParseMediaType(v)
	if err != nil || mt != offsetOctetStream {
		return false
	}
	r.Header.Set("Content-Type", offsetOctetStream)
	return true
}

// hasBody reports whether r carries content: a positive Content-Length, or
// a body of unknown length (chunked).
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

// headerHook calls before once, with the status and the headers, just
// before the final status line goes out, so that a middleware can adjust
// the headers of answers written further in.
type headerHook struct {
	http.ResponseWriter
	before func(status int, h http.Header)
	done   bool
}

func (w *headerHook) WriteHeader(status int) {
	if !w.done && status >= 200 {
		w.done = true
		w.before(status, w.Header())
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *headerHook) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends buffered data (download streaming).
func (w *headerHook) Flush() {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController (used by tusd for read deadlines)
// reach the connection.
func (w *headerHook) Unwrap() http.ResponseWriter { return w.ResponseWriter }
