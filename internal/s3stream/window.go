package s3stream

import (
	"context"
	"errors"
	"io"
)

// writeWindow stores parts until the body ends or end (the upload offset
// where the body is expected to end) is reached, one after the other, each
// streamed from the request body through the window, a buffer of
// windowSize bytes that the part's S3 connection fills from the request
// body and sends from (see fillBody): memory per write does not grow with
// the part size. The first part starts with the tail's bytes, read from S3
// as it goes; the tail counts until that part is stored.
//
// Nothing is kept to be sent again: when the client disconnects mid-part,
// or S3 fails it, the part is not stored, and the client sends its bytes
// again from the last part stored (the offset it then reads).
func (w *writer) writeWindow(ctx context.Context, end int64) error {
	if w.window == nil {
		w.window = w.s.Buffers.GetWindow()
	}
	if w.st.tail > 0 {
		w.tail = &tailReader{w: w, ctx: ctx}
		w.src.r = io.MultiReader(w.hashed(w.tail), w.src.r)
	}
	for {
		start, number := w.st.partsSize, int32(len(w.st.parts)+1)
		n := w.cut(number, start, end)
		if n <= 0 {
			return nil
		}
		if err := w.plan.check(number); err != nil {
			return err
		}
		part := w.plan.isPart(number, start, n)
		if !part && n == w.st.tail {
			return nil // nothing new: the tail stays as it is
		}
		if part {
			w.markPart(start + n)
		}
		body := newFillBody(w.window, int(n), 0, nil)
		body.src = w.src
		if !part {
			body.final = w.verify // the tail's last byte waits for the body's check
		}
		var (
			etag *string
			err  error
		)
		if part {
			etag, err = w.uploadPart(ctx, number, body, n, withCRCTrailer, noRetries)
		} else {
			err = w.putTail(ctx, start, body, n, withCRCTrailer, noRetries)
		}
		body.detach()
		switch {
		case w.tailErr != nil:
			return w.tailErr
		case errors.Is(err, errShort) && w.lengthKnown:
			return nil // the body was cut off: the parts stored stay
		case err != nil:
			return err
		case !part:
			return nil
		}
		w.s.Metrics.part("streamed")
		w.addPart(etag, n)
	}
}

// tailReader reads the counting tail from S3 when its first byte is
// needed. A failure is kept in w.tailErr: to the part it looks like the
// body ending, which must not be taken for the client's.
type tailReader struct {
	w    *writer
	ctx  context.Context
	body io.ReadCloser
	done bool
}

// close closes the tail's body if it is still open.
func (t *tailReader) close() {
	if t.body != nil && !t.done {
		t.body.Close()
		t.done = true
	}
}

func (t *tailReader) Read(p []byte) (int, error) {
	if t.done {
		return 0, io.EOF
	}
	if t.body == nil {
		body, err := t.w.openTail(t.ctx)
		if err != nil {
			t.w.tailErr, t.done = err, true
			return 0, err
		}
		t.body = body
	}
	n, err := t.body.Read(p)
	if err != nil {
		t.body.Close()
		t.done = true
		if !errors.Is(err, io.EOF) {
			t.w.tailErr = err
			return n, err
		}
		return n, io.EOF
	}
	return n, nil
}
