package s3stream

import (
	"errors"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

// TestAbortedDeferredUploadIsGone: a deferred-length upload whose
// multipart upload was aborted (a lifecycle rule) used to read as completed
// at offset 0 with its length still deferred; HEAD answered 200 and every
// PATCH a permanent 500. Its bytes are gone: it is not found.
func TestAbortedDeferredUploadIsGone(t *testing.T) {
	e := newEnv(t, true)
	data := testData(100, 1)
	id := e.create(0, true)
	if n, err := e.patch(id, 0, reqBody(data[:40]), 40); err != nil || n != 40 {
		t.Fatal(n, err)
	}
	e.s3.configure(func(f *fakeS3) {
		delete(f.uploads, f.upload(e.key(id)).key)
		for k, mp := range f.uploads {
			if mp.key == e.key(id) {
				delete(f.uploads, k)
			}
		}
	})
	if _, err := e.s3Info(id); !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("GetInfo after the abort: %v, want not found", err)
	}
}
