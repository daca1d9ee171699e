package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tusgate/tusgate/internal/client/backoff"
	"github.com/tusgate/tusgate/internal/client/progress"
)

// source gives the bytes of one upload, chunk by chunk.
type source interface {
	// chunk returns, for upload offset off, a function making a fresh
	// reader of the next n bytes (n ≤ max), and whether they are the
	// upload's last.
	chunk(off, max int64) (raw func() io.Reader, n int64, last bool, err error)
}

// upload is one tus upload being sent.
type upload struct {
	url     string
	src     source
	length  int64 // -1 while the server does not know it (deferred)
	pos     *streamPos
	tracker *progress.Tracker
}

// errGone: the server no longer has the upload (404, 410), e.g. it
// expired since the last run, or belongs to another user.
var errGone = errors.New("the server no longer has this upload")

// errNoProgress: a PATCH the server accepted without keeping any of it.
var errNoProgress = errors.New("PATCH: the server kept none of the chunk's bytes")

func isGone(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Status == http.StatusNotFound || se.Status == http.StatusGone)
}

// retrier counts the failures of one upload since it last moved forward.
type retrier struct {
	c       *Client
	t       *progress.Tracker
	attempt int
}

// again decides whether to go on after err, and waits the back-off if so.
// A resync (409) goes on at once the first time.
func (r *retrier) again(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, errPermanent) {
		return false
	}
	action, retryAfter := backoff.Retry, time.Duration(-1)
	var se *StatusError
	if errors.As(err, &se) {
		action = backoff.Classify(se.Status, se.HasRetryAfter)
		if se.HasRetryAfter {
			retryAfter = se.RetryAfter
		}
	}
	if action != backoff.Retry && action != backoff.Resync {
		return false // Fail, or a 401 that a fresh token did not fix
	}
	r.attempt++
	if r.c.opts.Retry.GiveUp(r.attempt) {
		return false
	}
	if action == backoff.Resync && r.attempt == 1 {
		return true
	}
	wait := r.c.opts.Retry.Delay(r.attempt, retryAfter)
	r.c.sink.Retry(r.t, err, wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// progressed resets the failure count.
func (r *retrier) progressed() { r.attempt = 0 }

// retry runs op until it succeeds or fails for good.
func (c *Client) retry(ctx context.Context, t *progress.Tracker, op func() error) error {
	r := &retrier{c: c, t: t}
	for {
		err := op()
		if err == nil || !r.again(ctx, err) {
			return err
		}
	}
}

// createRetrying creates an upload, retrying transient failures. (A POST
// whose answer was lost may leave an unused upload behind; the server
// expires it.)
func (c *Client) createRetrying(ctx context.Context, t *progress.Tracker, cr creation) (string, error) {
	var url string
	err := c.retry(ctx, t, func() (err error) {
		url, err = c.create(ctx, cr)
		return err
	})
	return url, err
}

// offset reads an upload's state with HEAD, retrying transient failures.
// An upload the server no longer has is errGone.
func (c *Client) offset(ctx context.Context, t *progress.Tracker, url string) (state, error) {
	var st state
	err := c.retry(ctx, t, func() (err error) {
		st, err = c.head(ctx, url)
		return err
	})
	if isGone(err) {
		return st, fmt.Errorf("%w (%v)", errGone, err)
	}
	return st, err
}

// transfer sends u from offset (the server's, or -1 to ask) to its end,
// chunk by chunk. After a failure it asks the server for the offset
// again, so only what the server did not keep is sent twice.
func (c *Client) transfer(ctx context.Context, u *upload, offset int64) error {
	r := &retrier{c: c, t: u.tracker}
	for {
		if offset < 0 {
			st, err := c.head(ctx, u.url)
			if isGone(err) {
				return fmt.Errorf("%w (%v)", errGone, err)
			}
			if err != nil {
				if r.again(ctx, err) {
					continue
				}
				return err
			}
			if u.length >= 0 && st.length >= 0 && st.length != u.length {
				return permanent("HEAD: the server now gives the upload a length of %d bytes, not %d", st.length, u.length)
			}
			offset = st.offset
			if st.length >= 0 {
				u.length = st.length // a deferred length the server learnt
			}
			u.pos.set(offset)
		}
		// A server that claims more than the upload holds is not believed:
		// the file is not stored.
		if u.length >= 0 && offset > u.length {
			return permanent("the server says it holds %d bytes of an upload of %d", offset, u.length)
		}
		if u.length >= 0 && offset == u.length {
			return nil
		}
		raw, n, last, err := u.src.chunk(offset, c.opts.ChunkSize)
		if err != nil {
			return err
		}
		declare := int64(-1)
		if last && u.length < 0 {
			declare = offset + n
		}
		next, err := c.patch(ctx, u, offset, raw, n, declare)
		if err == nil && next == offset && n > 0 {
			// tus lets a server keep part of a chunk; one that keeps none
			// is a failure like any other (back-off, --retries).
			err = errNoProgress
		}
		if err != nil {
			u.pos.set(offset) // what the server keeps is known after HEAD
			if !r.again(ctx, err) {
				return err
			}
			offset = -1
			continue
		}
		if next > offset {
			r.progressed()
		}
		offset = next
		u.pos.set(offset)
		if declare >= 0 {
			u.length = declare // the server knows it now
		}
	}
}
