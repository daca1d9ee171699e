package s3stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/tlsbatch"
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
	buf, ok := s.Buffers.GetWait(ctx, min(size, st.incomplete+expect))
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
	w := &writer{s: s, st: &st, src: &source{r: src}, first: buf, key: s.key(objectID), multipartID: multipartID, partSize: size}
	defer s.Buffers.Put(w.first)
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

// writer is one WriteChunk. It hands each part, with a buffer, to a
// goroutine of its own (a flight), which sends it to S3 while the buffer
// fills from the request body (see source and fillPart): over HTTPS as a
// stream, over plain HTTP once it is complete. With several buffers,
// several parts are on their way at once, so that one S3 connection's speed
// does not limit the upload; S3 answers them in order (see fillBody), so a
// part is never stored past a missing one.
type writer struct {
	s   *Store
	st  *state
	src *source
	// first is the buffer the write was given; the parts it carries take
	// turns with those in extra buffers, which come from the budget only
	// while it has room to spare (Buffers.GetExtra).
	first       []byte
	firstBusy   bool
	key         string
	multipartID string
	partSize    int64
	// inflight holds the parts handed to flights and not yet taken, oldest
	// first.
	inflight []*flight
}

// flight is one part on its way to S3.
type flight struct {
	number int32
	buf    []byte // the part's bytes, kept until S3 has stored them
	extra  bool   // buf is an extra buffer, not the writer's first
	body   *fillBody
	prev   *flight // the part before, if still in flight when this one began
	done   chan struct{}
	// Set before done is closed.
	etag  *string
	err   error
	short bool   // the request body ended before the part was complete
	how   string // for the parts metric
}

// stored reports whether the part is in S3; it waits for the answer.
func (f *flight) stored() bool {
	<-f.done
	return f.err == nil && !f.short
}

// write stores parts until the body ends or end (the upload offset where
// the body is expected to end) is reached.
func (w *writer) write(ctx context.Context, end int64) (err error) {
	defer func() {
		if derr := w.drain(ctx); err == nil {
			err = derr
		}
	}()
	pre := int64(0)
	if w.st.incomplete > 0 {
		// The tail's bytes go first in the next part. Once the tail is
		// deleted they exist only in the buffer: a failure from here on
		// loses them, which the client sees as a lower offset and resends.
		// (Keeping the tail until the part is stored would make the offset
		// count them twice in between.)
		if err := w.readTail(ctx, w.first); err != nil {
			return err
		}
		pre, w.st.incomplete = w.st.incomplete, 0
	}
	for {
		start, number := w.next()
		n := min(w.partSize, end-start)
		if n <= 0 {
			return nil
		}
		if !w.isPart(start, n) {
			// Too few bytes left for a part: they become the tail, which
			// is stored only after every part before it.
			if err := w.drain(ctx); err != nil {
				return err
			}
			buf := w.first[:n]
			got := pre + w.fill(buf[pre:])
			return w.store(ctx, start, buf[:got], "buffered")
		}
		buf, extra, err := w.buffer(ctx)
		if err != nil {
			return err
		}
		f := w.send(ctx, number, buf[:n], pre, extra)
		pre = 0
		if !w.fillPart(f) {
			return nil // the body ended early; drain stores what arrived
		}
	}
}

// next returns where the next part starts and its number.
func (w *writer) next() (int64, int32) {
	start, number := w.st.partsSize, int32(len(w.st.parts)+1)
	for _, f := range w.inflight {
		start += int64(len(f.buf))
		number++
	}
	return start, number
}

// buffer returns a buffer for the next part: the first buffer if free, an
// extra one if the budget has room and fewer than Store.Parallel parts are
// in flight, or else the buffer of the oldest part once S3 has stored it.
func (w *writer) buffer(ctx context.Context) ([]byte, bool, error) {
	for {
		if !w.firstBusy {
			w.firstBusy = true
			return w.first, false, nil
		}
		if len(w.inflight) < w.s.Parallel {
			if b, ok := w.s.Buffers.GetExtra(w.partSize); ok {
				return b, true, nil
			}
		}
		f := w.inflight[0]
		w.inflight = w.inflight[1:]
		err := w.take(ctx, f)
		if err == nil && f.extra && !w.s.Buffers.Crowded() {
			return f.buf[:cap(f.buf)], true, nil
		}
		w.recycle(f)
		if err != nil {
			return nil, false, err
		}
	}
}

// send starts the flight of part number, whose first pre bytes are in buf.
func (w *writer) send(ctx context.Context, number int32, buf []byte, pre int64, extra bool) *flight {
	f := &flight{number: number, buf: buf, extra: extra, done: make(chan struct{})}
	if n := len(w.inflight); n > 0 {
		f.prev = w.inflight[n-1]
	}
	f.body = newFillBody(buf, int(pre), f.prev)
	if w.s.Stream {
		f.body.src = w.src
	} else {
		f.body.sums = newPartSums(buf[:pre])
	}
	w.inflight = append(w.inflight, f)
	go w.fly(ctx, f)
	return f
}

// fly sends a part: streamed while it fills (Stream), or once it is
// complete (plain HTTP, where the request is signed with the part's SHA-256,
// see partSums). Either way its last byte waits for the part before (see
// fillBody), so parts go to S3 side by side. A part whose request S3 failed
// is sent again from the buffer.
func (w *writer) fly(ctx context.Context, f *flight) {
	defer close(f.done)
	f.how = "buffered"
	opt, how := withCRCTrailer, "streamed"
	if !w.s.Stream {
		if !f.body.complete() {
			f.short = true
			return
		}
		opt, how = withPartSums(f.body.sums), "buffered"
	}
	etag, err := w.uploadPart(ctx, f.number, f.body, int64(len(f.buf)), opt, func(o *s3.Options) {
		// The body cannot be rewound; a failed attempt is sent again from
		// the buffer.
		o.RetryMaxAttempts = 1
	})
	f.body.detach()
	if err == nil {
		f.etag, f.how = etag, how
		return
	}
	if !errors.Is(err, errShort) && !errors.Is(err, errGap) {
		// S3 failed, not the client: send the part from memory.
		w.s.Log.DebugContext(ctx, "sending a part to S3 failed; sending it again from memory", "key", w.key, "part", f.number, "error", err.Error())
		f.how = "resent"
	}
	if !f.body.complete() {
		f.short = true
		return
	}
	if f.prev != nil && !f.prev.stored() {
		f.err = errGap
		return
	}
	f.etag, f.err = w.uploadBuffer(ctx, f.number, f.buf)
}

// fillPart sees to it that the part's buffer fills from the request body.
// While the part streams to S3 and its connection keeps sending, that
// connection reads the body itself (see source); when it has made no
// progress for a while (S3 is slower than the client), or without Stream,
// the writer reads ahead. The writer looks after readTick, and after twice
// as long each time it saw progress, up to maxReadTick: a slow client's
// PATCH costs a few wake-ups a second, not hundreds. It reports false if
// the body ended before the part was complete.
func (w *writer) fillPart(f *flight) bool {
	b := f.body
	lastSent := -1
	wait := readTick
	var tick *time.Timer
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		b.mu.Lock()
		filled, ended, sent, reading := b.filled, b.ended, b.sent, b.src != nil && !b.detached
		b.mu.Unlock()
		switch {
		case ended:
			return false
		case filled == len(b.buf):
			return true
		case reading && sent != lastSent:
			if lastSent >= 0 {
				wait = min(2*wait, maxReadTick)
			}
			lastSent = sent
			if tick == nil {
				tick = time.NewTimer(wait)
			} else {
				tick.Reset(wait)
			}
			select {
			case <-b.full:
			case <-tick.C:
			}
		default:
			wait = readTick
			w.src.mu.Lock()
			b.read(w.src)
			w.src.mu.Unlock()
		}
	}
}

// take waits for the oldest part's flight and records its outcome: the
// part, or for a part the body ended in, what arrived of it (as a part or
// the tail).
func (w *writer) take(ctx context.Context, f *flight) error {
	<-f.done
	if f.short {
		start, _ := w.next()
		return w.store(ctx, start, f.buf[:f.body.filledLen()], f.how)
	}
	if f.err != nil {
		return f.err
	}
	w.s.Metrics.part(f.how)
	w.addPart(f.etag, int64(len(f.buf)))
	return nil
}

// recycle gives a taken part's buffer back: the first to the writer, an
// extra one to the budget.
func (w *writer) recycle(f *flight) {
	if f.extra {
		w.s.Buffers.PutExtra(f.buf)
	} else {
		w.firstBusy = false
	}
}

// drain takes every part in flight, in order; after a failure, the rest
// are only waited for (their flights end without storing anything, see
// fillBody).
func (w *writer) drain(ctx context.Context) error {
	var err error
	for len(w.inflight) > 0 {
		f := w.inflight[0]
		w.inflight = w.inflight[1:]
		if err == nil {
			err = w.take(ctx, f)
		} else {
			<-f.done
		}
		w.recycle(f)
	}
	return err
}

// readTail reads the .part tail into buf and deletes it.
func (w *writer) readTail(ctx context.Context, buf []byte) error {
	out, err := w.s.Objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part")})
	if err != nil {
		return fmt.Errorf("s3stream: reading the incomplete part of %s: %w", w.key, err)
	}
	defer out.Body.Close()
	if aws.ToInt64(out.ContentLength) != w.st.incomplete {
		return fmt.Errorf("s3stream: the incomplete part of %s has %d bytes, expected %d", w.key, aws.ToInt64(out.ContentLength), w.st.incomplete)
	}
	if _, err := io.ReadFull(out.Body, buf[:w.st.incomplete]); err != nil {
		return fmt.Errorf("s3stream: reading the incomplete part of %s: %w", w.key, err)
	}
	_, err = w.s.Objects.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part")})
	if err != nil {
		return fmt.Errorf("s3stream: deleting the incomplete part of %s: %w", w.key, err)
	}
	return nil
}

// fill reads the body into buf until it is full or the body ends, and
// returns how many bytes it read.
func (w *writer) fill(buf []byte) int64 {
	w.src.mu.Lock()
	defer w.src.mu.Unlock()
	k, _ := io.ReadFull(w.src.r, buf) // tusd's body reader only ever ends
	return int64(k)
}

// isPart tells whether n bytes at start make a part: a full one, the last
// of the upload, or one of at least the minimum part size. Anything else
// waits in the .part tail for the next write.
func (w *writer) isPart(start, n int64) bool {
	info := w.st.info
	return n == w.partSize || n >= w.s.Inner.MinPartSize || (!info.SizeIsDeferred && start+n == info.Size)
}

// store sends buf, which starts at upload offset start, as the next part
// (counted as how) or as the tail. Every part before it must be stored.
func (w *writer) store(ctx context.Context, start int64, buf []byte, how string) error {
	n := int64(len(buf))
	if n == 0 {
		return nil
	}
	if w.isPart(start, n) {
		_, number := w.next()
		etag, err := w.uploadBuffer(ctx, number, buf)
		if err != nil {
			return err
		}
		w.s.Metrics.part(how)
		w.addPart(etag, n)
		return nil
	}
	body := newGuardedReader(buf)
	_, err := w.s.Objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(w.s.Inner.Bucket), Key: aws.String(w.key + ".part"),
		Body: body, ContentLength: aws.Int64(n),
	})
	body.detach()
	if err != nil {
		return fmt.Errorf("s3stream: storing the incomplete part of %s: %w", w.key, err)
	}
	w.s.Metrics.part("tail")
	w.st.incomplete = n
	return nil
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

func (w *writer) addPart(etag *string, n int64) {
	w.st.parts = append(w.st.parts, types.CompletedPart{ETag: etag, PartNumber: aws.Int32(int32(len(w.st.parts) + 1))})
	w.st.partsSize += n
}

var (
	errDetached = errors.New("s3stream: the part's body was taken back")
	errShort    = errors.New("s3stream: the request body ended before the part was complete")
	errGap      = errors.New("s3stream: the part before was not stored")
)

// guardedReader is a seekable body over a part buffer that can be taken
// back: net/http may go on reading a request body after the response (an
// early error answer), and a part buffer is reused, or unmapped, once its
// write is done.
type guardedReader struct {
	mu       sync.Mutex
	r        *bytes.Reader
	detached bool
}

func newGuardedReader(buf []byte) *guardedReader {
	return &guardedReader{r: bytes.NewReader(buf)}
}

func (g *guardedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.detached {
		return 0, errDetached
	}
	return g.r.Read(p)
}

// Seek lets the AWS SDK hash the payload (plain HTTP) and rewind it for a
// retry.
func (g *guardedReader) Seek(offset int64, whence int) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.detached {
		return 0, errDetached
	}
	return g.r.Seek(offset, whence)
}

// detach ends every use of the buffer; it waits for a Read in progress.
func (g *guardedReader) detach() {
	g.mu.Lock()
	g.detached = true
	g.mu.Unlock()
}

// sendWait is how long a fillBody waits for a full chunk before it passes
// on a smaller one.
const sendWait = 20 * time.Millisecond

// readTick and maxReadTick bound how long the writer lets a part's S3
// connection go without progress before it reads the request body ahead
// itself (see fillPart).
const (
	readTick    = 2 * time.Millisecond
	maxReadTick = 64 * time.Millisecond
)

// source is the request body. The part being filled reads it from two
// sides: the part's S3 connection reads the next bytes itself whenever it
// has sent what it has, so that they are still in its CPU's cache when it
// encrypts them (read by the writer, often on the other core, the copy out
// of the buffer took 8-10 % of the CPU; now 5 %); the writer reads ahead
// when that connection is stuck, so that the client is not held to one S3
// connection's pace. mu makes the two take turns.
type source struct {
	mu sync.Mutex
	r  io.Reader
}

// readAhead is the most the writer reads from the request body at once:
// few system calls (and few of tusd's deadline updates, one per read),
// while what was read is still in the CPU's cache when it is encrypted.
const readAhead = 256 << 10

// fillBody is the body of a streamed UploadPart: it passes on the bytes of
// the part buffer as the writer fills it from the request body. When the
// request body ends early it fails, so that the HTTP client aborts the
// request and S3 stores nothing.
//
// Its last byte waits until the part before is in S3 (S3 stores a part
// once all its bytes are in): had that one failed, this one would be stored
// past a gap in the part numbers. If the part before fails, the body fails
// instead.
type fillBody struct {
	buf     []byte
	initial int           // bytes in buf before the writer started filling
	prev    *flight       // nil: the last byte may go at once
	src     *source       // nil: only the writer fills buf
	sums    *partSums     // if set, updated with each read (plain HTTP)
	wake    chan struct{} // a token whenever something changed
	full    chan struct{} // closed once buf is full or the request body ended

	mu       sync.Mutex
	returned *sync.Cond // on mu: signalled when lent drops to 0
	filled   int        // buf[:filled] has arrived
	sent     int        // buf[:sent] was passed on
	lent     int        // buf[sent:sent+lent] is on loan (see lend)
	ended    bool
	detached bool
	open     bool      // the last byte may go
	lastSend time.Time // when bytes were last passed on

	timer *time.Timer // used by lend only
}

func newFillBody(buf []byte, pre int, prev *flight) *fillBody {
	b := &fillBody{buf: buf, initial: pre, prev: prev, filled: pre, open: prev == nil,
		wake: make(chan struct{}, 1), full: make(chan struct{})}
	b.returned = sync.NewCond(&b.mu)
	if pre == len(buf) {
		close(b.full)
	}
	return b
}

func (b *fillBody) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// advance records that buf[:filled] has arrived, and whether the request
// body ended short of a full buffer.
func (b *fillBody) advance(filled int, ended bool) {
	b.mu.Lock()
	b.filled, b.ended = filled, ended
	if filled == len(b.buf) || ended {
		close(b.full)
	}
	b.mu.Unlock()
	b.signal()
}

// Read passes on the next bytes of the part (a copy of lend's).
func (b *fillBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	q, err := b.lend(len(p))
	if err != nil {
		return 0, err
	}
	n := copy(p, q)
	b.giveBack()
	return n, nil
}

// lend returns the next bytes of the part to pass on, at most max, once
// they may go: it waits for them, for the part before when they end the
// part, and briefly for a full chunk. They are the buffer itself, lent
// until giveBack (detach waits for that), so that the S3 connection can
// encrypt them where they are (see crcTrailerBody.WriteTo). It returns
// io.EOF once the whole part was passed on.
func (b *fillBody) lend(max int) ([]byte, error) {
	for {
		b.mu.Lock()
		if b.detached {
			b.mu.Unlock()
			return nil, errDetached
		}
		if b.sent == len(b.buf) {
			b.mu.Unlock()
			return nil, io.EOF
		}
		limit := b.filled
		holding := limit == len(b.buf) && !b.open
		if holding {
			limit--
		}
		// A small run waits for more (read here if the writer is not
		// reading), so that the S3 connection sends full chunks
		// (tlsbatch.ChunkSize, or max if less) rather than every read's
		// worth; after sendWait a trickling client's bytes go anyway.
		if b.sent < limit && (limit-b.sent >= min(max, tlsbatch.ChunkSize) || b.filled == len(b.buf) || time.Since(b.lastSend) >= sendWait) {
			b.lent = min(max, limit-b.sent)
			p := b.buf[b.sent : b.sent+b.lent]
			b.mu.Unlock()
			return p, nil
		}
		ended, some := b.ended, b.sent < limit
		more := !ended && b.filled < len(b.buf)
		b.mu.Unlock()
		if more && b.src != nil && b.src.mu.TryLock() {
			b.read(b.src)
			b.src.mu.Unlock()
			continue
		}
		switch {
		case ended:
			return nil, errShort
		case some:
			if b.timer == nil {
				b.timer = time.NewTimer(sendWait)
			} else {
				b.timer.Reset(sendWait)
			}
			select {
			case <-b.wake:
				b.timer.Stop()
			case <-b.timer.C:
			}
		case holding:
			select {
			case <-b.prev.done:
				if !b.prev.stored() {
					return nil, errGap
				}
				b.mu.Lock()
				b.open = true
				b.mu.Unlock()
			case <-b.wake:
			}
		default:
			<-b.wake
		}
	}
}

// giveBack ends the loan of lend's bytes, which count as passed on.
func (b *fillBody) giveBack() {
	b.mu.Lock()
	b.sent += b.lent
	b.lent = 0
	b.lastSend = time.Now()
	b.returned.Broadcast()
	b.mu.Unlock()
}

// read reads the next bytes of the request body into the buffer; the
// caller holds the source's lock (only its holder changes filled).
func (b *fillBody) read(src *source) {
	b.mu.Lock()
	filled, done := b.filled, b.filled == len(b.buf) || b.ended
	b.mu.Unlock()
	if done {
		return
	}
	k, err := src.r.Read(b.buf[filled:min(len(b.buf), filled+readAhead)])
	if b.sums != nil {
		b.sums.add(b.buf[filled : filled+k]) // while the bytes are in the CPU's cache
	}
	filled += k
	// tusd's body reader reports every end, early or not, as io.EOF.
	b.advance(filled, err != nil && filled < len(b.buf))
}

// detach takes the buffer back from the HTTP client, which may still be
// reading after the request ended; it waits for bytes on loan (lend).
func (b *fillBody) detach() {
	b.mu.Lock()
	b.detached = true
	for b.lent > 0 {
		b.returned.Wait()
	}
	b.mu.Unlock()
	b.signal()
}

// complete waits until the buffer is full or the request body ended, and
// reports whether it is full.
func (b *fillBody) complete() bool {
	<-b.full
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.ended
}

func (b *fillBody) filledLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.filled
}
