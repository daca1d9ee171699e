package safestore

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/bodylen"
)

// Size limits: tusd checks a write against the upload's declared length,
// but for an upload whose length is deferred it checks against its MaxSize
// only when the body's length is unknown (tus/tusd's writeChunk uses the
// Content-Length instead), so a deferred-length upload could grow without
// bound. Every write passes through here, on every backend, so the limit
// is enforced here for all uploads.

// maxSizeExceeded answers a write that would take a deferred-length upload
// past Options.MaxSize. The code is tusd's for the same limit at creation.
func maxSizeExceeded(maxSize int64) handler.Error {
	return handler.NewError("ERR_MAX_SIZE_EXCEEDED", fmt.Sprintf(
		"uploads on this server may hold at most %d bytes and this request would go past that; nothing past the limit was stored (HEAD tells the upload's offset)",
		maxSize), http.StatusRequestEntityTooLarge)
}

// sizeExceeded answers a write that would go past the upload's declared
// length. The code is tusd's for the same check.
func sizeExceeded(size int64) handler.Error {
	return handler.NewError("ERR_UPLOAD_SIZE_EXCEEDED", fmt.Sprintf(
		"this request would go past the upload's declared length of %d bytes; send only the bytes that remain (HEAD tells the upload's offset)",
		size), http.StatusRequestEntityTooLarge)
}

// limit returns the offset an upload may not grow past and the error that
// refuses a write past it; ok is false when nothing limits the upload.
func (s *store) limit(info handler.FileInfo) (limit int64, refusal handler.Error, ok bool) {
	switch {
	case !info.SizeIsDeferred:
		return info.Size, sizeExceeded(info.Size), true
	case s.opt.MaxSize > 0:
		return s.opt.MaxSize, maxSizeExceeded(s.opt.MaxSize), true
	}
	return 0, handler.Error{}, false
}

// limitedWrite writes src at offset unless that would take the upload past
// its limit: a body whose length is known (bodylen) and too large is
// refused before any of it is read; a body of unknown length is cut at the
// limit, and refused once it turns out to hold more.
func (u *upload) limitedWrite(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	info, err := u.known(ctx)
	if err != nil {
		return 0, err
	}
	limit, refusal, ok := u.s.limit(info)
	if !ok {
		return u.inner.WriteChunk(ctx, offset, src)
	}
	if n, known := bodylen.From(ctx); known && n > limit-offset {
		u.s.opt.Log.InfoContext(ctx, "write refused: the upload would grow past its size limit",
			"id", u.id, "offset", offset, "body_length", n, "limit", limit)
		return 0, refusal
	}
	c := &capped{r: src, room: limit - offset}
	n, err := u.inner.WriteChunk(ctx, offset, c)
	if err == nil && c.room <= 0 && c.more() {
		u.s.opt.Log.InfoContext(ctx, "write cut at the upload's size limit: the body held more",
			"id", u.id, "offset", offset, "stored", n, "limit", limit)
		err = refusal
	}
	return n, err
}

// known returns what the upload was last seen to be. tusd calls GetInfo
// (and DeclareLength) on the same upload value before every write, so this
// costs no store request; only Size and SizeIsDeferred are relied on.
func (u *upload) known(ctx context.Context) (handler.FileInfo, error) {
	if u.info != nil {
		return *u.info, nil
	}
	return u.GetInfo(ctx)
}

// capped passes on at most room bytes of r and then tells whether r holds
// more.
type capped struct {
	r      io.Reader
	room   int64
	probed bool
	over   bool
}

func (c *capped) Read(p []byte) (int, error) {
	if c.room <= 0 {
		c.more()
		return 0, io.EOF
	}
	if int64(len(p)) > c.room {
		p = p[:c.room]
	}
	n, err := c.r.Read(p)
	c.room -= int64(n)
	return n, err
}

// more reports whether r holds bytes past the limit, reading at most one
// (which is dropped: the write is refused).
func (c *capped) more() bool {
	if !c.probed {
		var one [1]byte
		n, _ := io.ReadFull(c.r, one[:])
		c.probed, c.over = true, n > 0
	}
	return c.over
}
