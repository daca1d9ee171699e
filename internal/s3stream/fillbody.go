package s3stream

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/tusgate/tusgate/internal/tlsbatch"
)

var (
	errDetached = errors.New("s3stream: the part's body was taken back")
	errShort    = errors.New("s3stream: the request body ended before the part was complete")
	errGap      = errors.New("s3stream: the part before was not stored")
)

// sendWait is how long a fillBody waits for a full chunk before it passes
// on a smaller one.
const sendWait = 20 * time.Millisecond

// readTick and maxReadTick bound how long the writer lets a part's S3
// connection go without progress before it reads the request body ahead
// itself (see writer.fillPart).
const (
	readTick    = 2 * time.Millisecond
	maxReadTick = 64 * time.Millisecond
)

// readAhead is the most the writer reads from the request body at once:
// few system calls (and few of tusd's deadline updates, one per read),
// while what was read is still in the CPU's cache when it is encrypted.
const readAhead = 256 << 10

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

// fillBody is the body of a streamed request (a part, or a tail): it
// passes on size bytes as they arrive from the request body. When the
// request body ends early it fails, so that the HTTP client aborts the
// request and S3 stores nothing.
//
// Its bytes pass through buf. A part buffer holds the whole part (len(buf)
// = size), which is kept to be sent again; a window is smaller, and each
// byte's place is reused once it was passed on (byte i of the part is at
// buf[i % len(buf)]).
//
// Its last byte waits until the part before (prev) is in S3 (S3 stores a
// part once all its bytes are in): had that one failed, this one would be
// stored past a gap in the part numbers. If the part before fails, the body
// fails instead.
type fillBody struct {
	buf     []byte
	size    int           // bytes of the part
	initial int           // bytes in buf before the writer started filling
	prev    *flight       // nil: the last byte may go at once
	final   func() error  // if set, the last byte waits until it returns nil
	src     *source       // nil: only the writer fills buf
	sums    *partSums     // if set, updated with each read (plain HTTP)
	wake    chan struct{} // a token whenever something changed
	full    chan struct{} // closed once all size bytes arrived or the request body ended

	mu       sync.Mutex
	returned *sync.Cond // on mu: signalled when lent drops to 0 or a read ends
	filled   int        // bytes [0, filled) of the part have arrived
	sent     int        // bytes [0, sent) were passed on
	lent     int        // bytes [sent, sent+lent) are on loan (see lend)
	reading  bool       // a read from the request body into buf is under way
	ended    bool
	detached bool
	open     bool      // the part before is stored
	finalOK  bool      // final returned nil
	lastSend time.Time // when bytes were last passed on

	timer *time.Timer // used by lend only
}

// newFillBody returns the body of a part of size bytes passing through
// buf, whose first pre bytes are there already.
func newFillBody(buf []byte, size, pre int, prev *flight) *fillBody {
	b := &fillBody{buf: buf, size: size, initial: pre, prev: prev, filled: pre, open: prev == nil,
		wake: make(chan struct{}, 1), full: make(chan struct{})}
	b.returned = sync.NewCond(&b.mu)
	if pre == size {
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

// advance records that bytes [0, filled) have arrived, and whether the
// request body ended short of the part's size.
func (b *fillBody) advance(filled int, ended bool) {
	b.mu.Lock()
	b.filled, b.ended = filled, ended
	if filled == b.size || ended {
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
		if b.sent == b.size {
			b.mu.Unlock()
			return nil, io.EOF
		}
		limit := b.filled
		holding := limit == b.size && (!b.open || (b.final != nil && !b.finalOK))
		if holding {
			limit--
		}
		// A small run waits for more (read here if the writer is not
		// reading), so that the S3 connection sends full chunks
		// (tlsbatch.ChunkSize, or max if less) rather than every read's
		// worth; after sendWait a trickling client's bytes go anyway. A
		// window that is full has nothing more to wait for.
		if b.sent < limit && (limit-b.sent >= min(max, tlsbatch.ChunkSize) || b.filled == b.size || b.filled-b.sent == len(b.buf) || time.Since(b.lastSend) >= sendWait) {
			at := b.sent % len(b.buf)
			b.lent = min(max, limit-b.sent, len(b.buf)-at)
			p := b.buf[at : at+b.lent]
			b.mu.Unlock()
			return p, nil
		}
		ended, some := b.ended, b.sent < limit
		more := !ended && b.filled < b.size
		b.mu.Unlock()
		if more && b.src != nil && b.src.mu.TryLock() {
			b.read(b.src, true)
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
		case holding && b.open:
			// Only final holds the last byte back; every byte arrived.
			if err := b.final(); err != nil {
				return nil, err
			}
			b.mu.Lock()
			b.finalOK = true
			b.mu.Unlock()
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
	b.signal() // a window has room again
}

// read reads the next bytes of the request body into the buffer, as many
// as fit; the caller holds the source's lock (only its holder changes
// filled). The S3 connection reads (byConn) only until the body is
// detached, and detach waits for its read under way; the writer reads on,
// to send the part again from the buffer.
func (b *fillBody) read(src *source, byConn bool) {
	b.mu.Lock()
	filled, done := b.filled, b.filled == b.size || b.ended || (byConn && b.detached)
	// Room: up to the end of the part, the end of the buffer, and the
	// bytes not yet passed on (which a window must keep).
	at := filled % len(b.buf)
	room := min(b.size-filled, len(b.buf)-at, len(b.buf)-(filled-b.sent), readAhead)
	if done || room <= 0 {
		b.mu.Unlock()
		return
	}
	// detach waits for the S3 connection's read: the buffer may go to
	// another write then.
	b.reading = byConn
	b.mu.Unlock()
	k, err := src.r.Read(b.buf[at : at+room])
	if byConn {
		b.mu.Lock()
		b.reading = false
		b.returned.Broadcast()
		b.mu.Unlock()
	}
	if b.sums != nil {
		b.sums.add(b.buf[at : at+k]) // while the bytes are in the CPU's cache
	}
	filled += k
	// tusd's body reader reports every end, early or not, as io.EOF.
	b.advance(filled, err != nil && filled < b.size)
}

// detach takes the buffer back from the HTTP client, which may still be
// reading after the request ended; it waits for bytes on loan (lend) and
// for a read from the request body into the buffer under way (which ends
// when the client sends or tusd's read deadline passes).
func (b *fillBody) detach() {
	b.mu.Lock()
	b.detached = true
	for b.lent > 0 || b.reading {
		b.returned.Wait()
	}
	b.mu.Unlock()
	b.signal()
}

// complete waits until the part's bytes all arrived or the request body
// ended, and reports whether they all arrived.
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
