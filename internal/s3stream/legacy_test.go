package s3stream

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestLegacyTailCountsOnce: a tail written before tusgate-tail-start
// existed (stock tusd, an older tusgate) counts as starting where the parts
// end. Once a part holds its bytes, deleting it is best effort; when that
// failed (or the process died right after the part), the legacy tail used
// to count again on top of the part. A write now stamps it with its start
// before it stores the part.
func TestLegacyTailCountsOnce(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		data := testData(150, 3)
		id := e.create(150, false)
		// An in-progress upload from before the upgrade: 10 bytes in a
		// .part tail without tusgate-tail-start.
		e.s3.configure(func(f *fakeS3) {
			f.objects[e.key(id)+".part"] = bytes.Clone(data[:10])
			f.meta[e.key(id)+".part"] = nil
		})
		e.checkOffset(id, 10)
		e.s3.configure(func(f *fakeS3) {
			f.failOp = func(op, key string) error {
				if op == "DeleteObject" && strings.HasSuffix(key, ".part") {
					return fmt.Errorf("503 SlowDown")
				}
				return nil
			}
		})
		n, err := e.tryRequest(id, 10, reqBody(data[10:80]), req{bodyLen: 70, uploadLength: -1})
		e.s3.configure(func(f *fakeS3) { f.failOp = nil })
		t.Logf("write of 70 bytes at 10: %d, %v", n, err)
		if got := e.offset(id); got != 10+n {
			t.Fatalf("offset %d after a write acknowledged %d bytes at 10 (want %d); parts %v", got, n, 10+n, e.s3.partSizes(e.key(id)))
		}
	})
}
