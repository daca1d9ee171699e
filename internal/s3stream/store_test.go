package s3stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/tusgate/tusgate/internal/bodylen"
)

const (
	testBucket   = "bucket"
	testPartSize = 64
	testMinPart  = 16
)

// core is what the tests drive: this package's Store, or s3store alone for
// reference.
type core interface {
	NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error)
	GetUpload(ctx context.Context, id string) (handler.Upload, error)
	AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload
}

type env struct {
	t     *testing.T
	s3    *fakeS3
	store *Store
	core  core
	reg   *prometheus.Registry
}

// newEnv returns a Store on a fake S3 with parts of testPartSize bytes and
// a minimum part size of testMinPart bytes. Its uploads are created asking
// for a FULL_OBJECT CRC32, as s3backend's client asks (withoutChecksums
// undoes that). opts adjust s3store.
func newEnv(t *testing.T, stream bool, opts ...func(*s3store.S3Store)) *env {
	t.Helper()
	f := newFakeS3(testBucket)
	f.minPart = testMinPart
	f.pageSize = 3
	inner := s3store.New(testBucket, fullObjectAsker{f})
	inner.PreferredPartSize = testPartSize
	inner.MinPartSize = testMinPart
	inner.TemporaryDirectory = t.TempDir()
	for _, o := range opts {
		o(&inner)
	}
	reg := prometheus.NewRegistry()
	bufs := NewBuffers(64 << 20)
	e := &env{t: t, s3: f, reg: reg, store: &Store{
		Inner:        inner,
		Objects:      f,
		Parts:        f,
		Stream:       stream,
		Parallel:     3,
		ObjectSHA256: true,
		Buffers:      bufs,
		Metrics:      NewMetrics(reg, bufs),
		Log:          slog.New(slog.DiscardHandler),
	}}
	e.core = e.store
	t.Cleanup(func() {
		if n := e.store.Buffers.InUse(); n != 0 {
			t.Errorf("%d bytes of part buffers were not returned", n)
		}
	})
	return e
}

// forModes runs fn with Stream on and off.
func forModes(t *testing.T, fn func(t *testing.T, stream bool)) {
	for _, stream := range []bool{true, false} {
		name := "buffer"
		if stream {
			name = "stream"
		}
		t.Run(name, func(t *testing.T) { fn(t, stream) })
	}
}

func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// reqBody is a request body: like tusd's body reader it is no io.Seeker.
func reqBody(b []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(b)} }

var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"plain", func(r io.Reader) io.Reader { return struct{ io.Reader }{r} }},
	{"onebyte", iotest.OneByteReader},
	{"dataerr", iotest.DataErrReader},
}

func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if g, w := sha256.Sum256(got), sha256.Sum256(want); g != w {
		t.Fatalf("%s: %d bytes with SHA-256 %x…, want %d bytes with SHA-256 %x…", what, len(got), g[:8], len(want), w[:8])
	}
}

func (e *env) create(size int64, deferred bool) string {
	e.t.Helper()
	ctx := context.Background()
	up, err := e.core.NewUpload(ctx, handler.FileInfo{
		Size: size, SizeIsDeferred: deferred,
		MetaData: handler.MetaData{"filename": "test.bin", "filetype": "application/octet-stream"},
	})
	if err != nil {
		e.t.Fatalf("NewUpload: %v", err)
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		e.t.Fatalf("GetInfo: %v", err)
	}
	return info.ID
}

// key is the object key of upload id.
func (e *env) key(id string) string {
	objectID := id[:strings.LastIndex(id, "+")]
	if p := strings.Trim(e.store.Inner.ObjectPrefix, "/"); p != "" {
		return p + "/" + objectID
	}
	return objectID
}

// req describes a PATCH request besides its offset and body.
type req struct {
	bodyLen      int64 // bodylen.With (the Content-Length); -1: not given
	uploadLength int64 // Upload-Length declaring a deferred length; -1: none
	complete     bool  // Upload-Complete: ?1 (IETF draft)
}

// patch is a PATCH request with a body of known or unknown length.
func (e *env) patch(id string, offset int64, src io.Reader, bodyLen int64) (int64, error) {
	e.t.Helper()
	return e.request(id, offset, src, req{bodyLen: bodyLen, uploadLength: -1})
}

// request drives the store the way tusd's PATCH handler does.
func (e *env) request(id string, offset int64, src io.Reader, r req) (int64, error) {
	e.t.Helper()
	ctx := context.Background()
	if r.bodyLen >= 0 {
		ctx = bodylen.With(ctx, r.bodyLen)
	}
	up, err := e.core.GetUpload(ctx, id)
	if err != nil {
		e.t.Fatalf("GetUpload: %v", err)
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		e.t.Fatalf("GetInfo: %v", err)
	}
	if info.Offset != offset {
		e.t.Fatalf("the upload is at offset %d, the request at %d", info.Offset, offset)
	}
	if !info.SizeIsDeferred && info.Offset == info.Size {
		return 0, nil
	}
	if r.uploadLength >= 0 {
		if err := e.core.AsLengthDeclarableUpload(up).DeclareLength(ctx, r.uploadLength); err != nil {
			e.t.Fatalf("DeclareLength(%d): %v", r.uploadLength, err)
		}
		info.Size, info.SizeIsDeferred = r.uploadLength, false
	}
	n, err := up.WriteChunk(ctx, offset, src)
	info.Offset = offset + n
	if err == nil {
		after, gerr := up.GetInfo(ctx)
		if gerr != nil {
			e.t.Fatalf("GetInfo after WriteChunk: %v", gerr)
		}
		if after.Offset != info.Offset {
			e.t.Errorf("GetInfo after writing %d bytes at %d reports offset %d", n, offset, after.Offset)
		}
	}
	// tusd tries to finish the upload even after an error.
	var finishErr error
	if !info.SizeIsDeferred && info.Offset == info.Size {
		finishErr = up.FinishUpload(ctx)
	}
	if err != nil {
		return n, err
	}
	if finishErr != nil {
		return n, fmt.Errorf("FinishUpload: %w", finishErr)
	}
	if r.complete && info.SizeIsDeferred {
		now, err := up.GetInfo(ctx)
		if err != nil {
			e.t.Fatalf("GetInfo: %v", err)
		}
		if err := e.core.AsLengthDeclarableUpload(up).DeclareLength(ctx, now.Offset); err != nil {
			e.t.Fatalf("DeclareLength(%d): %v", now.Offset, err)
		}
		if err := up.FinishUpload(ctx); err != nil {
			return n, fmt.Errorf("FinishUpload: %w", err)
		}
	}
	return n, nil
}

// checkOffset checks that the store's view of the upload and what the fake
// S3 holds both say want bytes.
func (e *env) checkOffset(id string, want int64) {
	e.t.Helper()
	if got := e.offset(id); got != want {
		e.t.Fatalf("the store reports offset %d, want %d", got, want)
	}
	if got := e.s3.held(e.key(id)); got != want {
		e.t.Fatalf("S3 holds %d bytes of the upload, want %d", got, want)
	}
}

// checkObject checks the completed object's bytes and that no .part tail
// is left.
func (e *env) checkObject(id string, want []byte) {
	e.t.Helper()
	got, ok := e.s3.object(e.key(id))
	if !ok {
		e.t.Fatalf("no object %s (S3 holds %d bytes of the upload in parts)", e.key(id), e.s3.held(e.key(id)))
	}
	checkBytes(e.t, "object "+e.key(id), got, want)
	if tail, ok := e.s3.object(e.key(id) + ".part"); ok {
		e.t.Errorf("a .part tail of %d bytes is left", len(tail))
	}
	e.checkFullObject(id, want)
	e.checkSHA(id, want)
}

// counter reads a counter of the store's metrics.
func (e *env) counter(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (e *env) writes(path string) float64 { return e.counter("tusgate_s3_writes_total", "path", path) }
func (e *env) parts(how string) float64   { return e.counter("tusgate_s3_parts_total", "how", how) }

// cut returns the part sizes of size bytes cut into parts of partSize.
func cut(size, partSize int64) []int64 {
	var parts []int64
	for size > 0 {
		parts = append(parts, min(size, partSize))
		size -= partSize
	}
	return parts
}

// TestWriteWholeUpload writes an upload in one request.
func TestWriteWholeUpload(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		for _, size := range []int64{1, 15, 16, 63, 64, 65, 150, 192} {
			for _, rd := range readers {
				for _, withLen := range []bool{true, false} {
					t.Run(fmt.Sprintf("size=%d/%s/length=%v", size, rd.name, withLen), func(t *testing.T) {
						e := newEnv(t, stream)
						data := testData(int(size), uint64(size))
						id := e.create(size, false)
						bodyLen := int64(-1)
						if withLen {
							bodyLen = size
						}
						n, err := e.patch(id, 0, rd.wrap(bytes.NewReader(data)), bodyLen)
						if err != nil || n != size {
							t.Fatalf("WriteChunk = %d, %v; want %d, nil", n, err, size)
						}
						e.checkObject(id, data)
						want := cut(size, testPartSize)
						if got := e.s3.completedParts(e.key(id)); !slices.Equal(got, want) {
							t.Errorf("parts %v, want %v", got, want)
						}
						sent := map[int32]int{}
						for _, c := range e.s3.callsFor(e.key(id)) {
							sent[c.part]++
							if c.err != nil {
								t.Errorf("UploadPart %d (attempt %d) failed: %v", c.part, c.attempt, c.err)
							}
							if stream && c.seeker {
								t.Errorf("part %d was sent from a seekable body, not streamed", c.part)
							}
							if stream && c.retries != 1 {
								t.Errorf("streamed part %d allows the SDK %d attempts; a stream cannot be sent again", c.part, c.retries)
							}
							if c.contentLength != want[c.part-1] {
								t.Errorf("part %d was sent with ContentLength %d, want %d", c.part, c.contentLength, want[c.part-1])
							}
						}
						for p, k := range sent {
							if k != 1 {
								t.Errorf("part %d was sent %d times", p, k)
							}
						}
						if len(sent) != len(want) {
							t.Errorf("%d parts were sent, want %d", len(sent), len(want))
						}
						how, path := "buffered", "buffer"
						if stream {
							how, path = "streamed", "stream"
						}
						if got := e.writes(path); got != 1 {
							t.Errorf("writes{path=%q} = %v, want 1", path, got)
						}
						if got := e.parts(how); got != float64(len(want)) {
							t.Errorf("parts{how=%q} = %v, want %d", how, got, len(want))
						}
						if got := e.writes("window") + e.parts("resent") + e.parts("tail"); got != 0 {
							t.Errorf("window writes, resent parts and tails: %v, want 0", got)
						}
						// The .info, and again with the upload's SHA-256.
						if got := e.s3.count("PutObject"); got != 2 {
							t.Errorf("%d PutObject calls, want 2 (the .info, twice)", got)
						}
					})
				}
			}
		}
	})
}

// TestWriteWithObjectPrefix stores under s3store's ObjectPrefix.
func TestWriteWithObjectPrefix(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream, func(s *s3store.S3Store) { s.ObjectPrefix = "uploads/tus" })
		data := testData(150, 1)
		id := e.create(150, false)
		for _, c := range [][2]int64{{0, 10}, {10, 100}, {100, 150}} {
			if n, err := e.patch(id, c[0], reqBody(data[c[0]:c[1]]), c[1]-c[0]); err != nil || n != c[1]-c[0] {
				t.Fatalf("WriteChunk at %d = %d, %v", c[0], n, err)
			}
		}
		if !strings.HasPrefix(e.key(id), "uploads/tus/") {
			t.Fatalf("key %q", e.key(id))
		}
		e.checkObject(id, data)
	})
}

// TestWriteEmptyUpload finishes an upload of no bytes.
func TestWriteEmptyUpload(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		for _, bodyLen := range []int64{0, -1} {
			e := newEnv(t, stream)
			id := e.create(0, false)
			ctx := context.Background()
			if bodyLen >= 0 {
				ctx = bodylen.With(ctx, bodyLen)
			}
			up, err := e.store.GetUpload(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := up.WriteChunk(ctx, 0, reqBody(nil)); n != 0 || err != nil {
				t.Fatalf("WriteChunk = %d, %v", n, err)
			}
			if err := up.FinishUpload(ctx); err != nil {
				t.Fatalf("FinishUpload: %v", err)
			}
			e.checkObject(id, nil)
		}
	})
}

// TestSmallWrites writes an upload in many requests, most smaller than a
// part, some smaller than the minimum part size.
func TestSmallWrites(t *testing.T) {
	const size = 150
	forModes(t, func(t *testing.T, stream bool) {
		for _, chunk := range []int64{1, 7, 10, 15, 20, 40, 64, 70, 100} {
			for _, withLen := range []bool{true, false} {
				t.Run(fmt.Sprintf("chunk=%d/length=%v", chunk, withLen), func(t *testing.T) {
					e := newEnv(t, stream)
					data := testData(size, uint64(chunk))
					id := e.create(size, false)
					tails := 0
					for off := int64(0); off < size; {
						c := min(chunk, size-off)
						bodyLen := int64(-1)
						if withLen {
							bodyLen = c
						}
						n, err := e.patch(id, off, reqBody(data[off:off+c]), bodyLen)
						if err != nil || n != c {
							t.Fatalf("WriteChunk of %d bytes at %d = %d, %v", c, off, n, err)
						}
						off += c
						if off < size {
							e.checkOffset(id, off)
							if tail, ok := e.s3.object(e.key(id) + ".part"); ok {
								tails++
								if int64(len(tail)) >= testMinPart {
									t.Fatalf("a .part tail of %d bytes, not below the minimum part size", len(tail))
								}
							}
						}
					}
					e.checkObject(id, data)
					if e.s3.count("CompleteMultipartUpload") != 1 {
						t.Errorf("%d CompleteMultipartUpload calls", e.s3.count("CompleteMultipartUpload"))
					}
					if chunk < testMinPart {
						if tails == 0 {
							t.Errorf("no .part tail was ever stored")
						}
						if e.parts("tail") == 0 {
							t.Errorf("parts{how=\"tail\"} = 0")
						}
					}
				})
			}
		}
	})
}

// TestSourceEndsEarly: the request body ends before its Content-Length, as
// tusd's body reader does when the client disconnects. Every byte read must
// be stored, and the upload must resume from there.
func TestSourceEndsEarly(t *testing.T) {
	const size = 200
	forModes(t, func(t *testing.T, stream bool) {
		for _, prefix := range []int64{0, 10, 64} {
			for _, k := range []int64{0, 5, 40, 54, 64, 70, 100, 128, 150} {
				if prefix+k >= size {
					continue
				}
				for _, rd := range readers[:2] {
					t.Run(fmt.Sprintf("prefix=%d/k=%d/%s", prefix, k, rd.name), func(t *testing.T) {
						e := newEnv(t, stream)
						data := testData(size, uint64(prefix*1000+k))
						id := e.create(size, false)
						if prefix > 0 {
							if n, err := e.patch(id, 0, reqBody(data[:prefix]), prefix); err != nil || n != prefix {
								t.Fatalf("first WriteChunk = %d, %v", n, err)
							}
						}
						src := rd.wrap(io.LimitReader(bytes.NewReader(data[prefix:]), k))
						n, err := e.patch(id, prefix, src, size-prefix)
						if err != nil || n != k {
							t.Fatalf("WriteChunk of a body ending after %d of %d bytes = %d, %v; want %d, nil", k, size-prefix, n, err, k)
						}
						e.checkOffset(id, prefix+k)
						if tail, ok := e.s3.object(e.key(id) + ".part"); ok && int64(len(tail)) >= testMinPart {
							t.Errorf("a .part tail of %d bytes", len(tail))
						}
						rest := size - prefix - k
						n, err = e.patch(id, prefix+k, reqBody(data[prefix+k:]), rest)
						if err != nil || n != rest {
							t.Fatalf("resumed WriteChunk = %d, %v; want %d, nil", n, err, rest)
						}
						e.checkObject(id, data)
					})
				}
			}
		}
	})
}

// deferredStep is a request of a deferred-length upload.
type deferredStep struct {
	n int64 // bytes in the body
	r req
}

// bytesStep is a request with n bytes and no Upload-Length.
func bytesStep(n int64) deferredStep { return deferredStep{n: n, r: req{bodyLen: n, uploadLength: -1}} }

type deferredTest struct {
	name  string
	steps []deferredStep
	size  int64
}

// runDeferred runs deferred-length uploads in both modes, with and without
// body lengths, and checks the objects.
func runDeferred(t *testing.T, tests []deferredTest, newCore func(e *env) core) {
	forModes(t, func(t *testing.T, stream bool) {
		for _, tt := range tests {
			for _, withLen := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/length=%v", tt.name, withLen), func(t *testing.T) {
					e := newEnv(t, stream)
					if newCore != nil {
						e.core = newCore(e)
					}
					data := testData(int(tt.size), uint64(len(tt.name)))
					id := e.create(0, true)
					off := int64(0)
					for _, s := range tt.steps {
						if !withLen {
							s.r.bodyLen = -1
						}
						n, err := e.request(id, off, reqBody(data[off:off+s.n]), s.r)
						if err != nil || n != s.n {
							t.Fatalf("WriteChunk of %d bytes at %d = %d, %v", s.n, off, n, err)
						}
						off += n
					}
					if off != tt.size {
						t.Fatalf("test wrote %d bytes of %d", off, tt.size)
					}
					e.checkObject(id, data)
				})
			}
		}
	})
}

// TestDeferredLength: uploads whose length is declared late.
func TestDeferredLength(t *testing.T) {
	runDeferred(t, []deferredTest{
		{"length with the last bytes", []deferredStep{bytesStep(50), bytesStep(7), bytesStep(70), {23, req{bodyLen: 23, uploadLength: 150}}}, 150},
		{"length with the last bytes, a tail before", []deferredStep{bytesStep(50), bytesStep(7), {5, req{bodyLen: 5, uploadLength: 62}}}, 62},
		{"length without bytes then the last bytes", []deferredStep{bytesStep(50), bytesStep(7), {0, req{bodyLen: 0, uploadLength: 100}}, bytesStep(43)}, 100},
		{"length at the offset, all in parts", []deferredStep{bytesStep(64), bytesStep(20), {0, req{bodyLen: 0, uploadLength: 84}}}, 84},
		{"upload-complete filling a part", []deferredStep{bytesStep(50), {30, req{bodyLen: 30, uploadLength: -1, complete: true}}}, 80},
		{"upload-complete, a tail before", []deferredStep{bytesStep(50), bytesStep(7), {30, req{bodyLen: 30, uploadLength: -1, complete: true}}}, 87},
	}, nil)
}

// lengthAtOffsetWithTail is tus 1.0's end of a deferred-length upload when
// the client learns that its stream ended after sending the last bytes,
// which were too few for a part and wait in the .part tail: a PATCH with
// Upload-Length equal to the offset and an empty body.
var lengthAtOffsetWithTail = []deferredTest{
	{"length at the offset with a tail", []deferredStep{bytesStep(50), bytesStep(7), {0, req{bodyLen: 0, uploadLength: 57}}}, 57},
	{"length at the offset, only a tail", []deferredStep{bytesStep(7), {0, req{bodyLen: 0, uploadLength: 7}}}, 7},
}

// TestDeferredLengthDeclaredAtOffsetWithTail: the tail must end up in the
// object. (s3store does this: TestDeferredLengthDeclaredAtOffsetReference.)
func TestDeferredLengthDeclaredAtOffsetWithTail(t *testing.T) {
	runDeferred(t, lengthAtOffsetWithTail, nil)
}

// TestDeferredLengthDeclaredAtOffsetReference runs the same requests
// against s3store alone, which stores the whole upload. (It completes
// without the parts' checksums, so its uploads are created without.)
func TestDeferredLengthDeclaredAtOffsetReference(t *testing.T) {
	runDeferred(t, lengthAtOffsetWithTail, func(e *env) core {
		withoutChecksums(&e.store.Inner)
		return e.store.Inner
	})
}

// TestDeferredLengthUploadCompleteWithTail: IETF draft (tusgate's
// --ietf-draft, on by default): the last request carries Upload-Complete:
// ?1 and too few bytes for a part; tusd declares the length as the offset
// and calls FinishUpload without another WriteChunk. The tail must end up
// in the object. (s3store alone loses it too.)
func TestDeferredLengthUploadCompleteWithTail(t *testing.T) {
	runDeferred(t, []deferredTest{
		{"upload-complete with a tail", []deferredStep{bytesStep(50), {7, req{bodyLen: 7, uploadLength: -1, complete: true}}}, 57},
		{"upload-complete, only a tail", []deferredStep{{7, req{bodyLen: 7, uploadLength: -1, complete: true}}}, 7},
	}, nil)
}

var errS3 = errors.New("S3: 500 InternalError")

// failOnce fails the first attempt at part.
func failOnce(part int32) func(int32, int) error {
	return func(p int32, attempt int) error {
		if p == part && attempt == 1 {
			return errS3
		}
		return nil
	}
}

// abortOnce fails the first attempt at part after read bytes of its body.
func abortOnce(part int32, read int64) func(int32, int) (int64, error) {
	return func(p int32, attempt int) (int64, error) {
		if p == part && attempt == 1 {
			return read, errors.New("S3: connection reset")
		}
		return 0, nil
	}
}

// TestUploadPartFailsOnce: S3 fails one UploadPart call, and the part is
// sent again from memory. (Without Stream, a body that ends mid-part never
// gets that part to S3, and the write fails.)
func TestUploadPartFailsOnce(t *testing.T) {
	const size = 150
	tests := []struct {
		name   string
		prefix int64 // written before the hook is set
		k      int64 // bytes in the failing request's body (of size-prefix declared)
		hook   func(f *fakeS3)
	}{
		{"part 1 after its body", 0, size, func(f *fakeS3) { f.failUploadPart = failOnce(1) }},
		{"part 2 after its body", 0, size, func(f *fakeS3) { f.failUploadPart = failOnce(2) }},
		{"last part after its body", 0, size, func(f *fakeS3) { f.failUploadPart = failOnce(3) }},
		{"part 2 mid-body", 0, size, func(f *fakeS3) { f.abortUploadPart = abortOnce(2, 10) }},
		{"part 1 mid-body, tail first", 10, size - 10, func(f *fakeS3) { f.abortUploadPart = abortOnce(1, 20) }},
		{"part 1 after its body, tail first", 10, size - 10, func(f *fakeS3) { f.failUploadPart = failOnce(1) }},
		{"part 2 mid-body, the body ends short", 0, 94, func(f *fakeS3) { f.abortUploadPart = abortOnce(2, 10) }},
	}
	forModes(t, func(t *testing.T, stream bool) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, stream)
				data := testData(size, uint64(len(tt.name)))
				id := e.create(size, false)
				if tt.prefix > 0 {
					if n, err := e.patch(id, 0, reqBody(data[:tt.prefix]), tt.prefix); err != nil || n != tt.prefix {
						t.Fatalf("first WriteChunk = %d, %v", n, err)
					}
				}
				e.s3.configure(tt.hook)
				off := tt.prefix
				n, err := e.patch(id, off, reqBody(data[off:off+tt.k]), size-off)
				held := e.s3.held(e.key(id))
				e.checkOffset(id, held)
				if stream || tt.k == size-off {
					if err != nil || n != tt.k {
						t.Fatalf("WriteChunk = %d, %v; want %d, nil", n, err, tt.k)
					}
					if got := e.parts("resent"); got != 1 {
						t.Errorf("parts{how=\"resent\"} = %v, want 1", got)
					}
				} else {
					if err == nil {
						t.Fatalf("WriteChunk = %d, nil; want an error", n)
					}
					// Only bytes stored count, and the tail's still do.
					if held < off || n != held-off {
						t.Errorf("WriteChunk = %d with S3 holding %d bytes from %d; want %d", n, held, off, held-off)
					}
				}
				e.s3.configure(func(f *fakeS3) { f.failUploadPart, f.abortUploadPart = nil, nil })
				e.finish(id, data)
			})
		}
	})
}

// finish writes the rest of the upload from where the store says it is, and
// checks the object.
func (e *env) finish(id string, data []byte) {
	e.t.Helper()
	size := int64(len(data))
	for off := e.offset(id); off < size; {
		n, err := e.patch(id, off, reqBody(data[off:]), size-off)
		if err != nil || n != size-off {
			e.t.Fatalf("resumed WriteChunk at %d = %d, %v", off, n, err)
		}
		off += n
	}
	e.checkObject(id, data)
}

// TestUploadPartFailsForGood: S3 fails every attempt at a part. The write
// fails; what it reports written, s3store's offset and what S3 holds must
// agree, and the upload must resume from there.
//
// When the failing part is not the last, S3's first answer for it is held
// back until S3 has stored the part after it (at most a guard of 2 s for a
// store that waits for each answer before sending the next part): a store
// that streams the next part while waiting must not leave that part in S3
// without the failed one before it.
func TestUploadPartFailsForGood(t *testing.T) {
	const size = 150
	tests := []struct {
		name   string
		prefix int64
		part   int32
		last   bool
	}{
		{"part 1", 0, 1, false},
		{"part 2", 0, 2, false},
		{"last part", 0, 3, true},
		{"part 1, tail first", 10, 1, false},
		{"part 2, tail first", 10, 2, false},
	}
	forModes(t, func(t *testing.T, stream bool) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, stream)
				data := testData(size, uint64(len(tt.name)))
				id := e.create(size, false)
				if tt.prefix > 0 {
					if n, err := e.patch(id, 0, reqBody(data[:tt.prefix]), tt.prefix); err != nil || n != tt.prefix {
						t.Fatalf("first WriteChunk = %d, %v", n, err)
					}
				}
				nextStored := make(chan struct{})
				var closeOnce sync.Once
				e.s3.configure(func(f *fakeS3) {
					f.afterUploadPart = func(c partCall) {
						if c.part == tt.part+1 && c.err == nil {
							closeOnce.Do(func() { close(nextStored) })
						}
					}
					f.failUploadPart = func(p int32, attempt int) error {
						if p != tt.part {
							return nil
						}
						if attempt == 1 && stream && !tt.last {
							select {
							case <-nextStored:
							case <-time.After(2 * time.Second):
							}
						}
						return errS3
					}
				})
				off := tt.prefix
				n, err := e.patch(id, off, reqBody(data[off:]), size-off)
				if err == nil {
					t.Fatalf("WriteChunk = %d, nil; want an error", n)
				}
				e.s3.configure(func(f *fakeS3) { f.failUploadPart, f.afterUploadPart = nil, nil })
				held := e.s3.held(e.key(id))
				if got := e.offset(id); got != held {
					t.Errorf("the store reports offset %d, S3 holds %d bytes", got, held)
				}
				if nums := e.s3.partNumbers(e.key(id)); len(nums) > 0 && (nums[0] != 1 || nums[len(nums)-1] != int32(len(nums))) {
					t.Errorf("S3 holds parts %v (of %v bytes) after part %d failed: s3store counts the bytes of the parts after the gap at the wrong offset", nums, e.s3.partSizes(e.key(id)), tt.part)
				}
				if want := max(held-off, 0); n != want {
					t.Errorf("WriteChunk = %d with S3 holding %d bytes from %d; want %d", n, held, off, want)
				}
				e.finish(id, data)
			})
		}
	})
}

// TestResendFromMemory looks at the UploadPart calls when S3 fails a part
// once: the first attempt gets the part's body (not rewindable), the second
// the buffer (rewindable, for the SDK's retries).
func TestResendFromMemory(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream)
		data := testData(150, 9)
		id := e.create(150, false)
		e.s3.configure(func(f *fakeS3) { f.failUploadPart = failOnce(2) })
		if n, err := e.patch(id, 0, reqBody(data), 150); err != nil || n != 150 {
			t.Fatalf("WriteChunk = %d, %v", n, err)
		}
		e.checkObject(id, data)
		var got []string
		for _, c := range e.s3.callsFor(e.key(id)) {
			got = append(got, fmt.Sprintf("%d/%d seeker=%v ok=%v", c.part, c.attempt, c.seeker, c.err == nil))
		}
		slices.Sort(got)
		want := []string{"1/1 seeker=false ok=true", "2/1 seeker=false ok=false", "2/2 seeker=true ok=true", "3/1 seeker=false ok=true"}
		if !slices.Equal(got, want) {
			t.Errorf("UploadPart calls\n%q\nwant\n%q", got, want)
		}
		how := map[bool]string{true: "streamed", false: "buffered"}[stream]
		if e.parts(how) != 2 || e.parts("resent") != 1 {
			t.Errorf("parts %s=%v resent=%v, want 2 and 1", how, e.parts(how), e.parts("resent"))
		}
	})
}

// TestPartsInParallel: the next parts of a write go to S3 while the first
// still waits for S3's answer, up to Parallel at once, and S3 still stores
// them in order; streamed, and over plain HTTP, where each part goes once
// it is complete.
func TestPartsInParallel(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) { testPartsInParallel(t, stream) })
}

func testPartsInParallel(t *testing.T, stream bool) {
	for _, parallel := range []int{1, 3} {
		t.Run(fmt.Sprintf("parallel=%d", parallel), func(t *testing.T) {
			e := newEnv(t, stream)
			e.store.Parallel = parallel
			const size = 5 * testPartSize
			data := testData(size, 21)
			id := e.create(size, false)
			var mu sync.Mutex
			begun := map[int32]bool{}
			others := make(chan struct{}) // closed when parts 2 and 3 have begun
			var stored []int32
			parallelSeen := false
			e.s3.configure(func(f *fakeS3) {
				f.beginUploadPart = func(p int32) {
					mu.Lock()
					defer mu.Unlock()
					if begun[p] {
						return
					}
					begun[p] = true
					if begun[2] && begun[3] && (p == 2 || p == 3) {
						close(others)
					}
				}
				// S3 answers part 1 only once parts 2 and 3 are on their
				// way, or after a guard: 1 s where it is expected to fire
				// (Parallel 1), 20 s where parts 2 and 3 must come first.
				guard := time.Second
				if parallel >= 3 {
					guard = 20 * time.Second
				}
				f.failUploadPart = func(p int32, attempt int) error {
					if p == 1 {
						select {
						case <-others:
							mu.Lock()
							parallelSeen = true
							mu.Unlock()
						case <-time.After(guard):
						}
					}
					return nil
				}
				f.afterUploadPart = func(c partCall) {
					mu.Lock()
					defer mu.Unlock()
					stored = append(stored, c.part)
				}
			})
			if n, err := e.patch(id, 0, reqBody(data), size); err != nil || n != size {
				t.Fatalf("WriteChunk = %d, %v", n, err)
			}
			e.checkObject(id, data)
			mu.Lock()
			defer mu.Unlock()
			if parallelSeen != (parallel >= 3) {
				t.Errorf("with Parallel %d, parts 2 and 3 went to S3 while part 1 waited for its answer: %v", parallel, parallelSeen)
			}
			if !slices.Equal(stored, []int32{1, 2, 3, 4, 5}) {
				t.Errorf("S3 stored parts in the order %v, want 1 to 5", stored)
			}
		})
	}
}

// TestTailFails: S3 fails the requests around the .part tail. The write
// fails, and the tail it started from still counts; only the deletion of a
// tail whose bytes are in a part may fail unnoticed (a stale tail counts
// for nothing).
func TestTailFails(t *testing.T) {
	const size = 150
	tests := []struct {
		name   string
		prefix int64
		op     string
		n      int64 // body of the failing request
		ok     bool  // the write succeeds
	}{
		{"storing the tail", 0, "PutObject", 10, false},
		{"storing the tail after a part", 0, "PutObject", 70, false},
		{"reading the tail", 10, "GetObject", 100, false},
		{"deleting the stale tail", 10, "DeleteObject", 100, true},
		{"storing the tail again", 10, "PutObject", 3, false},
	}
	forModes(t, func(t *testing.T, stream bool) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, stream)
				data := testData(size, 5)
				id := e.create(size, false)
				if tt.prefix > 0 {
					if n, err := e.patch(id, 0, reqBody(data[:tt.prefix]), tt.prefix); err != nil || n != tt.prefix {
						t.Fatalf("first WriteChunk = %d, %v", n, err)
					}
				}
				e.s3.configure(func(f *fakeS3) {
					f.failOp = func(op, key string) error {
						if op == tt.op && strings.HasSuffix(key, ".part") {
							return errors.New("S3: 503 SlowDown")
						}
						return nil
					}
				})
				off := tt.prefix
				n, err := e.patch(id, off, reqBody(data[off:off+tt.n]), tt.n)
				if (err == nil) != tt.ok {
					t.Fatalf("WriteChunk = %d, %v; want success %v", n, err, tt.ok)
				}
				e.s3.configure(func(f *fakeS3) { f.failOp = nil })
				held := e.s3.held(e.key(id))
				e.checkOffset(id, held)
				if held < off || n != held-off {
					t.Errorf("WriteChunk = %d with S3 holding %d bytes from %d; want %d", n, held, off, held-off)
				}
				if tt.ok {
					if _, ok := e.s3.object(e.key(id) + ".part"); !ok {
						t.Errorf("the stale tail is gone although its deletion failed")
					}
				}
				e.finish(id, data)
			})
		}
	})
}

// TestBufferBudgetSpent: a write that gets no buffer streams through a
// window.
func TestBufferBudgetSpent(t *testing.T) {
	chunks := []int64{40, 7, 7, 70, 26}
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream)
		e.store.Buffers = NewBuffers(0)
		data := testData(150, 11)
		id := e.create(150, false)
		off := int64(0)
		for _, c := range chunks {
			if n, err := e.patch(id, off, reqBody(data[off:off+c]), c); err != nil || n != c {
				t.Fatalf("WriteChunk of %d at %d = %d, %v", c, off, n, err)
			}
			off += c
			if off < 150 {
				e.checkOffset(id, off)
			}
		}
		e.checkObject(id, data)
		if got := e.writes("window"); got != float64(len(chunks)) {
			t.Errorf("writes{path=\"window\"} = %v, want %d", got, len(chunks))
		}
		if n := e.store.Buffers.Windows(); n != 0 {
			t.Errorf("%d windows were not returned", n)
		}
		if got := e.writes("stream") + e.writes("buffer"); got != 0 {
			t.Errorf("%v writes took the stream or buffer path", got)
		}
	})
}

// TestBufferBudgetMixed alternates between part buffers and windows, each
// continuing the tail and parts of the other.
func TestBufferBudgetMixed(t *testing.T) {
	chunks := []int64{10, 7, 20, 7, 50, 3, 40, 13}
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream)
		e.store.Buffers = NewBuffers(minClass)
		data := testData(150, 13)
		id := e.create(150, false)
		off := int64(0)
		for i, c := range chunks {
			var held []byte
			if i%2 == 1 {
				var ok bool
				if held, ok = e.store.Buffers.Get(1); !ok {
					t.Fatal("Get(1) from an unused budget failed")
				}
			}
			n, err := e.patch(id, off, reqBody(data[off:off+c]), c)
			if held != nil {
				e.store.Buffers.Put(held)
			}
			if err != nil || n != c {
				t.Fatalf("WriteChunk %d of %d bytes at %d = %d, %v", i, c, off, n, err)
			}
			off += c
			if off < 150 {
				e.checkOffset(id, off)
			}
		}
		e.checkObject(id, data)
		if got := e.writes("window"); got != float64(len(chunks)/2) {
			t.Errorf("writes{path=\"window\"} = %v, want %d", got, len(chunks)/2)
		}
	})
}

// TestFinishUsesStoredParts: FinishUpload after WriteChunk on the same
// upload object completes with the parts written. It lists them once, for
// the checksums S3 recorded (see complete), and not again to learn the
// parts.
func TestFinishUsesStoredParts(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		for _, first := range []int64{150, 100, 10} {
			t.Run(fmt.Sprintf("first=%d", first), func(t *testing.T) {
				e := newEnv(t, stream)
				data := testData(150, uint64(first))
				id := e.create(150, false)
				ctx := context.Background()
				off := int64(0)
				for _, c := range []int64{first, 150 - first} {
					if c == 0 {
						continue
					}
					up, err := e.store.GetUpload(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if info, err := up.GetInfo(ctx); err != nil || info.Offset != off {
						t.Fatalf("GetInfo = %+v, %v", info, err)
					}
					lists := e.s3.count("ListParts")
					n, err := up.WriteChunk(bodylen.With(ctx, c), off, reqBody(data[off:off+c]))
					if err != nil || n != c {
						t.Fatalf("WriteChunk = %d, %v", n, err)
					}
					off += n
					if info, err := up.GetInfo(ctx); err != nil || info.Offset != off || info.Size != 150 {
						t.Fatalf("GetInfo after WriteChunk = offset %d size %d, %v; want %d, 150", info.Offset, info.Size, err, off)
					}
					if off < 150 {
						continue
					}
					completes := e.s3.count("CompleteMultipartUpload")
					afterWrite := e.s3.count("ListParts")
					if err := up.FinishUpload(ctx); err != nil {
						t.Fatalf("FinishUpload: %v", err)
					}
					if got := e.s3.count("CompleteMultipartUpload") - completes; got != 1 {
						t.Errorf("%d CompleteMultipartUpload calls, want 1", got)
					}
					if got := e.s3.count("ListParts") - afterWrite; got != 1 {
						t.Errorf("FinishUpload listed parts %d times, want 1", got)
					}
					if first == 150 && afterWrite != lists {
						t.Errorf("a write from offset 0 listed parts %d times", afterWrite-lists)
					}
				}
				e.checkObject(id, data)
				if got := e.offset(id); got != 150 {
					t.Errorf("the store reports offset %d after completion", got)
				}
			})
		}
	})
}

// TestPartSizeAboveMaxParts: an upload too large for MaxMultipartParts
// parts of PreferredPartSize is cut into larger parts, as s3store cuts it.
func TestPartSizeAboveMaxParts(t *testing.T) {
	for _, path := range []string{"stream", "buffer", "window"} {
		for _, size := range []int64{256, 257, 300, 301} {
			t.Run(fmt.Sprintf("%s/size=%d", path, size), func(t *testing.T) {
				e := newEnv(t, path == "stream", func(s *s3store.S3Store) { s.MaxMultipartParts = 4 })
				if path == "window" {
					e.store.Buffers = NewBuffers(0)
				}
				data := testData(int(size), uint64(size))
				id := e.create(size, false)
				if n, err := e.patch(id, 0, reqBody(data), size); err != nil || n != size {
					t.Fatalf("WriteChunk = %d, %v", n, err)
				}
				e.checkObject(id, data)
				want := cut(size, max(testPartSize, (size+3)/4))
				if got := e.s3.completedParts(e.key(id)); !slices.Equal(got, want) {
					t.Errorf("parts %v, want %v", got, want)
				}
				if got := e.writes(path); got != 1 {
					t.Errorf("writes{path=%q} = %v", path, got)
				}
			})
		}
	}
}

// TestReadAndTerminate reads a finished upload and terminates uploads.
func TestReadAndTerminate(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream)
		ctx := context.Background()
		data := testData(150, 7)
		id := e.create(150, false)
		if n, err := e.patch(id, 0, reqBody(data), 150); err != nil || n != 150 {
			t.Fatalf("WriteChunk = %d, %v", n, err)
		}
		up, err := e.store.GetUpload(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := up.GetReader(ctx)
		if err != nil {
			t.Fatalf("GetReader: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		checkBytes(t, "GetReader", got, data)

		// An unfinished upload with parts and a tail.
		id2 := e.create(150, false)
		if n, err := e.patch(id2, 0, reqBody(data[:70]), 70); err != nil || n != 70 {
			t.Fatalf("WriteChunk = %d, %v", n, err)
		}
		for _, id := range []string{id, id2} {
			up, err := e.store.GetUpload(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.store.AsTerminatableUpload(up).Terminate(ctx); err != nil {
				t.Fatalf("Terminate: %v", err)
			}
			for _, suffix := range []string{"", ".info", ".part"} {
				if _, ok := e.s3.object(e.key(id) + suffix); ok {
					t.Errorf("%s%s is left after Terminate", e.key(id), suffix)
				}
			}
			if _, err := e.s3Info(id); !errors.Is(err, handler.ErrNotFound) {
				t.Errorf("GetInfo after Terminate: %v, want ErrNotFound", err)
			}
		}
		if sizes := e.s3.partSizes(e.key(id2)); sizes != nil {
			t.Errorf("the multipart upload is left after Terminate: parts %v", sizes)
		}
	})
}

func (e *env) s3Info(id string) (handler.FileInfo, error) {
	up, err := e.store.GetUpload(context.Background(), id)
	if err != nil {
		return handler.FileInfo{}, err
	}
	return up.GetInfo(context.Background())
}
