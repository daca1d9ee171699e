package server

import (
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/lastinfo"
	"github.com/tusgate/tusgate/internal/objsha"
)

// HEAD answers of finished uploads carry the SHA-256 the store recorded,
// taken from what the store read for the answer.
func TestObjectSHA256Header(t *testing.T) {
	sum := sha256.Sum256([]byte("abc"))
	recorded := objsha.WithSum(handler.FileInfo{ID: "owner/abc+mp", Size: 3, Offset: 3}, sum[:])
	for _, c := range []struct {
		name           string
		method         string
		override       string
		info           handler.FileInfo
		status         int
		offset, length string
		want           string
	}{
		{"finished, tus 1.0", http.MethodHead, "", recorded, 200, "3", "3", objsha.Encode(sum[:])},
		{"finished, IETF draft", http.MethodHead, "", recorded, 204, "3", "3", objsha.Encode(sum[:])},
		{"method override", http.MethodPost, "HEAD", recorded, 200, "3", "3", objsha.Encode(sum[:])},
		{"none recorded", http.MethodHead, "", handler.FileInfo{ID: "owner/abc+mp"}, 200, "3", "3", ""},
		{"unfinished", http.MethodHead, "", recorded, 200, "2", "3", ""},
		{"not found", http.MethodHead, "", recorded, 404, "", "", ""},
		{"PATCH", http.MethodPatch, "", recorded, 204, "3", "3", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := objectSHA256(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				lastinfo.Record(r.Context(), c.info) // as safestore does
				w.Header().Set("Upload-Offset", c.offset)
				w.Header().Set("Upload-Length", c.length)
				w.WriteHeader(c.status)
			}))
			r := httptest.NewRequest(c.method, "/owner/abc+mp", nil)
			if c.override != "" {
				r.Header.Set("X-HTTP-Method-Override", c.override)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Header().Get(objectSHA256Header); got != c.want {
				t.Fatalf("%s = %q, want %q", objectSHA256Header, got, c.want)
			}
		})
	}
}
