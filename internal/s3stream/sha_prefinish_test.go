package s3stream

import (
	"context"
	"testing"

	"github.com/tusgate/tusgate/internal/bodylen"
)

// TestSHAFinishPutOff: a completing PATCH whose finishing is put off
// (safestore asks the pre-finish URL first, which may fail with a 5xx, and
// the next request finishes the upload) used to leave no running state at
// the end: saveSHA skipped complete uploads, so the next request, on any
// instance, read the whole object back for its SHA-256 — contrary to
// docs/integrity.md ("never read back ... in the normal case"). The SHA-256
// is recorded by the completing PATCH now, in the write FinishUpload would
// have made.
func TestSHAFinishPutOff(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		data := testData(300, 3)
		id := e.create(300, false)
		if n, err := e.patch(id, 0, reqBody(data[:100]), 100); err != nil || n != 100 {
			t.Fatal(n, err)
		}
		ctx := bodylen.With(context.Background(), 200)
		up, _ := e.store.GetUpload(ctx, id)
		if _, err := up.GetInfo(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := up.WriteChunk(ctx, 100, reqBody(data[100:])); err != nil || n != 200 {
			t.Fatal(n, err)
		}
		puts := e.s3.count("PutObject")
		// The next request finishes it.
		up, _ = e.store.GetUpload(context.Background(), id)
		if err := up.FinishUpload(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.checkObject(id, data)
		if n := e.s3.gets[e.key(id)]; n != 0 {
			t.Fatalf("the object was read back %d times", n)
		}
		if n := e.s3.count("PutObject") - puts; n != 0 {
			t.Fatalf("finishing wrote %d objects, want none (the .info has the SHA-256)", n)
		}
	})
}
