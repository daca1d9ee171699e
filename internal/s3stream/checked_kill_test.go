package s3stream

import (
	"testing"
)

// TestCheckedWriteKilledAfterTailKeepsUpload: a checked write (tus
// Upload-Checksum) whose body checked out, killed at every S3 operation in
// turn. Whatever died where, the upload must stay readable at its offset
// before the write, at the end of its parts, or after it, and then finish
// with the right bytes. (A checked write used to store its new tail, which
// starts after its provisional parts, before the .info write that commits
// those parts: a death in between left a tail past the parts that count,
// and every later look answered a permanent error: the upload was lost.)
func TestCheckedWriteKilledAfterTailKeepsUpload(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		for k := range 16 {
			data := testData(300, uint64(500+k))
			id := e.create(300, false)
			if n, err := e.patch(id, 0, reqBody(data[:70]), 70); err != nil || n != 70 {
				t.Fatalf("first write: %d, %v", n, err)
			}
			body := data[70:142] // the tail's 6 bytes and 58 make part 2, 14 the new tail
			e.s3.killAfter(k)
			up, err := e.store.GetUpload(checkedCtx(t, body, int64(len(body))), id)
			if err != nil {
				t.Fatal(err)
			}
			ctx := checkedCtx(t, body, int64(len(body)))
			if _, err := up.GetInfo(ctx); err == nil {
				_, _ = up.WriteChunk(ctx, 70, reqBody(body))
			}
			e.s3.killAfter(-1)
			info, err := e.s3Info(id)
			if err != nil {
				t.Fatalf("killed after %d operations: the upload is lost: %v", k, err)
			}
			if info.Offset != 70 && info.Offset != 128 && info.Offset != 142 {
				t.Fatalf("killed after %d operations: offset %d, want 70, 128 or 142", k, info.Offset)
			}
			e.finish(id, data)
		}
	})
}
