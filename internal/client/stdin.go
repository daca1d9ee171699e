package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"time"

	"github.com/tusgate/tusgate/internal/client/progress"
)

// streamSource reads a stream of unknown length (standard input) a chunk
// at a time and holds the current chunk, so that a failed PATCH can send
// again what the server did not keep. What was sent before cannot be read
// again, so a stream resumes only within one run.
type streamSource struct {
	r        *bufio.Reader
	buf      []byte
	bufStart int64 // upload offset of buf[0]
	eof      bool
}

func newStreamSource(r io.Reader) *streamSource {
	return &streamSource{r: bufio.NewReader(r)}
}

func (s *streamSource) chunk(off, max int64) (func() io.Reader, int64, bool, error) {
	bufEnd := s.bufStart + int64(len(s.buf))
	if off < s.bufStart || off > bufEnd {
		return nil, 0, false, permanent("the server's offset %d is outside the bytes still held (%d to %d); standard input cannot be read again", off, s.bufStart, bufEnd)
	}
	if off == bufEnd && !s.eof {
		if int64(cap(s.buf)) < max {
			s.buf = make([]byte, max)
		}
		s.buf = s.buf[:max]
		k, err := io.ReadFull(s.r, s.buf)
		s.buf, s.bufStart = s.buf[:k], off
		switch {
		case err == nil:
			// Is this chunk the last? Ask for one more byte.
			if _, err := s.r.Peek(1); errors.Is(err, io.EOF) {
				s.eof = true
			} else if err != nil {
				return nil, 0, false, permanent("reading standard input: %w", err)
			}
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			s.eof = true
		default:
			return nil, 0, false, permanent("reading standard input: %w", err)
		}
		bufEnd = off + int64(k)
	}
	data := s.buf[off-s.bufStart:]
	if int64(len(data)) > max {
		data = data[:max]
	}
	n := int64(len(data))
	return func() io.Reader { return bytes.NewReader(data) }, n, s.eof && off+n == bufEnd, nil
}

// uploadStream sends r as one upload whose length is declared with its
// last chunk (Upload-Defer-Length), and returns its URL.
func (c *Client) uploadStream(ctx context.Context, t *progress.Tracker, r io.Reader, name string) (string, error) {
	url, err := c.createRetrying(ctx, t, creation{length: -1, metadata: map[string]string{"filename": name}})
	if err != nil {
		return "", err
	}
	t.SetURL(url)
	t.Begin(time.Now())
	c.sink.Start(t)
	u := &upload{url: url, src: newStreamSource(r), length: -1, pos: newStreamPos(t), tracker: t}
	if err := c.transfer(ctx, u, 0); err != nil {
		return url, err
	}
	t.SetSize(u.length)
	return url, nil
}
