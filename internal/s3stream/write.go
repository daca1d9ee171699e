package s3stream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/bodylen"
	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/internal/tuserror"
)

// bodyLength is the request body's length (bodylen; -1: unknown). tusd
// hands stores only a reader, and the length lets a write size its parts
// up front: the last part of a buffered write is sent while it arrives,
// and a write through a window must declare every request's length before
// its first byte.
func bodyLength(ctx context.Context) int64 {
	if n, ok := bodylen.From(ctx); ok {
		return n
	}
	return -1
}

// ErrBusy answers a request body of unknown length (no Content-Length)
// when no part buffer is free to hold it.
var ErrBusy = handler.Error{
	ErrorCode: "ERR_SERVER_BUSY",
	Message:   "the server has no memory free for a request body without Content-Length; retry later, or send Content-Length",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusServiceUnavailable,
		Body:       "ERR_SERVER_BUSY: the server has no memory free for a request body without Content-Length; retry later, or send Content-Length\n",
		Header:     handler.HTTPHeader{"Content-Type": "text/plain; charset=utf-8", "Retry-After": tuserror.RetryAfter},
	},
}

// ErrLengthRequired answers a request body of unknown length whose part
// is larger than the whole buffer budget: it could never be held.
var ErrLengthRequired = handler.NewError("ERR_LENGTH_REQUIRED",
	"this upload's parts are too large to hold a request body without Content-Length; send Content-Length", http.StatusLengthRequired)

// chunkedWait is how long a body of unknown length waits for a part
// buffer before the request is answered with ErrBusy.
const chunkedWait = 10 * time.Second

// WriteChunk stores the bytes of src from offset on: in parts as the plan
// cuts them, and what is too little for a part as the tail.
func (u *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	s := u.s
	st, err := u.state(ctx)
	if err != nil {
		return 0, err
	}
	if st.completed {
		return 0, storeerr.Permanent(fmt.Errorf("s3stream: writing to %s, which is complete", u.id))
	}
	if st.offset() != offset {
		return 0, storeerr.Permanent(fmt.Errorf("s3stream: %s holds %d bytes, not the %d the write starts at", u.id, st.offset(), offset))
	}
	expect := int64(math.MaxInt64 / 4) // deferred length: until the body ends
	if !st.info.SizeIsDeferred {
		expect = st.info.Size - offset
	}
	bodyLen := bodyLength(ctx)
	if bodyLen >= 0 && bodyLen < expect {
		expect = bodyLen
	}
	if expect <= 0 {
		return 0, nil
	}

	objectID, multipartID := layout.SplitID(u.id)
	var verifier *checksum.Verifier
	if e := checksum.From(ctx); e != nil {
		verifier = e.Wrap(src, bodyLength(ctx))
		src = verifier
	}
	w := s.newWriter(&st, objectID, multipartID, src)
	if err := w.prepare(ctx); err != nil {
		u.st = nil
		w.release()
		return 0, err
	}
	defer w.release()
	var before state
	if verifier != nil {
		// Until the body's digest is checked, its parts are provisional
		// and its tail is not written (see pending).
		before = st.clone()
		if err := s.setPending(ctx, &st, len(st.parts)); err != nil {
			u.st = nil
			return 0, err
		}
		w.verify = func() error {
			if err := verifier.Verify(); err != nil {
				return err
			}
			// The body checked out: its parts count from now on, before
			// the tail that follows them replaces the one before. (A tail
			// stored past parts that do not count yet would leave, should
			// the process die before they do, an upload no look can read.)
			return s.clearPending(ctx, &st)
		}
	}
	need := w.cut(int32(len(st.parts)+1), st.partsSize, offset+expect)
	w.lengthKnown = bodyLen >= 0
	if buf, ok := s.Buffers.Get(need); ok {
		w.first = buf
	} else if !w.lengthKnown {
		// Only a buffer can hold a body whose end is not known before it
		// comes: the last part's length must be sent before its bytes.
		if w.first, err = s.bodyBuffer(ctx, need); err != nil {
			return 0, err
		}
	}
	switch {
	case w.first == nil:
		s.Metrics.write("window")
		err = w.writeWindow(ctx, offset+expect)
	case s.Stream:
		s.Metrics.write("stream")
		err = w.write(ctx, offset+expect)
	default:
		s.Metrics.write("buffer")
		err = w.write(ctx, offset+expect)
	}
	if verifier != nil {
		if err = s.settle(ctx, &st, before, verifier, err); err != nil {
			u.st = nil
			return 0, err
		}
	}
	if st.staleTail {
		// Its bytes are in a part now; it no longer counts, whether or not
		// it is deleted.
		if s.deleteTail(ctx, w.key) {
			st.staleTail = false
		}
	}
	s.saveSHA(ctx, &st)
	written := max(st.offset()-offset, 0)
	u.st = &st
	if err != nil {
		// What S3 holds is uncertain after a failed request: read it anew.
		u.st = nil
	}
	return written, err
}

// bodyBuffer waits (at most chunkedWait) for a part buffer of n bytes for
// a body of unknown length.
func (s *Store) bodyBuffer(ctx context.Context, n int64) ([]byte, error) {
	if n > s.Buffers.Limit() {
		return nil, ErrLengthRequired
	}
	waitCtx, cancel := context.WithTimeout(ctx, chunkedWait)
	defer cancel()
	buf, ok := s.Buffers.GetWait(waitCtx, n)
	if !ok {
		return nil, ErrBusy
	}
	return buf, nil
}

// deleteTail removes a stale .part tail and reports whether it is gone. A
// stale tail counts for nothing, so a failure is only logged.
func (s *Store) deleteTail(ctx context.Context, key string) bool {
	_, err := s.Objects.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(s.Inner.Bucket), Key: aws.String(key + ".part")})
	if err != nil {
		s.Log.DebugContext(ctx, "could not delete a stale tail; it counts for nothing and is overwritten or deleted later", "key", key, "error", err.Error())
		return false
	}
	return true
}

// newWriter returns a writer of the upload in state st that reads src.
func (s *Store) newWriter(st *state, objectID, multipartID string, src io.Reader) *writer {
	w := &writer{s: s, st: st, plan: s.newPlan(st.info, st.first), src: &source{r: src},
		key: s.key(objectID), multipartID: multipartID}
	w.startSHA()
	return w
}

// writer is one write. With a part buffer (first) it hands each part, with
// a buffer, to a goroutine of its own (a flight), which sends it to S3
// while the buffer fills from the request body (see source and fillPart):
// over HTTPS as a stream, over plain HTTP once it is complete. With several
// buffers, several parts are on their way at once, so that one S3
// connection's speed does not limit the upload; S3 answers them in order
// (see fillBody), so a part is never stored past a missing one. Without a
// part buffer it streams one part after the other through a window (see
// writeWindow).
type writer struct {
	s    *Store
	st   *state
	plan plan
	src  *source
	// first is the part buffer the write was given, if any; the parts it
	// carries take turns with those in extra buffers, which come from the
	// budget only while it has room to spare (Buffers.GetExtra).
	first       []byte
	firstBusy   bool
	window      []byte // see writeWindow
	key         string
	multipartID string
	// inflight holds the parts handed to flights and not yet taken, oldest
	// first.
	inflight []*flight
	// lengthKnown: the request body's length was declared (Content-Length),
	// so a body that ends before it was cut off.
	lengthKnown bool
	// verify, if set, checks the body's digest (checksum.Verifier); the
	// write's tail waits for it.
	verify func() error
	// tail reads the tail for writeWindow; tailErr is why that failed, if
	// it did.
	tail    *tailReader
	tailErr error
	// sha is the upload's running SHA-256, if it keeps one (see sha.go):
	// the tail's bytes and the body's go through it as they are read.
	sha        *objsha.Hash
	tailHashed bool // the tail's bytes went through sha (a window reading it again must not)
}

// release gives the write's buffers back.
func (w *writer) release() {
	if w.tail != nil {
		w.tail.close()
	}
	if w.first != nil {
		w.s.Buffers.Put(w.first)
		w.first = nil
	}
	if w.window != nil {
		w.s.Buffers.PutWindow(w.window)
		w.window = nil
	}
}

// cut is the size of part number, which starts at upload offset start,
// in a write that ends at end: the plan's part size, or what is left to
// write if less. A tail larger than the plan's part size (the parts of an
// upload whose length was declared late can be smaller than those planned
// before) goes whole into the part.
func (w *writer) cut(number int32, start, end int64) int64 {
	n := w.plan.partSize(number, start)
	if start == w.st.partsSize {
		n = max(n, w.st.tail)
	}
	return min(n, end-start)
}

// fill reads the body into buf until it is full or the body ends, and
// returns how many bytes it read.
func (w *writer) fill(buf []byte) int64 {
	w.src.mu.Lock()
	defer w.src.mu.Unlock()
	k, _ := io.ReadFull(w.src.r, buf) // tusd's body reader only ever ends
	return int64(k)
}

// store sends buf, which starts at upload offset start, as the next part
// (counted as how) or as the tail. Every part before it must be stored.
func (w *writer) store(ctx context.Context, start int64, buf []byte, how string) error {
	n := int64(len(buf))
	if n == 0 {
		return nil
	}
	_, number := w.next()
	if w.plan.isPart(number, start, n) {
		if err := w.plan.check(number); err != nil {
			return err
		}
		etag, err := w.uploadBuffer(ctx, number, buf)
		if err != nil {
			return err
		}
		w.s.Metrics.part(how)
		w.addPart(etag, n)
		return nil
	}
	body := newGuardedReader(buf)
	err := w.putTail(ctx, start, body, n)
	body.detach()
	return err
}

// putTail stores n bytes of body, which start at upload offset start, as
// the tail: they replace the tail before at once, and count from then on.
func (w *writer) putTail(ctx context.Context, start int64, body io.Reader, n int64, opts ...func(*s3.Options)) error {
	if _, streamed := body.(*fillBody); !streamed && w.verify != nil {
		// The tail replaces the one before, whose bytes a failed check
		// must leave counting: it goes only once the body checked out. (A
		// streamed tail's last byte waits for the check instead.)
		if err := w.verify(); err != nil {
			return err
		}
	}
	_, err := w.s.Objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part"),
		Body: body, ContentLength: aws.Int64(n),
		Metadata: map[string]string{tailStartKey: fmt.Sprint(start)},
	}, opts...)
	if err != nil {
		return fmt.Errorf("s3stream: storing the tail of %s: %w", w.key, err)
	}
	w.s.Metrics.part("tail")
	w.st.tail, w.st.staleTail = n, false
	return nil
}

// prepare repairs what a write must not build on (under the upload's
// lock): parts past a gap are blanked, and a tail without its start gets
// one.
func (w *writer) prepare(ctx context.Context) error {
	if err := w.s.blankStale(ctx, w.st, w.key, w.multipartID); err != nil {
		return err
	}
	if err := w.s.clearPending(ctx, w.st); err != nil {
		return err
	}
	return w.stampTail(ctx)
}

// stampTail stores a legacy tail (one without tusgate-tail-start) again
// with its start: once a part holds its bytes, a tail that cannot say where
// it starts would count again should its deletion fail. Legacy tails are
// smaller than the minimum part size, so they are read into memory.
func (w *writer) stampTail(ctx context.Context) error {
	if w.st.tail == 0 || !w.st.legacyTail {
		return nil
	}
	buf := make([]byte, w.st.tail)
	if err := w.readTail(ctx, buf); err != nil {
		return err
	}
	if err := w.putTail(ctx, w.st.partsSize, bytesReaderOf(buf), int64(len(buf))); err != nil {
		return err
	}
	w.st.legacyTail = false
	return nil
}

// readTail reads the counting tail into buf, whose length is its size.
func (w *writer) readTail(ctx context.Context, buf []byte) error {
	body, err := w.openTail(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.ReadFull(body, buf); err != nil {
		return fmt.Errorf("s3stream: reading the tail of %s: %w", w.key, err)
	}
	return nil
}

// openTail opens the counting tail and checks that it is the one the
// upload's state knows.
func (w *writer) openTail(ctx context.Context) (io.ReadCloser, error) {
	out, err := w.s.Objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part")})
	if err != nil {
		return nil, fmt.Errorf("s3stream: reading the tail of %s: %w", w.key, err)
	}
	start, ok, err := tailStart(out.Metadata)
	if err == nil && (aws.ToInt64(out.ContentLength) != w.st.tail || (ok && start != w.st.partsSize)) {
		err = fmt.Errorf("%d bytes from %d, expected %d from %d", aws.ToInt64(out.ContentLength), start, w.st.tail, w.st.partsSize)
	}
	if err != nil {
		out.Body.Close()
		// Under the upload's lock only this write changes the tail.
		return nil, storeerr.Permanent(fmt.Errorf("s3stream: the tail of %s changed: %w", w.key, err))
	}
	return out.Body, nil
}

// uploadBuffer sends buf as part number. The S3 client has let go of buf
// when it returns.
func (w *writer) uploadBuffer(ctx context.Context, number int32, buf []byte) (*string, error) {
	body := newGuardedReader(buf)
	defer body.detach()
	return w.uploadPart(ctx, number, body, int64(len(buf)))
}

func (w *writer) uploadPart(ctx context.Context, number int32, body io.Reader, n int64, opts ...func(*s3.Options)) (*string, error) {
	out, err := w.s.Parts.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:        aws.String(w.s.Inner.Bucket),
		Key:           aws.String(w.key),
		UploadId:      aws.String(w.multipartID),
		PartNumber:    aws.Int32(number),
		Body:          body,
		ContentLength: aws.Int64(n),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3stream: uploading part %d of %s: %w", number, w.key, err)
	}
	return out.ETag, nil
}

// addPart records a stored part. The first part stored holds the tail's
// bytes, if there was one: the tail is stale from now on.
func (w *writer) addPart(etag *string, n int64) {
	w.st.parts = append(w.st.parts, types.CompletedPart{ETag: etag, PartNumber: aws.Int32(int32(len(w.st.parts) + 1))})
	w.st.partsSize += n
	w.shaAt(etag)
	if len(w.st.parts) == 1 {
		w.st.first = n
		w.plan.first = n
	}
	if w.st.tail > 0 {
		w.st.tail, w.st.staleTail = 0, true
	}
}

// bytesReaderOf is a request body of the bytes b.
func bytesReaderOf(b []byte) io.Reader { return bytes.NewReader(b) }
