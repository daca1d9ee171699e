package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/hooks/oidc"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/tuserror"
)

func serve(h http.Handler, method, target string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// tusdError writes an answer the way tusd's sendError does.
func tusdError(err handler.Error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := err.HTTPResponse
		for k, v := range resp.Header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Length", "999")
		w.WriteHeader(resp.StatusCode)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte(resp.Body))
		}
	})
}

func TestGuardHeadNeverAnswers5xx(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		h := guard(tusdError(handler.NewError("ERR_X", "boom", status)))
		w := serve(h, http.MethodHead, "/files/x", nil)
		if w.Code != http.StatusLocked || w.Header().Get("Retry-After") == "" || w.Body.Len() != 0 {
			t.Errorf("HEAD with %d: got %d Retry-After %q body %q", status, w.Code, w.Header().Get("Retry-After"), w.Body.String())
		}
	}
	// Non-5xx answers to HEAD pass unchanged.
	w := serve(guard(tusdError(handler.ErrNotFound)), http.MethodHead, "/files/x", nil)
	if w.Code != http.StatusNotFound {
		t.Fatalf("HEAD 404 became %d", w.Code)
	}
}

// keysDown is a token verifier while the issuer's signing keys cannot be
// fetched.
type keysDown struct{}

func (keysDown) Verify(context.Context, string) (*oidc.Principal, error) {
	return nil, fmt.Errorf("verifying: %w", oidc.ErrKeysUnavailable)
}

// The auth middleware answers every method 503 while it cannot verify
// tokens; through the guard, as clients see it, HEAD gets 423 (with
// Retry-After, without a body, with the CORS headers set before it).
func TestGuardAnswersAuthOutageOnHEADWith423(t *testing.T) {
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("request passed the auth middleware") })
	h := guard(cors([]string{"https://app.example"}, false, hooks.Middleware(keysDown{}, discardLog(), next)))
	for _, m := range []string{http.MethodHead, http.MethodPatch, http.MethodPost, http.MethodGet, http.MethodDelete} {
		w := serve(h, m, "/files/x", map[string]string{"Authorization": "Bearer abc", "Origin": "https://app.example"})
		want := http.StatusServiceUnavailable
		if m == http.MethodHead {
			want = http.StatusLocked
		}
		if w.Code != want || w.Header().Get("Retry-After") != tuserror.RetryAfter {
			t.Errorf("%s: %d Retry-After %q, want %d with Retry-After %s", m, w.Code, w.Header().Get("Retry-After"), want, tuserror.RetryAfter)
		}
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example" {
			t.Errorf("%s: Access-Control-Allow-Origin %q", m, got)
		}
		switch {
		case m == http.MethodHead && (w.Body.Len() != 0 || w.Header().Get("Content-Length") != ""):
			t.Errorf("HEAD: body %q, Content-Length %q", w.Body.String(), w.Header().Get("Content-Length"))
		case m != http.MethodHead && !strings.HasPrefix(w.Body.String(), "ERR_AUTH_UNAVAILABLE: "):
			t.Errorf("%s: body %q", m, w.Body.String())
		}
	}
}

func TestGuardHidesRawInternalErrors(t *testing.T) {
	raw := handler.NewError("ERR_INTERNAL_SERVER_ERROR", "operation error S3: PutObject, https response error StatusCode: 500, secret-bucket", 500)
	w := serve(guard(tusdError(raw)), http.MethodPatch, "/files/x", nil)
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret-bucket") || !strings.HasPrefix(w.Body.String(), "ERR_INTERNAL_SERVER_ERROR: internal error") {
		t.Fatalf("got %d %q", w.Code, w.Body.String())
	}
	if cl := w.Header().Get("Content-Length"); cl != "55" {
		t.Fatalf("Content-Length %q does not match the new body (%d bytes)", cl, w.Body.Len())
	}
	// A coded 500 that carries no raw text (tusd's read timeout) is kept.
	w = serve(guard(tusdError(handler.ErrReadTimeout)), http.MethodPatch, "/files/x", nil)
	if !strings.HasPrefix(w.Body.String(), "ERR_READ_TIMEOUT") {
		t.Fatalf("coded 500 rewritten: %q", w.Body.String())
	}
	// 503s always carry Retry-After.
	w = serve(guard(tusdError(handler.ErrServerShutdown)), http.MethodPatch, "/files/x", nil)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.HasPrefix(w.Body.String(), "ERR_SERVER_SHUTDOWN") {
		t.Fatalf("shutdown 503: %d %q %q", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
}

func TestRecoverPanics(t *testing.T) {
	h := guard(recoverPanics(discardLog(), http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("bug") })))
	if w := serve(h, http.MethodPatch, "/files/x", nil); w.Code != 500 {
		t.Fatalf("PATCH panic: %d", w.Code)
	}
	if w := serve(h, http.MethodHead, "/files/x", nil); w.Code != http.StatusLocked {
		t.Fatalf("HEAD panic: %d", w.Code)
	}
}

func TestCORSMiddleware(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := cors([]string{"https://app.example"}, false, ok)

	w := serve(h, http.MethodOptions, "http://tusgate.example/files/", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"})
	if w.Header().Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "PATCH") {
		t.Fatalf("preflight headers: %v", w.Header())
	}
	w = serve(h, http.MethodPatch, "http://tusgate.example/files/x", map[string]string{"Origin": "https://app.example"})
	for _, exposed := range []string{"Upload-Offset", "Location", "WWW-Authenticate", "Retry-After", "Upload-Expires"} {
		if !strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), exposed) {
			t.Errorf("%s not exposed", exposed)
		}
	}
	if w := serve(h, http.MethodPatch, "http://tusgate.example/files/x", map[string]string{"Origin": "https://evil.example"}); w.Code != 403 {
		t.Fatalf("foreign origin: %d", w.Code)
	}
	if w := serve(h, http.MethodPatch, "http://tusgate.example/files/x", map[string]string{"Origin": "http://tusgate.example"}); w.Code != 204 {
		t.Fatalf("same origin: %d", w.Code)
	}
	// Behind a proxy, the forwarded scheme and host define "same origin".
	hp := cors(nil, true, ok)
	if w := serve(hp, http.MethodPatch, "http://10.0.0.5:8080/files/x", map[string]string{"Origin": "https://up.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "up.example"}); w.Code != 204 {
		t.Fatalf("same origin behind proxy: %d", w.Code)
	}
	any := cors([]string{"*"}, false, ok)
	if w := serve(any, http.MethodPatch, "http://tusgate.example/files/x", map[string]string{"Origin": "https://whoever.example"}); w.Code != 204 || w.Header().Get("Access-Control-Allow-Origin") != "https://whoever.example" {
		t.Fatalf("wildcard: %d %v", w.Code, w.Header())
	}
}

func TestInflightWait(t *testing.T) {
	var f inflight
	select {
	case <-f.wait():
	default:
		t.Fatal("idle counter did not report idle")
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	h := f.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { close(entered); <-release }))
	done := make(chan struct{})
	go func() { serve(h, "GET", "/", nil); close(done) }()
	<-entered
	idle := f.wait()
	select {
	case <-idle:
		t.Fatal("reported idle with a request in flight")
	default:
	}
	close(release)
	<-done
	<-idle
}

func TestGuardMakesInterruptionsRetryable(t *testing.T) {
	w := serve(guard(tusdError(handler.ErrUploadInterrupted)), http.MethodPatch, "/files/x", nil)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.HasPrefix(w.Body.String(), "ERR_UPLOAD_INTERRUPTED") {
		t.Fatalf("interrupted PATCH: %d %q %q", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
	// Other 400s pass unchanged, body included.
	w = serve(guard(tusdError(handler.ErrInvalidOffset)), http.MethodPatch, "/files/x", nil)
	if w.Code != 400 || !strings.HasPrefix(w.Body.String(), "ERR_INVALID_OFFSET") {
		t.Fatalf("400: %d %q", w.Code, w.Body.String())
	}
}

// Upload-Concat names are compared as the upload IDs tusd resolves them to,
// so that no spelling of a URL lets one upload be named twice.
func TestConcatDuplicatesByUploadID(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	h := checkRequestHeaders(true, "/files/", next)
	var many []string
	for i := range maxConcatParts {
		many = append(many, "/files/o/"+strconv.Itoa(i))
	}
	for _, tc := range []struct {
		list string
		want int
	}{
		{"/files/o/a /files/o/b", http.StatusCreated},
		{"https://up.example/files/o/a http://127.0.0.1:8080/files/o/b", http.StatusCreated},
		{"/files/o/a /files/o/a", http.StatusBadRequest},
		{"https://up.example/files/o/a /files/o/a", http.StatusBadRequest},
		{"/files/o/a https://other.example/files/o/a", http.StatusBadRequest},
		{"/files/o/a /files/o/a/", http.StatusBadRequest},
		{"/files/o/a /files//o/a//", http.StatusBadRequest},
		{"/files/o/a   /prefix/files/o/a", http.StatusBadRequest}, // tusd cuts at the first /files/
		{"/files/o/a\t/files/o/a", http.StatusCreated},            // one name for tusd: split at spaces only
		{"/files/o/a /elsewhere/o/a", http.StatusCreated},         // tusd answers 404 for the second
		{"/files/o/A /files/o/a", http.StatusCreated},             // IDs are case-sensitive
		{strings.Join(many, " "), http.StatusCreated},
		{strings.Join(append(many, "/files/o/x"), " "), http.StatusBadRequest},
		{strings.Join(append(many, "", " "), "  "), http.StatusCreated}, // empty names are skipped, as tusd does
	} {
		w := serve(h, http.MethodPost, "/files/", map[string]string{"Upload-Concat": "final;" + tc.list})
		if w.Code != tc.want {
			t.Errorf("final;%.80s: %d %q, want %d", tc.list, w.Code, w.Body.String(), tc.want)
		}
	}
}

// A storage failure that retrying cannot clear answers 500 without
// Retry-After, on HEAD too (tus-js-client may then start over, which is
// all that is left); transient ones keep answering 423 on HEAD and 503
// elsewhere, both with Retry-After. The guard's marker never leaves.
func TestGuardLetsPermanentStorageFailuresThrough(t *testing.T) {
	for _, m := range []string{http.MethodHead, http.MethodPatch, http.MethodPost} {
		w := serve(guard(tusdError(safestore.ErrStorageFailed)), m, "/files/x", nil)
		if w.Code != 500 || w.Header().Get("Retry-After") != "" || w.Header().Get(safestore.PermanentHeader) != "" {
			t.Errorf("%s, permanent failure: %d Retry-After %q marker %q", m, w.Code, w.Header().Get("Retry-After"), w.Header().Get(safestore.PermanentHeader))
		}
		if m == http.MethodHead && w.Body.Len() != 0 {
			t.Errorf("HEAD with a body: %q", w.Body.String())
		}
		if m != http.MethodHead && !strings.HasPrefix(w.Body.String(), "ERR_STORAGE_FAILED: ") {
			t.Errorf("%s, permanent failure: body %q", m, w.Body.String())
		}

		w = serve(guard(tusdError(safestore.ErrStorageUnavailable)), m, "/files/x", nil)
		want := http.StatusServiceUnavailable
		if m == http.MethodHead {
			want = http.StatusLocked
		}
		if w.Code != want || w.Header().Get("Retry-After") == "" {
			t.Errorf("%s, transient failure: %d Retry-After %q", m, w.Code, w.Header().Get("Retry-After"))
		}
	}
}
