package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tusgate/tusgate/internal/webhook"
)

// objectChecksumHeader carries, on the HEAD answer of a finished upload,
// the full-object checksum S3 keeps with its object:
//
//	Upload-Object-Checksum: crc32 <base64 of the 4 bytes, big-endian>
//
// the algorithm as in the tus checksum extension's Upload-Checksum. A
// client compares it with the checksum of the file it sent. It is not
// given as Repr-Digest to IETF-draft clients: RFC 9530's registry of
// digest algorithms has no crc32 (docs/integrity.md); the upload's SHA-256
// is, with --object-sha256 (internal/ietfdraft).
const objectChecksumHeader = "Upload-Object-Checksum"

// objectChecksums reads finished objects' full-object checksums
// (s3backend.Backend; the disk store keeps none).
type objectChecksums interface {
	ObjectChecksum(ctx context.Context, id string) (sum webhook.Checksum, ok bool, err error)
}

// objectChecksumLookup bounds the S3 request for the checksum: a HEAD
// answer never waits long for an extra.
const objectChecksumLookup = 5 * time.Second

// objectChecksum adds objectChecksumHeader to tusd's answers to HEAD (also
// as X-HTTP-Method-Override) that report a finished upload: 200 or 204
// with Upload-Offset equal to Upload-Length. Such an answer means tusd
// found the upload and the caller may see it (safestore checked), so the
// lookup (one HeadObject) costs nothing on other requests and reveals
// nothing new. When it fails, the answer goes without the header.
func objectChecksum(src objectChecksums, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if o := r.Header.Get("X-HTTP-Method-Override"); method == http.MethodPost && o != "" {
			method = o // as tusd does
		}
		if method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&checksumWriter{ResponseWriter: w, r: r, src: src, log: log}, r)
	})
}

// checksumWriter adds the header when the answer's status is written.
type checksumWriter struct {
	http.ResponseWriter
	r     *http.Request
	src   objectChecksums
	log   *slog.Logger
	wrote bool
}

func (c *checksumWriter) WriteHeader(code int) {
	if !c.wrote {
		c.wrote = true
		c.add(code)
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *checksumWriter) Write(p []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController (tusd's deadlines) reach the
// connection.
func (c *checksumWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *checksumWriter) add(code int) {
	h := c.Header()
	if code != http.StatusOK && code != http.StatusNoContent {
		return
	}
	if off := h.Get("Upload-Offset"); off == "" || off != h.Get("Upload-Length") {
		return
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), objectChecksumLookup)
	defer cancel()
	id := strings.Trim(c.r.URL.Path, "/") // the ID tusd answered for
	sum, ok, err := c.src.ObjectChecksum(ctx, id)
	if err != nil {
		c.log.WarnContext(ctx, "reading the checksum of a finished upload's object failed; HEAD answers without it", "id", id, "error", err.Error())
		return
	}
	if ok {
		h.Set(objectChecksumHeader, sum.Algorithm+" "+sum.Value)
	}
}
