package s3stream

import (
	"testing"

	"github.com/tus/tusd/v2/pkg/s3store"
)

// TestChunkedBodyAcrossBands: a body of unknown length (chunked) on an
// upload of unknown length, sent with IETF Upload-Complete: ?1 (or a client
// streaming stdin in one PATCH). Its parts grow into the next band, beyond
// the write's part buffer. The write used to go on through a window, which
// took the body's normal end mid-part for a cut and dropped the bytes of
// that part: the write reported success with fewer bytes than the body
// held, and tusd completed a truncated object. Now it gets a larger buffer.
func TestChunkedBodyAcrossBands(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		const K = 1 << 10
		e := newEnv(t, stream, func(s *s3store.S3Store) {
			s.PreferredPartSize = 64 * K
			s.MinPartSize = 16 * K
			s.MaxMultipartParts = 20 // bands of 2 parts: 64K 64K 128K 128K 256K ...
		})
		e.s3.minPart = 16 * K
		e.store.MaxSize = 4 << 20
		data := testData(300*K, 9)
		id := e.create(0, true)
		n, err := e.request(id, 0, reqBody(data), req{bodyLen: -1, uploadLength: -1, complete: true})
		t.Logf("WriteChunk of a %d-byte chunked body with Upload-Complete: %d, %v", len(data), n, err)
		got, ok := e.s3.object(e.key(id))
		if !ok {
			t.Fatalf("no object")
		}
		if len(got) != len(data) {
			t.Fatalf("the upload completed with %d bytes; the client sent %d and got a success answer", len(got), len(data))
		}
	})
}
