package server

import (
	"net/http"
	"strings"

	"github.com/tusgate/tusgate/internal/lastinfo"
	"github.com/tusgate/tusgate/internal/objsha"
)

// objectSHA256Header carries, on the HEAD answer of a finished upload, the
// SHA-256 of its bytes (--object-sha256, or a Repr-Digest at creation):
//
//	Upload-Object-SHA256: <base64 of the 32 bytes>
//
// the digest encoded as in the tus checksum extension's Upload-Checksum.
// IETF-draft clients get it as Repr-Digest too (internal/ietfdraft).
const objectSHA256Header = "Upload-Object-SHA256"

// objectSHA256 adds objectSHA256Header to the answers to HEAD (also as
// X-HTTP-Method-Override) that report a finished upload (2xx, Upload-Offset
// equal to Upload-Length) whose SHA-256 the store recorded. It takes the
// SHA-256 from what the store read for the answer (internal/lastinfo), so
// it costs no request to storage.
func objectSHA256(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if effectiveMethod(r) != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		r = r.WithContext(lastinfo.Ensure(r.Context()))
		next.ServeHTTP(&headerHook{ResponseWriter: w, before: func(status int, h http.Header) {
			if status != http.StatusOK && status != http.StatusNoContent {
				return
			}
			if off := h.Get("Upload-Offset"); off == "" || off != h.Get("Upload-Length") {
				return
			}
			// The ID tusd answered for.
			info, ok := lastinfo.Get(r.Context(), strings.Trim(r.URL.Path, "/"))
			if !ok {
				return
			}
			if sum, ok := objsha.Sum(info); ok {
				h.Set(objectSHA256Header, objsha.Encode(sum))
			}
		}}, r)
	})
}
