package s3stream

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

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

// write stores parts from part buffers until the body ends or end (the
// upload offset where the body is expected to end) is reached.
func (w *writer) write(ctx context.Context, end int64) (err error) {
	defer func() {
		if derr := w.drain(ctx); err == nil {
			err = derr
		}
	}()
	pre := int64(0)
	if w.st.tail > 0 {
		// The tail's bytes go first in the next part. The tail stays in
		// S3, counting, until that part is stored.
		if err := w.readTail(ctx, w.first[:w.st.tail]); err != nil {
			return err
		}
		if w.sha != nil {
			w.sha.Write(w.first[:w.st.tail])
			w.tailHashed = true
		}
		pre = w.st.tail
	}
	for {
		start, number := w.next()
		n := w.cut(number, start, end)
		if n <= 0 {
			return nil
		}
		if err := w.plan.check(number); err != nil {
			return err
		}
		if n > int64(cap(w.first)) {
			// Parts have grown beyond the buffer (an upload of unknown
			// length moving into a band of larger parts).
			if err := w.drain(ctx); err != nil {
				return err
			}
			if w.lengthKnown {
				return w.writeWindow(ctx, end)
			}
			// A body of unknown length needs a buffer of the new size: a
			// window could not tell its normal end from a cut.
			if err := w.growFirst(ctx, n); err != nil {
				return err
			}
		}
		if !w.plan.isPart(number, start, n) {
			// Too few bytes left for a part: they become the tail, which
			// is stored only after every part before it.
			if err := w.drain(ctx); err != nil {
				return err
			}
			buf := w.first[:n]
			got := pre + w.fill(buf[pre:])
			if got == w.st.tail {
				return nil // nothing new: the tail stays as it is
			}
			return w.store(ctx, start, buf[:got], "buffered")
		}
		buf, extra, err := w.buffer(ctx, n)
		if err != nil {
			return err
		}
		w.markPart(start + n)
		f := w.send(ctx, number, buf[:n], pre, extra)
		pre = 0
		if !w.fillPart(f) {
			return nil // the body ended early; drain stores what arrived
		}
	}
}

// growFirst replaces the write's part buffer, idle, by one of n bytes.
func (w *writer) growFirst(ctx context.Context, n int64) error {
	w.s.Buffers.Put(w.first)
	w.first = nil
	buf, err := w.s.bodyBuffer(ctx, n)
	if err != nil {
		return err
	}
	w.first = buf
	return nil
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

// buffer returns a buffer for the next part of n bytes: the first buffer
// if free, an extra one if the budget has room and fewer than
// Store.Parallel parts are in flight, or else the buffer of the oldest
// part once S3 has stored it.
func (w *writer) buffer(ctx context.Context, n int64) ([]byte, bool, error) {
	for {
		if !w.firstBusy {
			w.firstBusy = true
			return w.first, false, nil
		}
		if len(w.inflight) < w.s.Parallel {
			if b, ok := w.s.Buffers.GetExtra(n); ok {
				return b, true, nil
			}
		}
		f := w.inflight[0]
		w.inflight = w.inflight[1:]
		err := w.take(ctx, f)
		if err == nil && f.extra && cap(f.buf) >= int(n) && !w.s.Buffers.Crowded() {
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
	if number == 1 {
		// Where parts must be equal, the next parts are cut like this one,
		// before it is stored.
		w.plan.first = int64(len(buf))
	}
	if n := len(w.inflight); n > 0 {
		f.prev = w.inflight[n-1]
	}
	f.body = newFillBody(buf, len(buf), int(pre), f.prev)
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
	etag, err := w.uploadPart(ctx, f.number, f.body, int64(len(f.buf)), opt, noRetries)
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

// noRetries is the call option of a request whose body cannot be rewound:
// a failed attempt is sent again from the buffer, or not at all.
func noRetries(o *s3.Options) { o.RetryMaxAttempts = 1 }

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
		case filled == b.size:
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
			b.read(w.src, false)
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
		got := f.body.filledLen()
		if start == w.st.partsSize && int64(got) == w.st.tail {
			return nil // nothing arrived after the tail's bytes
		}
		return w.store(ctx, start, f.buf[:got], f.how)
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
