package s3stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/tusgate/tusgate/internal/bodylen"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// writeModes are the ways a write reaches S3: streamed from part buffers
// (HTTPS), read into part buffers first (plain HTTP), and through a small
// window when the buffer budget is spent.
var writeModes = []struct {
	name   string
	stream bool
	budget int64
}{
	{"stream", true, 64 << 20},
	{"buffer", false, 64 << 20},
	{"window", true, 0},
	{"window-http", false, 0},
}

// forWriteModes runs fn once per write mode with a fresh env.
func forWriteModes(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, m.stream)
			e.store.Buffers = NewBuffers(m.budget)
			fn(t, e)
		})
	}
}

// offset is the upload's offset as a fresh request, on any instance, sees
// it.
func (e *env) offset(id string) int64 {
	e.t.Helper()
	info, err := e.s3Info(id)
	if err != nil {
		e.t.Fatalf("GetInfo: %v", err)
	}
	return info.Offset
}

// TestAcknowledgedOffsetNeverGoesBack drives uploads through random S3
// failures, process deaths at any S3 operation and clients that stop
// mid-body, on every write mode. Whenever a write returned without error
// (tusd then answers with its offset), every later look at the upload must
// report at least that offset, and the finished object must be the bytes
// sent. (A write used to read and delete the .part tail before storing its
// bytes in the next part: a failure in between lost acknowledged bytes.)
func TestAcknowledgedOffsetNeverGoesBack(t *testing.T) {
	const size = 300
	forWriteModes(t, func(t *testing.T, e *env) {
		for seed := range uint64(60) {
			rng := rand.New(rand.NewPCG(seed, 77))
			data := testData(size, seed)
			deferred := seed%3 == 2
			id := e.create(size, deferred)
			if deferred {
				id = e.create(0, true)
			}
			acked := int64(0)
			var history []string
			for step := 0; ; step++ {
				if step > 400 {
					t.Fatalf("seed %d: no progress after %d requests: %v", seed, step, history)
				}
				off := e.offset(id)
				if off < acked {
					t.Fatalf("seed %d: offset %d after offset %d was acknowledged; requests: %v", seed, off, acked, history)
				}
				if off == size {
					break
				}
				chunk := min(int64(1+rng.IntN(120)), size-off)
				body := io.Reader(bytes.NewReader(data[off : off+chunk]))
				what := fmt.Sprintf("%d+%d", off, chunk)
				switch rng.IntN(4) {
				case 0:
					k := rng.IntN(8)
					e.s3.killAfter(k)
					what += fmt.Sprintf(" died after %d ops", k)
				case 1:
					cutAt := rng.Int64N(chunk)
					body = io.LimitReader(body, cutAt)
					what += fmt.Sprintf(" body cut at %d", cutAt)
				case 2:
					p := int32(1 + rng.IntN(5))
					e.s3.configure(func(f *fakeS3) { f.failUploadPart = func(n int32, _ int) error { return failIf(n == p) } })
					what += fmt.Sprintf(" part %d fails", p)
				}
				r := req{bodyLen: chunk, uploadLength: -1}
				if deferred && off+chunk == size {
					r.uploadLength = size
				}
				n, err := e.tryRequest(id, off, reqBody2(body), r)
				e.s3.killAfter(-1)
				e.s3.configure(func(f *fakeS3) { f.failUploadPart = nil })
				history = append(history, fmt.Sprintf("%s: %d, %v", what, n, err))
				if err == nil {
					acked = off + n
				}
			}
			if _, ok := e.s3.object(e.key(id)); !ok {
				// Complete but not assembled (the process died in
				// FinishUpload): safestore finishes such uploads.
				up, err := e.store.GetUpload(context.Background(), id)
				if err == nil {
					err = up.FinishUpload(context.Background())
				}
				if err != nil {
					t.Fatalf("seed %d: finishing: %v", seed, err)
				}
			}
			got, ok := e.s3.object(e.key(id))
			if !ok {
				t.Fatalf("seed %d: no object after the upload: %v", seed, history)
			}
			checkBytes(t, fmt.Sprintf("seed %d object", seed), got, data)
			// Whatever died where, a SHA-256 recorded is the object's.
			if sum, ok := objsha.Sum(e.rawInfo(id)); ok {
				if want := sha256.Sum256(data); !objsha.Equal(sum, want[:]) {
					t.Fatalf("seed %d: the .info records SHA-256 %x, the object has %x; requests: %v", seed, sum, want, history)
				}
			}
		}
	})
}

func failIf(b bool) error {
	if b {
		return errS3
	}
	return nil
}

func reqBody2(r io.Reader) io.Reader { return struct{ io.Reader }{r} }

// tryRequest is request without its checks: the request may fail anywhere,
// as it does when S3 fails or the process dies.
func (e *env) tryRequest(id string, offset int64, src io.Reader, r req) (int64, error) {
	e.t.Helper()
	ctx := bodylen.With(context.Background(), r.bodyLen)
	up, err := e.core.GetUpload(ctx, id)
	if err != nil {
		return 0, err
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return 0, err
	}
	if info.Offset != offset {
		return 0, fmt.Errorf("the upload is at offset %d, the request at %d", info.Offset, offset)
	}
	if r.uploadLength >= 0 && info.SizeIsDeferred {
		if err := e.core.AsLengthDeclarableUpload(up).DeclareLength(ctx, r.uploadLength); err != nil {
			return 0, err
		}
		info.Size, info.SizeIsDeferred = r.uploadLength, false
	}
	n, err := up.WriteChunk(ctx, offset, src)
	if err != nil {
		return n, err
	}
	if !info.SizeIsDeferred && offset+n == info.Size {
		if err := up.FinishUpload(ctx); err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestInconsistentStateIsPermanent: a tail that starts past the parts (no
// write of tusgate's leaves one) is an inconsistency retrying cannot
// clear: the error is marked permanent, so clients are not told to retry
// forever.
func TestInconsistentStateIsPermanent(t *testing.T) {
	e := newEnv(t, true)
	id := e.create(150, false)
	e.s3.configure(func(f *fakeS3) {
		f.objects[e.key(id)+".part"] = []byte("abc")
		f.meta[e.key(id)+".part"] = map[string]string{tailStartKey: "99"}
	})
	_, err := e.s3Info(id)
	if err == nil || !storeerr.IsPermanent(err) {
		t.Fatalf("GetInfo = %v, want a permanent error", err)
	}
}
