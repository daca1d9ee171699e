package ietfdraft

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/checksum"
)

// call is one request as tusd's handler keeps it (its httpContext and
// bodyReader in pkg/handler), so that the store sees the same contexts and
// bodies on both protocols:
//
//   - ctx, given to every store call, carries the request's values (the
//     caller, the lockscope, the body length) and ends Reserve after the
//     request does (client gone, server shutting down), so that a store
//     still saves what it received;
//   - when the request ends early (the client goes, the server shuts down,
//     or another request asks for the upload's lock), the body is closed
//     with the cause, so that the store's write returns;
//   - each read of the body moves the connection's read deadline by the
//     network timeout, and a read error is kept for the answer while the
//     store sees the body end, and saves what it read.
type call struct {
	h      *Handler
	w      http.ResponseWriter
	r      *http.Request
	rc     *http.ResponseController
	ctx    context.Context
	cancel context.CancelCauseFunc // ends the request early, with a cause
	body   *body
	// digest is the content's Content-Digest, checked by the store.
	digest *checksum.Expectation
	ended  atomic.Bool
}

// newCall starts a call; end releases it when the request is answered.
func (h *Handler) newCall(w http.ResponseWriter, r *http.Request) (c *call, end func()) {
	reqCtx, cancelReq := context.WithCancelCause(r.Context())
	storeCtx, cancelStore := context.WithCancel(context.WithoutCancel(reqCtx))
	c = &call{h: h, w: w, r: r, rc: http.NewResponseController(w), ctx: storeCtx, cancel: cancelReq}
	stop := context.AfterFunc(reqCtx, func() {
		if c.ended.Load() {
			return
		}
		if b := c.body; b != nil {
			b.closeWithError(context.Cause(reqCtx))
		}
		time.AfterFunc(h.cfg.SaveReserve, cancelStore)
	})
	c.extendDeadlines()
	return c, func() {
		c.ended.Store(true)
		stop()
		cancelReq(nil)
		cancelStore()
	}
}

// extendDeadlines gives the connection another network timeout to read,
// and twice that to write the answer.
func (c *call) extendDeadlines() {
	now := time.Now()
	_ = c.rc.SetReadDeadline(now.Add(c.h.cfg.NetworkTimeout))
	_ = c.rc.SetWriteDeadline(now.Add(2 * c.h.cfg.NetworkTimeout))
}

// lock takes upload id's lock through the store's (checked) locker. When
// another request asks for the lock, this request ends early: the
// draft's recommended handling of concurrent requests, and tusd's.
func (c *call) lock(id string) (unlock func(), err error) {
	if !c.h.cfg.Composer.UsesLocker {
		return func() {}, nil
	}
	lock, err := c.h.cfg.Composer.Locker.NewLock(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, lockTimeout)
	defer cancel()
	if err := lock.Lock(ctx, func() { c.cancel(handler.ErrUploadInterrupted) }); err != nil {
		return nil, err
	}
	return func() { _ = lock.Unlock() }, nil
}

// open locks the upload id and reads it and its info. On success the
// caller defers unlock; on error the lock is already released.
func (c *call) open(id string) (up handler.Upload, info handler.FileInfo, unlock func(), err error) {
	if unlock, err = c.lock(id); err != nil {
		return nil, info, nil, err
	}
	if up, err = c.h.cfg.Composer.Core.GetUpload(c.ctx, id); err == nil {
		info, err = up.GetInfo(c.ctx)
	}
	if err != nil {
		unlock()
		return nil, info, nil, err
	}
	return up, info, unlock, nil
}

// lockTimeout is how long a request waits for an upload's lock (tusd's
// default AcquireLockTimeout).
const lockTimeout = 20 * time.Second

// readBody returns the request body for a store's write.
func (c *call) readBody() *body {
	c.body = &body{c: c, r: c.r.Body}
	if c.ended.Load() || c.r.Context().Err() != nil {
		c.body.closeWithError(context.Cause(c.r.Context()))
	}
	return c.body
}

// body is a request body as a store reads it: a read error ends the body
// for the store (which saves what it read) and is kept for the answer, as
// in tusd's bodyReader.
type body struct {
	c    *call
	r    io.ReadCloser
	mu   sync.Mutex
	err  error
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		b.c.extendDeadlines()
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		return n, io.EOF
	}
	// After closeWithError (a read of a closed body), the cause it kept
	// stays.
	b.fail(readError(err))
	return n, nil
}

// readError turns a body read error into the answer tusd gives for it.
func readError(err error) error {
	var maxBytes *http.MaxBytesError
	var netErr net.Error
	switch {
	case err == io.ErrUnexpectedEOF || err == io.ErrClosedPipe:
		return handler.ErrUnexpectedEOF
	case strings.HasSuffix(err.Error(), "read: connection reset by peer"):
		return handler.ErrConnectionReset
	case errors.As(err, &netErr) && netErr.Timeout():
		return handler.ErrReadTimeout
	case errors.As(err, &maxBytes):
		return handler.ErrSizeExceeded
	}
	return err
}

// fail ends the body with err, unless it ended already.
func (b *body) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done, b.err = true, err
	}
}

// closeWithError ends the body with err (the cause of the request's end)
// and makes a read in progress return at once.
func (b *body) closeWithError(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		err = handler.ErrUnexpectedEOF // the client went away
	}
	b.fail(err)
	_ = b.c.rc.SetReadDeadline(time.Now())
	_ = b.r.Close()
}

// error is what ended the body early, if anything.
func (b *body) error() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
