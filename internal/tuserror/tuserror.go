// Package tuserror writes error answers in tusd's format ("CODE: message")
// for the checks tusgate runs before a request reaches tusd, so that clients
// see one format whoever refused them.
package tuserror

import (
	"net/http"
	"strconv"
)

// RetryAfter is the Retry-After value, in seconds, of every answer that asks
// a client to come back later: 503 while a dependency (storage, Redis, the
// issuer's signing keys, the pre-finish URL, a part buffer) is briefly
// unavailable, 423 on HEAD, and /readyz while not ready. Five seconds lets a
// dependency recover before the retries arrive, and costs a resuming client
// little; it is the longest of tus-js-client's default retry delays (0, 1,
// 3 and 5 s), so clients that ignore the header wait about as long.
const RetryAfter = "5"

// Write answers with status and the body "code: msg". HEAD answers carry no
// body. Headers already set on w (CORS, WWW-Authenticate, Retry-After) are
// kept.
func Write(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body := code + ": " + msg + "\n"
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Tus-Resumable", "1.0.0")
	if r.Method != http.MethodHead {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}
