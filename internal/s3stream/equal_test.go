package s3stream

import (
	"testing"

	"github.com/tus/tusd/v2/pkg/s3store"
)

// TestEqualPartsAfterLateLength: R2 mode (min part = preferred). A
// deferred upload's tail is larger than the part size its length, once
// declared, gives; the tail goes whole into part 1, and the next parts
// must have its size. With part buffers, part 2 used to be cut while part 1
// was still in flight with the smaller size, which R2 refuses at
// completion.
func TestEqualPartsAfterLateLength(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, m.stream, func(s *s3store.S3Store) {
				s.MaxMultipartParts = 20
				s.MinPartSize = testPartSize
			})
			e.s3.minPart = testPartSize
			e.store.Buffers = NewBuffers(m.budget)
			e.store.MaxSize = 2000 // unknown length: parts of 100
			data := testData(485, 1)
			id := e.create(0, true)
			if n, err := e.patch(id, 0, reqBody(data[:79]), 79); err != nil || n != 79 {
				t.Fatalf("%d, %v", n, err)
			}
			// Upload-Length: 485 -> parts of 64; the 79-byte tail goes whole into part 1.
			if n, err := e.request(id, 79, reqBody(data[79:]), req{bodyLen: 485 - 79, uploadLength: 485}); err != nil || n != 485-79 {
				t.Fatalf("%d, %v", n, err)
			}
			sizes := e.s3.completedParts(e.key(id))
			for _, s := range sizes[:len(sizes)-1] {
				if s != sizes[0] {
					t.Fatalf("parts %v: not equal (R2 answers InvalidPart / EntityTooSmall-like errors at completion)", sizes)
				}
			}
			t.Logf("parts %v", sizes)
		})
	}
}
