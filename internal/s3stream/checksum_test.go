package s3stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tusgate/tusgate/internal/bodylen"
	"github.com/tusgate/tusgate/internal/checksum"
)

// checked is a request context stating the SHA-256 of want for a body,
// as a header (length >= 0) or as a trailer of a chunked body.
func checked(t *testing.T, want []byte, length int64) context.Context {
	t.Helper()
	sum := sha256.Sum256(want)
	value := "sha256 " + base64.StdEncoding.EncodeToString(sum[:])
	r := httptest.NewRequest(http.MethodPatch, "/files/x", nil)
	if length >= 0 {
		r.Header.Set("Upload-Checksum", value)
	} else {
		r.Trailer = http.Header{"Upload-Checksum": {value}} // as Go's server fills it at the body's end
	}
	e, err := checksum.FromRequest(r)
	if err != nil || e == nil {
		t.Fatalf("FromRequest: %v, %v", e, err)
	}
	ctx := checksum.With(context.Background(), e)
	if length >= 0 {
		ctx = bodylen.With(ctx, length)
	}
	return ctx
}

// write is one PATCH of body at offset, in ctx.
func (e *env) write(ctx context.Context, id string, offset int64, body []byte) (int64, error) {
	e.t.Helper()
	up, err := e.store.GetUpload(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := up.GetInfo(ctx); err != nil {
		return 0, err
	}
	return up.WriteChunk(ctx, offset, reqBody(body))
}

// TestChecksumMismatchStoresNothing: a PATCH whose body does not match its
// Upload-Checksum answers 460 and none of its bytes count, also when some
// of them already went to S3 as parts (here two of them) and when the tail
// before it was read into the first part; the same bytes with the right
// checksum then go through. Header and trailer, every write mode.
func TestChecksumMismatchStoresNothing(t *testing.T) {
	for _, trailer := range []bool{false, true} {
		forWriteModes(t, func(t *testing.T, e *env) {
			if trailer && e.store.Buffers.Limit() == 0 {
				return // a chunked body needs a part buffer (503 without)
			}
			data := testData(300, 8)
			id := e.create(300, false)
			if n, err := e.patch(id, 0, reqBody(data[:10]), 10); err != nil || n != 10 {
				t.Fatalf("first write: %d, %v", n, err)
			}
			body := data[10:170] // two full parts (with the tail) and a tail
			length := int64(len(body))
			if trailer {
				length = -1
			}
			wrong := append([]byte("not the body"), body...)
			n, err := e.write(checked(t, wrong, length), id, 10, body)
			if !errors.Is(err, checksum.ErrMismatch) || n != 0 {
				t.Fatalf("write with a wrong checksum = %d, %v; want 0, 460", n, err)
			}
			e.checkOffset(id, 10)
			if n, err := e.write(checked(t, body, length), id, 10, body); err != nil || n != int64(len(body)) {
				t.Fatalf("the same bytes with the right checksum: %d, %v", n, err)
			}
			e.checkOffset(id, 170)
			e.finish(id, data)
		})
	}
}

// TestChecksumCutBodyStoresNothing: a checked body that ends before its
// length cannot be checked: nothing of it counts.
func TestChecksumCutBodyStoresNothing(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		data := testData(300, 9)
		id := e.create(300, false)
		body := data[:200]
		up, _ := e.store.GetUpload(context.Background(), id)
		ctx := checked(t, body, int64(len(body)))
		up.GetInfo(ctx)
		n, err := up.WriteChunk(ctx, 0, reqBody2(io.LimitReader(bytes.NewReader(body), 150)))
		if err == nil || n != 0 {
			t.Fatalf("a cut checked body = %d, %v; want 0 and an error", n, err)
		}
		e.checkOffset(id, 0)
		e.finish(id, data)
	})
}

// TestChecksumKilledBeforeVerdict: the process dies at every S3 operation
// of a checked write in turn; whatever it stored before does not count,
// and the next write goes on from the offset before it.
func TestChecksumKilledBeforeVerdict(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		for k := range 12 {
			t.Run(fmt.Sprint("after", k), func(t *testing.T) {
				data := testData(300, uint64(k))
				id := e.create(300, false)
				if n, err := e.patch(id, 0, reqBody(data[:10]), 10); err != nil || n != 10 {
					t.Fatalf("first write: %d, %v", n, err)
				}
				body := data[10:250]
				e.s3.killAfter(k)
				n, err := e.write(checked(t, body, int64(len(body))), id, 10, body)
				e.s3.killAfter(-1)
				off := e.offset(id)
				switch {
				case err == nil && (n != int64(len(body)) || off != 250):
					t.Fatalf("a write that succeeded: %d, offset %d", n, off)
				case err != nil && off != 10:
					t.Fatalf("the write died (%v) and the offset is %d: bytes not checked count", err, off)
				}
				e.finish(id, data)
			})
		}
	})
}
