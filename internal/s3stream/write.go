package s3stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"
)

type lengthKey struct{}

// WithBodyLength records that the request body carries n bytes (its
// Content-Length; negative: unknown). tusd hands stores only a reader, and
// the length lets a write declare the size of its last part up front rather
// than find it at the end of the stream and send that part again.
func WithBodyLength(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, lengthKey{}, n)
}

func bodyLength(ctx context.Context) int64 {
	if n, ok := ctx.Value(lengthKey{}).(int64); ok {
		return n
	}
	return -1
}

// partSize is the size of the upload's parts: s3store's calculation, so
// that both stores cut an upload the same way.
func (s *Store) partSize(info handler.FileInfo) int64 {
	p := s.Inner.PreferredPartSize
	if !info.SizeIsDeferred && info.Size > p*s.Inner.MaxMultipartParts {
		p = (info.Size + s.Inner.MaxMultipartParts - 1) / s.Inner.MaxMultipartParts
	}
	return p
}

// WriteChunk stores the bytes of src from offset on: in parts of the
// upload's part size, then a last part if the bytes end the upload or fill
// the minimum part size, else the .part tail.
func (u *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	s := u.s
	info, err := u.GetInfo(ctx)
	if err != nil {
		return 0, err
	}
	expect := int64(math.MaxInt64 / 4) // deferred length: until the body ends
	if !info.SizeIsDeferred {
		expect = info.Size - offset
	}
	if n := bodyLength(ctx); n >= 0 && n < expect {
		expect = n
	}
	if expect <= 0 {
		return 0, nil
	}
	st, err := u.current(ctx, info)
	if err != nil {
		return 0, err
	}
	if st.partsSize+st.incomplete != offset {
		return 0, fmt.Errorf("s3stream: %s holds %d bytes, not the %d the write starts at", info.ID, st.partsSize+st.incomplete, offset)
	}
	size := s.partSize(info)
	buf, ok := s.Buffers.Get(min(size, st.incomplete+expect))
	if !ok {
		s.Metrics.write("tempfile")
		if err := u.forgetState(ctx); err != nil {
			return 0, err
		}
		return u.inner.WriteChunk(ctx, offset, src)
	}
	if s.Stream {
		s.Metrics.write("stream")
	} else {
		s.Metrics.write("buffer")
	}

	objectID, multipartID := splitID(info.ID)
	w := &writer{s: s, st: &st, src: src, buf: buf, key: s.key(objectID), multipartID: multipartID, partSize: size}
	defer w.release()
	err = w.write(ctx, offset+expect)
	st.info.Offset = st.partsSize + st.incomplete
	written := max(st.info.Offset-offset, 0)
	// s3store's view of the upload is stale now.
	fresh, ferr := s.Inner.GetUpload(ctx, info.ID)
	if ferr != nil {
		return written, errors.Join(err, ferr)
	}
	u.inner, u.stored = fresh, &st
	if err != nil {
		// What S3 holds is uncertain after a failed request: let s3store
		// read it anew.
		u.stored = nil
	}
	return written, err
}

// current returns the upload as stored: the parts and the size of the
// .part tail.
func (u *upload) current(ctx context.Context, info handler.FileInfo) (state, error) {
	if u.stored != nil {
		st := *u.stored
		st.parts = append([]types.CompletedPart(nil), st.parts...)
		return st, nil
	}
	st := state{info: info}
	if info.Offset == 0 {
		return st, nil // nothing stored yet
	}
	objectID, multipartID := splitID(info.ID)
	in := &s3.ListPartsInput{
		Bucket: aws.String(u.s.Inner.Bucket), Key: aws.String(u.s.key(objectID)), UploadId: aws.String(multipartID),
	}
	for {
		out, err := u.s.Objects.ListParts(ctx, in)
		if err != nil {
			return st, fmt.Errorf("s3stream: listing the parts of %s: %w", objectID, err)
		}
		for _, p := range out.Parts {
			if aws.ToInt32(p.PartNumber) != int32(len(st.parts)+1) {
				return st, fmt.Errorf("s3stream: part %d of %s follows part %d", aws.ToInt32(p.PartNumber), objectID, len(st.parts))
			}
			st.parts = append(st.parts, types.CompletedPart{ETag: p.ETag, PartNumber: p.PartNumber})
			st.partsSize += aws.ToInt64(p.Size)
		}
		if !aws.ToBool(out.IsTruncated) || out.NextPartNumberMarker == nil {
			break
		}
		in.PartNumberMarker = out.NextPartNumberMarker
	}
	st.incomplete = info.Offset - st.partsSize
	if st.incomplete < 0 || st.incomplete >= u.s.Inner.MinPartSize {
		return st, fmt.Errorf("s3stream: %s has %d bytes in parts but an offset of %d", objectID, st.partsSize, info.Offset)
	}
	return st, nil
}

// writer is one WriteChunk.
type writer struct {
	s   *Store
	st  *state
	src io.Reader
	buf []byte // holds the part being read
	// spare is a second buffer: it lets one part await S3's answer (its
	// bytes kept for sending again) while the next one streams. nil until
	// needed, and if the budget has none.
	spare       []byte
	key         string
	multipartID string
	partSize    int64
	// pending is a streamed part whose bytes are all sent and whose answer
	// has not been taken yet.
	pending *sending
}

// sending is a streamed UploadPart.
type sending struct {
	buf    []byte // the part, kept for sending again
	number int32
	done   chan struct{}
	etag   *string
	err    error
}

// write stores parts until the body ends or end (the upload offset where
// the body is expected to end) is reached.
func (w *writer) write(ctx context.Context, end int64) (err error) {
	defer func() {
		if serr := w.settle(ctx); err == nil {
			err = serr
		}
	}()
	pre := int64(0)
	if w.st.incomplete > 0 {
		// The tail's bytes go first in the next part. Once the tail is
		// deleted they exist only in the buffer: a failure from here on
		// loses them, which the client sees as a lower offset and resends.
		// (Keeping the tail until the part is stored would make the offset
		// count them twice in between.)
		if err := w.readTail(ctx); err != nil {
			return err
		}
		pre, w.st.incomplete = w.st.incomplete, 0
	}
	for {
		start, _ := w.next()
		n := min(w.partSize, end-start)
		if n <= 0 {
			return nil
		}
		got, err := w.part(ctx, start, n, pre)
		if err != nil || got < n || w.st.incomplete > 0 {
			return err
		}
		pre = 0
	}
}

// next returns where the next part starts and its number.
func (w *writer) next() (int64, int32) {
	start, number := w.st.partsSize, int32(len(w.st.parts)+1)
	if w.pending != nil {
		start += int64(len(w.pending.buf))
		number++
	}
	return start, number
}

// release returns the writer's buffers to the pool.
func (w *writer) release() {
	w.s.Buffers.Put(w.buf)
	if w.spare != nil {
		w.s.Buffers.Put(w.spare)
	}
}

func (w *writer) readTail(ctx context.Context) error {
	out, err := w.s.Objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part")})
	if err != nil {
		return fmt.Errorf("s3stream: reading the incomplete part of %s: %w", w.key, err)
	}
	defer out.Body.Close()
	if aws.ToInt64(out.ContentLength) != w.st.incomplete {
		return fmt.Errorf("s3stream: the incomplete part of %s has %d bytes, expected %d", w.key, aws.ToInt64(out.ContentLength), w.st.incomplete)
	}
	if _, err := io.ReadFull(out.Body, w.buf[:w.st.incomplete]); err != nil {
		return fmt.Errorf("s3stream: reading the incomplete part of %s: %w", w.key, err)
	}
	_, err = w.s.Objects.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part")})
	if err != nil {
		return fmt.Errorf("s3stream: deleting the incomplete part of %s: %w", w.key, err)
	}
	return nil
}

// part stores the next n bytes, the first pre of which are in the buffer
// already, starting at upload offset start. It returns how many it stored
// or sent: fewer than n when the body ended early.
func (w *writer) part(ctx context.Context, start, n, pre int64) (int64, error) {
	if !w.s.Stream || !w.isPart(start, n) {
		// The tail is stored only after every part before it.
		if err := w.settle(ctx); err != nil {
			return 0, err
		}
		got := w.fill(pre, n)
		return got, w.store(ctx, start, got, "buffered")
	}
	_, number := w.next()
	body := newTeeBody(w.buf[:n], pre, w.src, w.pending != nil)
	sp := &sending{buf: w.buf[:n], number: number, done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		sp.etag, sp.err = w.uploadPart(ctx, number, body, n, func(o *s3.Options) {
			// The stream cannot be rewound; a failed attempt is sent
			// again from the buffer.
			o.RetryMaxAttempts = 1
		})
	}()
	// S3 stores a part once all its bytes are in, so this part's last byte
	// waits until the part before is in S3: had that one failed for good,
	// this one would be stored past a gap in the part numbers. Meanwhile
	// the rest of this part streams.
	if err := w.settle(ctx); err != nil {
		body.detach()
		<-sp.done
		return 0, err
	}
	body.open()
	select {
	case <-body.consumed:
	case <-sp.done:
	}
	select {
	case <-sp.done:
	default:
		if w.spare == nil {
			w.spare, _ = w.s.Buffers.Get(int64(len(w.buf)))
		}
		if w.spare != nil {
			// All sent: read the next part while S3 answers this one.
			w.pending = sp
			w.buf, w.spare = w.spare, w.buf
			return n, nil
		}
		<-sp.done
	}
	got, ended := body.detach()
	if sp.err == nil {
		w.s.Metrics.part("streamed")
		w.addPart(sp.etag, n)
		return n, nil
	}
	if !ended {
		// S3 failed, not the client: read the rest of the part and send
		// it again.
		w.s.Log.DebugContext(ctx, "streaming a part to S3 failed; sending it again from memory", "key", w.key, "part", number, "error", sp.err.Error())
		got = w.fill(got, n)
		return got, w.store(ctx, start, got, "resent")
	}
	return got, w.store(ctx, start, got, "buffered")
}

// settle takes the answer for the pending part; a part S3 failed is sent
// again from its buffer.
func (w *writer) settle(ctx context.Context) error {
	sp := w.pending
	if sp == nil {
		return nil
	}
	w.pending = nil
	<-sp.done
	if sp.err != nil {
		w.s.Log.DebugContext(ctx, "streaming a part to S3 failed; sending it again from memory", "key", w.key, "part", sp.number, "error", sp.err.Error())
		w.s.Metrics.part("resent")
		sp.etag, sp.err = w.uploadPart(ctx, sp.number, bytes.NewReader(sp.buf), int64(len(sp.buf)))
		if sp.err != nil {
			return sp.err
		}
	} else {
		w.s.Metrics.part("streamed")
	}
	w.addPart(sp.etag, int64(len(sp.buf)))
	return nil
}

// fill reads the body into the buffer until it holds n bytes or the body
// ends, and returns how many it holds.
func (w *writer) fill(have, n int64) int64 {
	k, _ := io.ReadFull(w.src, w.buf[have:n]) // tusd's body reader only ever ends
	return have + int64(k)
}

// isPart tells whether n bytes at start make a part: a full one, the last
// of the upload, or one of at least the minimum part size. Anything else
// waits in the .part tail for the next write.
func (w *writer) isPart(start, n int64) bool {
	info := w.st.info
	return n == w.partSize || n >= w.s.Inner.MinPartSize || (!info.SizeIsDeferred && start+n == info.Size)
}

// store sends the first n bytes of the buffer as a part (counted as how)
// or as the tail.
func (w *writer) store(ctx context.Context, start, n int64, how string) error {
	if n == 0 {
		return nil
	}
	if w.isPart(start, n) {
		_, number := w.next()
		etag, err := w.uploadPart(ctx, number, bytes.NewReader(w.buf[:n]), n)
		if err != nil {
			return err
		}
		w.s.Metrics.part(how)
		w.addPart(etag, n)
		return nil
	}
	_, err := w.s.Objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part"),
		Body: bytes.NewReader(w.buf[:n]), ContentLength: aws.Int64(n),
	})
	if err != nil {
		return fmt.Errorf("s3stream: storing the incomplete part of %s: %w", w.key, err)
	}
	w.s.Metrics.part("tail")
	w.st.incomplete = n
	return nil
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

func (w *writer) addPart(etag *string, n int64) {
	w.st.parts = append(w.st.parts, types.CompletedPart{ETag: etag, PartNumber: aws.Int32(int32(len(w.st.parts) + 1))})
	w.st.partsSize += n
}

var (
	errDetached = errors.New("s3stream: the part's body was taken back")
	errShort    = errors.New("s3stream: the request body ended before the part was complete")
)

// teeBody is the body of a streamed UploadPart: it reads the request body
// into the part buffer and passes the same bytes on. When the request body
// ends early it fails, so that the HTTP client aborts the request and S3
// stores nothing. A gated body holds back its last byte until open.
type teeBody struct {
	mu       sync.Mutex
	buf      []byte // the part; buf[:n] has arrived, buf[:sent] was passed on
	n        int
	sent     int
	src      io.Reader
	ended    bool // src ended before buf was full
	detached bool

	consumed   chan struct{} // closed once every byte was passed on
	opened     chan struct{} // closed when the last byte may go
	detachedCh chan struct{}
	once       struct{ consumed, opened, detached sync.Once }
}

func newTeeBody(buf []byte, pre int64, src io.Reader, gated bool) *teeBody {
	b := &teeBody{buf: buf, n: int(pre), src: src,
		consumed: make(chan struct{}), opened: make(chan struct{}), detachedCh: make(chan struct{})}
	if !gated {
		b.open()
	}
	return b
}

func (b *teeBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.detached {
			return 0, errDetached
		}
		if b.sent == len(b.buf) {
			return 0, io.EOF
		}
		limit := b.n
		if limit == len(b.buf) && !b.isOpen() {
			limit--
		}
		if b.sent < limit {
			k := copy(p, b.buf[b.sent:limit])
			b.sent += k
			if b.sent == len(b.buf) {
				b.once.consumed.Do(func() { close(b.consumed) })
			}
			return k, nil
		}
		if b.n < len(b.buf) {
			if b.ended {
				return 0, errShort
			}
			k, err := b.src.Read(b.buf[b.n:min(len(b.buf), b.n+len(p))])
			b.n += k
			if err != nil && b.n < len(b.buf) {
				b.ended = true // tusd's body reader reports every end as io.EOF
			}
			continue
		}
		// Only the held-back last byte is left.
		b.mu.Unlock()
		select {
		case <-b.opened:
		case <-b.detachedCh:
		}
		b.mu.Lock()
	}
}

func (b *teeBody) isOpen() bool {
	select {
	case <-b.opened:
		return true
	default:
		return false
	}
}

// open lets the last byte go.
func (b *teeBody) open() { b.once.opened.Do(func() { close(b.opened) }) }

// detach takes the buffer back from the HTTP client, which may still be
// reading after the request failed, and reports how much of the part
// arrived and whether the request body ended.
func (b *teeBody) detach() (int64, bool) {
	b.once.detached.Do(func() { close(b.detachedCh) })
	b.mu.Lock()
	defer b.mu.Unlock()
	b.detached = true
	return int64(b.n), b.ended
}
