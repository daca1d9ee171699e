// Package tlsbatch dials TLS client connections that send the records of a
// large write in one system call instead of one per record.
//
// crypto/tls encrypts a write in records of at most 16 KiB and hands each
// record to the socket on its own. Streaming a part to S3 is a long run of
// full records, and in CPU profiles of the gateway those writes were a fifth
// of its time (docs/benchmarks.md); measured on loopback, a write syscall per
// 128 KiB costs about half as much per byte as one per 16 KiB. A Conn
// collects the records of each large Write and sends them together before
// Write returns, so nothing waits in a buffer for later; ReadFrom, which
// net/http uses to copy request bodies, feeds it in chunks of up to
// ChunkSize, and lets a body that implements io.WriterTo encrypt its bytes
// where they are (Sealer) instead of having them copied into a chunk first.
// crypto/tls keeps its own write buffering to the handshake, and no
// maintained library adds this, hence this small package.
package tlsbatch

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// ChunkSize is the most ReadFrom reads, encrypts and sends at once.
const ChunkSize = 128 << 10

// maxPlaintext is crypto/tls's largest record payload: a write up to this
// size is one record (or a few small ones early in a connection) and goes
// out unbatched.
const maxPlaintext = 16 << 10

// Dialer makes TLS connections for an http.Transport's DialTLSContext.
type Dialer struct {
	// Config is cloned for every connection. Its ServerName, if empty, is
	// the host of the dialled address; NextProtos is set to HTTP/1.1.
	Config *tls.Config
	// DialContext opens the TCP connection (default: a net.Dialer).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds the TLS handshake (0: only ctx bounds it).
	HandshakeTimeout time.Duration

	// sessions lets new connections resume the sessions of earlier ones
	// when Config has no ClientSessionCache (crypto/tls resumes none
	// without one). A resumed handshake skips the certificate's
	// signatures: the server signs nothing and the client verifies no
	// chain (crypto/tls still checks the saved certificate's expiry, host
	// name and root; a VerifyPeerCertificate callback, which tusgate does
	// not set, is not called). At 256 uploads at once, handshakes with S3
	// were a tenth of tusgate's CPU (docs/benchmarks.md).
	sessionsOnce sync.Once
	sessions     tls.ClientSessionCache
}

// sessionCacheSize is how many servers' sessions a Dialer keeps: a gateway
// talks to one S3 endpoint or a few.
const sessionCacheSize = 64

// DialTLSContext dials addr and completes the TLS handshake. The connection
// speaks HTTP/1.1: its type is not *tls.Conn, so http.Transport would not
// use HTTP/2 on it, and S3 speaks HTTP/1.1 anyway.
func (d *Dialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := d.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	raw, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{}
	if d.Config != nil {
		cfg = d.Config.Clone()
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	if cfg.ClientSessionCache == nil {
		d.sessionsOnce.Do(func() { d.sessions = tls.NewLRUClientSessionCache(sessionCacheSize) })
		cfg.ClientSessionCache = d.sessions
	}
	if d.HandshakeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.HandshakeTimeout)
		defer cancel()
	}
	bw := &batchWriter{Conn: raw}
	tc := tls.Client(bw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return &Conn{Conn: tc, raw: bw}, nil
}

// Conn is a TLS connection whose large writes leave in one system call.
type Conn struct {
	*tls.Conn
	raw *batchWriter
}

// Close closes the connection without TLS's close_notify alert: it closes
// the socket under it at once, as a dying process does. For a request
// whose body is cut off (its client went away, or S3 answered early), a
// close_notify after the last full record ends the stream cleanly, and Go
// servers then read a clean io.EOF mid-body: versitygw v1.8.0 stored such
// truncated parts, zero-filled to their declared length. HTTP/1.1 with a
// Content-Length needs no close_notify to detect truncation, and the S3
// client's sockets end with a reset (internal/s3backend), which no server
// mistakes for the end of a body.
func (c *Conn) Close() error {
	return c.raw.Conn.Close()
}

// Write encrypts p and sends it. The records of up to ChunkSize bytes of
// p at a time are sent together, once all of them are encrypted.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) <= maxPlaintext {
		return c.Conn.Write(p)
	}
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), ChunkSize)]
		c.raw.hold()
		n, err := c.Conn.Write(chunk)
		if ferr := c.raw.release(); ferr != nil && err == nil {
			return written, ferr
		}
		written += n
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
	}
	return written, nil
}

var chunks = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// ReadFrom sends what it reads from r, up to ChunkSize at a time, until r
// ends. net/http copies request bodies through it, as an *io.LimitedReader
// of the body and its Content-Length; a body that implements io.WriterTo
// then writes itself to a Sealer instead, without the copy into a chunk
// buffer.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if wt, ok := lr.R.(io.WriterTo); ok {
			s := &sealer{c: c, left: lr.N}
			n, err := wt.WriteTo(s)
			lr.N -= n
			if serr := s.Send(); err == nil {
				err = serr
			}
			return n, err
		}
	}
	return copyChunks(c.Write, r)
}

// copyChunks passes what it reads from r to write, up to ChunkSize at a
// time, until r ends.
func copyChunks(write func([]byte) (int, error), r io.Reader) (int64, error) {
	bp := chunks.Get().(*[]byte)
	defer chunks.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			w, werr := write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Sealer is the writer Conn.ReadFrom hands a request body that implements
// io.WriterTo. Besides writing, it lets the body encrypt bytes where they
// are and learn when they are no longer needed, which is before the socket
// write (that may block): a body whose memory is taken back when its
// request ends need not wait for the network.
type Sealer interface {
	io.Writer
	// Seal encrypts p (best at most ChunkSize bytes) for the next Send; p
	// is not used after Seal returns.
	Seal(p []byte) error
	// Send writes everything sealed since the last Send to the socket.
	Send() error
}

// ErrBodyTooLong is returned when a body writes more than its
// Content-Length to a Sealer.
var ErrBodyTooLong = errors.New("tlsbatch: the request body is longer than its Content-Length")

// sealer is the Sealer of one request body.
type sealer struct {
	c    *Conn
	left int64 // bytes the body may still write
	held bool  // the batch writer collects records for Send
}

func (s *sealer) Seal(p []byte) error {
	if int64(len(p)) > s.left {
		return ErrBodyTooLong
	}
	if !s.held {
		s.c.raw.hold()
		s.held = true
	}
	n, err := s.c.Conn.Write(p)
	s.left -= int64(n)
	return err
}

func (s *sealer) Send() error {
	if !s.held {
		return nil
	}
	s.held = false
	return s.c.raw.release()
}

// Write seals and sends p, ChunkSize bytes at a time.
func (s *sealer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), ChunkSize)]
		err := s.Seal(chunk)
		if serr := s.Send(); err == nil {
			err = serr
		}
		if err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// ReadFrom keeps a body that copies itself (io.Copy, as *os.File's WriteTo
// does) to ChunkSize pieces.
func (s *sealer) ReadFrom(r io.Reader) (int64, error) {
	return copyChunks(s.Write, r)
}

// batchWriter is the socket under the TLS connection. While held, the
// records crypto/tls writes are collected; release sends them in one write.
// Every write to the socket happens under mu, in the order crypto/tls made
// it (it also writes from Read, e.g. to answer a key update, and from
// Close).
type batchWriter struct {
	net.Conn
	mu    sync.Mutex
	held  bool
	batch *[]byte
}

var batches = sync.Pool{New: func() any { b := make([]byte, 0, ChunkSize+ChunkSize/maxPlaintext*64); return &b }}

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held {
		*b.batch = append(*b.batch, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchWriter) hold() {
	b.mu.Lock()
	b.held = true
	b.batch = batches.Get().(*[]byte)
	b.mu.Unlock()
}

func (b *batchWriter) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = false
	batch := b.batch
	b.batch = nil
	defer func() {
		*batch = (*batch)[:0]
		batches.Put(batch)
	}()
	if len(*batch) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*batch)
	return err
}
